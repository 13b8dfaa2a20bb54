//! Logging and tracing: `tracing` to stderr always, and spans exported over OTLP/gRPC when an
//! endpoint is configured (`--otlp-endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

/// The OTLP span pipeline: a tracer provider exporting in batches to `endpoint`
/// (e.g. `http://otel-collector:4317`). Keep it to flush on shutdown.
pub fn otlp_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("fjord-operator").build())
        .build())
}

/// A subscriber: env-filtered log lines to stderr, plus OTLP export when `provider` is given.
pub fn subscriber(provider: Option<&SdkTracerProvider>) -> impl tracing::Subscriber + Send + Sync {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = provider.map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("fjord-operator")));
    Registry::default()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(otel)
}
