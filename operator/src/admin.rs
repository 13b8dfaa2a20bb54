//! How the operator talks to brokers: the [`AdminApi`] trait over the admin gRPC API, its tonic
//! implementation, and the endpoint names (client Service for topics, pod DNS names for drains).

use std::collections::HashMap;
use std::time::Duration;

use fjord_api::v1 as pb;
use fjord_api::v1::admin_client::AdminClient;
use futures_util::future::BoxFuture;
use tokio::sync::Mutex;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// An admin call that failed.
#[derive(Debug, Clone)]
pub enum AdminError {
    /// No connection (DNS, refused, timeout): the brokers may be gone or not started.
    Unreachable(String),
    /// The broker answered with an error status.
    Status(tonic::Status),
}

impl AdminError {
    pub fn code(&self) -> Option<Code> {
        match self {
            AdminError::Unreachable(_) => None,
            AdminError::Status(s) => Some(s.code()),
        }
    }

    pub fn message(&self) -> String {
        match self {
            AdminError::Unreachable(m) => m.clone(),
            AdminError::Status(s) => format!("{:?}: {}", s.code(), s.message()),
        }
    }

    pub fn into_error(self, address: &str) -> crate::Error {
        match self {
            AdminError::Unreachable(message) => crate::Error::AdminUnreachable {
                address: address.to_string(),
                message,
            },
            AdminError::Status(status) => crate::Error::Admin {
                address: address.to_string(),
                status: Box::new(status),
            },
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// The admin operations the reconcilers use. `endpoint` is an `http://host:port` URL.
pub trait AdminApi: Send + Sync {
    /// The topic, or None if it does not exist.
    fn describe_topic<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, AdminResult<Option<pb::Topic>>>;
    fn create_topic<'a>(
        &'a self,
        endpoint: &'a str,
        request: pb::CreateTopicRequest,
    ) -> BoxFuture<'a, AdminResult<pb::Topic>>;
    fn alter_topic<'a>(
        &'a self,
        endpoint: &'a str,
        request: pb::AlterTopicRequest,
    ) -> BoxFuture<'a, AdminResult<pb::Topic>>;
    /// Deletes the topic; Ok(false) if it did not exist.
    fn delete_topic<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, AdminResult<bool>>;
    /// Starts (or checks) a broker's drain. NOT_FOUND: the broker is not in the cluster.
    fn drain_broker<'a>(&'a self, endpoint: &'a str, broker_id: i32) -> BoxFuture<'a, AdminResult<pb::DrainStatus>>;
    /// Cancels a broker's drain (a reverted scale-in). NOT_FOUND: the broker is not in the cluster.
    fn cancel_drain<'a>(&'a self, endpoint: &'a str, broker_id: i32) -> BoxFuture<'a, AdminResult<pb::DrainStatus>>;
}

/// Admin endpoint of a cluster as a whole: its headless Service (the client Service does not
/// expose the admin API).
pub fn cluster_endpoint(cluster: &str, namespace: &str, admin_port: i32) -> String {
    let service = crate::cluster::validate::headless_service_name(cluster);
    format!("http://{service}.{namespace}.svc:{admin_port}")
}

/// Admin endpoint of one broker pod, through the headless Service.
pub fn broker_endpoint(pod: &str, headless_service: &str, namespace: &str, admin_port: i32) -> String {
    format!("http://{pod}.{headless_service}.{namespace}.svc:{admin_port}")
}

/// [`AdminApi`] over tonic, with one lazily connected channel per endpoint.
#[derive(Debug, Default)]
pub struct GrpcAdmin {
    channels: Mutex<HashMap<String, Channel>>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

impl GrpcAdmin {
    async fn client(&self, endpoint: &str) -> AdminResult<AdminClient<Channel>> {
        let mut channels = self.channels.lock().await;
        if let Some(channel) = channels.get(endpoint) {
            return Ok(AdminClient::new(channel.clone()));
        }
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| AdminError::Unreachable(format!("bad endpoint {endpoint}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connect()
            .await
            .map_err(|e| AdminError::Unreachable(format!("{endpoint}: {e}")))?;
        channels.insert(endpoint.to_string(), channel.clone());
        Ok(AdminClient::new(channel))
    }

    /// Maps a call failure; a transport failure forgets the channel so the next call reconnects.
    async fn failed(&self, endpoint: &str, status: tonic::Status) -> AdminError {
        if status.code() == Code::Unavailable || status.code() == Code::DeadlineExceeded {
            self.channels.lock().await.remove(endpoint);
            return AdminError::Unreachable(format!("{endpoint}: {}", status.message()));
        }
        AdminError::Status(status)
    }
}

impl AdminApi for GrpcAdmin {
    fn describe_topic<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, AdminResult<Option<pb::Topic>>> {
        Box::pin(async move {
            let request = pb::DescribeTopicRequest { name: name.to_string() };
            match self.client(endpoint).await?.describe_topic(request).await {
                Ok(r) => Ok(Some(r.into_inner())),
                Err(s) if s.code() == Code::NotFound => Ok(None),
                Err(s) => Err(self.failed(endpoint, s).await),
            }
        })
    }

    fn create_topic<'a>(
        &'a self,
        endpoint: &'a str,
        request: pb::CreateTopicRequest,
    ) -> BoxFuture<'a, AdminResult<pb::Topic>> {
        Box::pin(async move {
            match self.client(endpoint).await?.create_topic(request).await {
                Ok(r) => Ok(r.into_inner()),
                Err(s) => Err(self.failed(endpoint, s).await),
            }
        })
    }

    fn alter_topic<'a>(
        &'a self,
        endpoint: &'a str,
        request: pb::AlterTopicRequest,
    ) -> BoxFuture<'a, AdminResult<pb::Topic>> {
        Box::pin(async move {
            match self.client(endpoint).await?.alter_topic(request).await {
                Ok(r) => Ok(r.into_inner()),
                Err(s) => Err(self.failed(endpoint, s).await),
            }
        })
    }

    fn delete_topic<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, AdminResult<bool>> {
        Box::pin(async move {
            let request = pb::DeleteTopicRequest { name: name.to_string() };
            match self.client(endpoint).await?.delete_topic(request).await {
                Ok(_) => Ok(true),
                Err(s) if s.code() == Code::NotFound => Ok(false),
                Err(s) => Err(self.failed(endpoint, s).await),
            }
        })
    }

    fn drain_broker<'a>(&'a self, endpoint: &'a str, broker_id: i32) -> BoxFuture<'a, AdminResult<pb::DrainStatus>> {
        Box::pin(async move {
            match self
                .client(endpoint)
                .await?
                .drain_broker(pb::DrainBrokerRequest { broker_id })
                .await
            {
                Ok(r) => Ok(r.into_inner()),
                Err(s) => Err(self.failed(endpoint, s).await),
            }
        })
    }

    fn cancel_drain<'a>(&'a self, endpoint: &'a str, broker_id: i32) -> BoxFuture<'a, AdminResult<pb::DrainStatus>> {
        Box::pin(async move {
            match self
                .client(endpoint)
                .await?
                .cancel_drain(pb::CancelDrainRequest { broker_id })
                .await
            {
                Ok(r) => Ok(r.into_inner()),
                Err(s) => Err(self.failed(endpoint, s).await),
            }
        })
    }
}
