//! OTLP export: the operator's tracing pipeline sends reconcile spans over OTLP/gRPC to a
//! collector (an in-process receiver built from the official OpenTelemetry proto definitions).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_operator::telemetry;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Sink {
    /// (service.name, span name) of every received span.
    spans: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push((service.clone(), span.name));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_spans_reach_an_otlp_collector() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sink = Sink::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let provider = telemetry::otlp_provider(&format!("http://{addr}")).expect("provider");
    {
        let _guard = tracing::subscriber::set_default(telemetry::subscriber(Some(&provider)));
        tracing::info_span!("reconcile", kind = "Topic", name = "orders").in_scope(|| tracing::info!("reconciling"));
    }
    provider.force_flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let spans = sink.spans.lock().expect("lock").clone();
        if let Some((service, _)) = spans.iter().find(|(_, name)| name == "reconcile") {
            assert!(service.contains("fjord-operator"), "{service}");
            break;
        }
        assert!(Instant::now() < deadline, "no reconcile span received: {spans:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    provider.shutdown().expect("shutdown");
    server.abort();
}
