//! The admin gRPC API (`fjord.admin.v1.Admin`, see broker/crates/api) on its own port
//! (`admin.listen`), with the standard gRPC health and reflection services. Topic changes go
//! through the same controller as the Kafka admin requests (`controller.rs`).

mod service;
pub mod status;

use std::sync::Arc;

use fjord_api::v1::admin_server::AdminServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::broker::Broker;
pub use service::AdminService;

/// Serves the admin API, health and reflection on `listener`. Health turns NOT_SERVING as soon
/// as `shutdown` is set (probes and watchers see it while the Kafka listener drains); the server
/// stops when `stop` is set.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(fjord_api::ADMIN_SERVICE_NAME, ServingStatus::Serving)
        .await;
    health.set_service_status("", ServingStatus::Serving).await;
    // Reflection v1 and v1alpha: grpcurl and grpcio's descriptor database still ask v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fjord_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fjord_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let (reflection, reflection_alpha) = match (reflection, reflection_alpha) {
        (Ok(r), Ok(a)) => (r, a),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "building the grpc reflection service failed");
            return;
        }
    };
    let admin = AdminServer::new(AdminService::new(broker));
    let mut on_shutdown = shutdown.clone();
    let health_on_shutdown = health.clone();
    tokio::spawn(async move {
        let _ = on_shutdown.wait_for(|stop| *stop).await;
        health_on_shutdown
            .set_service_status(fjord_api::ADMIN_SERVICE_NAME, ServingStatus::NotServing)
            .await;
        health_on_shutdown
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tracing::info!("admin health: not serving");
    });
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(admin)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "admin grpc server failed");
    }
}
