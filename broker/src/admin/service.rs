//! `fjord.admin.v1.Admin` implemented on the broker: topic administration through the
//! controller, cluster description from the config and metadata image, and broker drain (start,
//! progress, cancel; an id that is not a broker of this cluster is NOT_FOUND).

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_api::v1 as pb;
use fjord_api::v1::admin_server::Admin;
use fjord_metadata::TopicImage;
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use super::status::AdminError;
use crate::broker::Broker;
use crate::controller::{ConfigChange, NewTopic};
use crate::topic_config;

/// The admin service; cheap to clone into tonic.
#[derive(Debug, Clone)]
pub struct AdminService {
    broker: Arc<Broker>,
    /// Brokers asked to drain (by id). Cleared on restart: a drain is re-requested by its caller.
    draining: Arc<Mutex<BTreeMap<i32, ()>>>,
}

type AdminResult<T> = Result<Response<T>, Status>;

impl AdminService {
    pub fn new(broker: Arc<Broker>) -> AdminService {
        AdminService {
            broker,
            draining: Arc::default(),
        }
    }

    fn check_running(&self) -> Result<(), AdminError> {
        if self.broker.is_shutting_down() {
            return Err(AdminError::Unavailable("broker is shutting down".into()));
        }
        Ok(())
    }

    /// Runs blocking controller work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Broker) -> Result<T, AdminError> + Send + 'static,
    ) -> Result<T, Status> {
        self.check_running()?;
        self.broker.blocking(work).await.map_err(Status::from)
    }

    fn drain_status(&self, broker_id: i32) -> Result<pb::DrainStatus, AdminError> {
        let broker = &self.broker;
        if broker_id != broker.node_id() {
            return Err(AdminError::NotFound(format!(
                "broker {broker_id} is not in this cluster (known brokers: [{}])",
                broker.node_id()
            )));
        }
        let remaining = broker.image().partition_count() as i32;
        let status = |state: pb::DrainState, message: String| pb::DrainStatus {
            broker_id,
            state: state as i32,
            partitions_remaining: remaining,
            message,
        };
        if !self.draining.lock().contains_key(&broker_id) {
            return Ok(status(pb::DrainState::NotDraining, "no drain requested".into()));
        }
        Ok(if remaining == 0 {
            status(
                pb::DrainState::Done,
                format!("broker {broker_id} holds no partition replicas"),
            )
        } else {
            // One node: there is no other broker to move replicas to. Say so instead of
            // pretending to make progress.
            status(
                pb::DrainState::Blocked,
                format!(
                    "broker {broker_id} is the only broker: its {remaining} partition replicas have nowhere to move"
                ),
            )
        })
    }
}

fn topic_message(broker: &Broker, t: &TopicImage) -> pb::Topic {
    let replication_factor = t.partitions.first().map_or(0, |p| p.replicas.len() as i32);
    pb::Topic {
        name: t.name.clone(),
        topic_id: t.id.to_string(),
        partitions: t.partitions.len() as i32,
        replication_factor,
        configs: t.configs.clone().into_iter().collect(),
        effective_configs: topic_config::describe(&broker.topic_defaults(), &t.configs)
            .into_iter()
            .map(|d| (d.def.name.to_string(), d.value))
            .collect(),
    }
}

fn describe_topic(broker: &Broker, name: &str) -> Result<pb::Topic, AdminError> {
    let image = broker.image();
    let t = image.topic(name).ok_or_else(|| {
        AdminError::Kafka(crate::controller::ApiError::new(
            fjord_protocol::kafka_protocol::error::ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ))
    })?;
    Ok(topic_message(broker, t))
}

fn to_i16(name: &str, value: i32) -> Result<i16, AdminError> {
    i16::try_from(value).map_err(|_| AdminError::InvalidArgument(format!("{name} {value} is out of range")))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(&self, request: Request<pb::CreateTopicRequest>) -> AdminResult<pb::Topic> {
        let r = request.into_inner();
        let replication_factor = to_i16("replication_factor", r.replication_factor.unwrap_or(-1))?;
        let topic = NewTopic {
            name: r.name,
            num_partitions: r.partitions.unwrap_or(-1),
            replication_factor,
            explicit_assignments: None,
            configs: r.configs.into_iter().collect(),
        };
        if topic.num_partitions == -1 && r.partitions.is_some() {
            return Err(AdminError::InvalidArgument("partitions must be at least 1".into()).into());
        }
        let validate_only = r.validate_only;
        let topic = self
            .blocking(move |b| {
                let name = topic.name.clone();
                let configs = topic.configs.clone();
                let created = b.create_topic(topic, validate_only)?;
                if validate_only {
                    return Ok(pb::Topic {
                        name,
                        topic_id: String::new(),
                        partitions: created.num_partitions,
                        replication_factor: i32::from(created.replication_factor),
                        effective_configs: topic_config::describe(&b.topic_defaults(), &configs)
                            .into_iter()
                            .map(|d| (d.def.name.to_string(), d.value))
                            .collect(),
                        configs: configs.into_iter().collect(),
                    });
                }
                describe_topic(b, &name)
            })
            .await?;
        Ok(Response::new(topic))
    }

    async fn describe_topic(&self, request: Request<pb::DescribeTopicRequest>) -> AdminResult<pb::Topic> {
        let name = request.into_inner().name;
        Ok(Response::new(
            describe_topic(&self.broker, &name).map_err(Status::from)?,
        ))
    }

    async fn list_topics(&self, _request: Request<pb::ListTopicsRequest>) -> AdminResult<pb::ListTopicsResponse> {
        let image = self.broker.image();
        let topics = image.topics().map(|t| topic_message(&self.broker, t)).collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn alter_topic(&self, request: Request<pb::AlterTopicRequest>) -> AdminResult<pb::Topic> {
        let r = request.into_inner();
        let topic = self
            .blocking(move |b| {
                let current = describe_topic(b, &r.name)?;
                let grow_to = match r.partitions {
                    Some(n) if n < current.partitions => {
                        return Err(AdminError::FailedPrecondition(format!(
                            "topic {} has {} partitions; partitions can only be increased, not to {n}",
                            r.name, current.partitions
                        )));
                    }
                    Some(n) if n > current.partitions => Some(n),
                    _ => None,
                };
                let mut changes: Vec<(String, ConfigChange)> = r
                    .set_configs
                    .into_iter()
                    .map(|(k, v)| (k, ConfigChange::Set(v)))
                    .collect();
                changes.sort_by(|a, b| a.0.cmp(&b.0));
                for key in r.delete_configs {
                    if changes.iter().any(|(k, _)| *k == key) {
                        return Err(AdminError::InvalidArgument(format!(
                            "config {key} is both set and deleted"
                        )));
                    }
                    changes.push((key, ConfigChange::Delete));
                }
                // Validate both parts before changing either, so a bad config does not leave
                // the partitions grown.
                if let Some(n) = grow_to {
                    b.create_partitions(&r.name, n, None, true)?;
                }
                if !changes.is_empty() {
                    b.alter_topic_configs(&r.name, changes.clone(), false, true)?;
                }
                if r.validate_only {
                    return Ok(current);
                }
                if let Some(n) = grow_to {
                    b.create_partitions(&r.name, n, None, false)?;
                }
                if !changes.is_empty() {
                    b.alter_topic_configs(&r.name, changes, false, false)?;
                }
                describe_topic(b, &r.name)
            })
            .await?;
        Ok(Response::new(topic))
    }

    async fn delete_topic(&self, request: Request<pb::DeleteTopicRequest>) -> AdminResult<pb::DeleteTopicResponse> {
        let name = request.into_inner().name;
        let id = self.blocking(move |b| Ok(b.delete_topic(&name)?)).await?;
        Ok(Response::new(pb::DeleteTopicResponse {
            topic_id: id.to_string(),
        }))
    }

    async fn describe_cluster(
        &self,
        _request: Request<pb::DescribeClusterRequest>,
    ) -> AdminResult<pb::DescribeClusterResponse> {
        let b = &self.broker;
        let (host, port) = b.config.advertised_listener();
        let advertised = |addr: Option<std::net::SocketAddr>| {
            addr.map(|a| {
                if a.ip().is_unspecified() {
                    format!("{host}:{}", a.port())
                } else {
                    a.to_string()
                }
            })
            .unwrap_or_default()
        };
        let state = if b.is_shutting_down() {
            pb::BrokerState::ShuttingDown
        } else if self.draining.lock().contains_key(&b.node_id()) {
            if b.image().partition_count() == 0 {
                pb::BrokerState::Drained
            } else {
                pb::BrokerState::Draining
            }
        } else {
            pb::BrokerState::Running
        };
        let broker = pb::Broker {
            id: b.node_id(),
            rack: b.config.rack.clone().unwrap_or_default(),
            kafka_address: format!("{host}:{port}"),
            admin_address: advertised(b.config.admin.listen),
            http_address: advertised(b.config.http.listen),
            state: state as i32,
            partitions: b.image().partition_count() as i32,
        };
        Ok(Response::new(pb::DescribeClusterResponse {
            cluster_id: b.cluster_id.clone(),
            controller_id: b.node_id(),
            brokers: vec![broker],
        }))
    }

    async fn drain_broker(&self, request: Request<pb::DrainBrokerRequest>) -> AdminResult<pb::DrainStatus> {
        let id = request.into_inner().broker_id;
        self.check_running()?;
        // Check the id first so an unknown broker is not remembered as draining.
        self.drain_status(id)?;
        if self.draining.lock().insert(id, ()).is_none() {
            tracing::info!(broker = id, "drain requested");
        }
        Ok(Response::new(self.drain_status(id)?))
    }

    async fn get_drain_status(&self, request: Request<pb::GetDrainStatusRequest>) -> AdminResult<pb::DrainStatus> {
        let id = request.into_inner().broker_id;
        Ok(Response::new(self.drain_status(id)?))
    }

    async fn cancel_drain(&self, request: Request<pb::CancelDrainRequest>) -> AdminResult<pb::DrainStatus> {
        let id = request.into_inner().broker_id;
        self.check_running()?;
        // An unknown broker is NOT_FOUND here too (it was never draining).
        self.drain_status(id)?;
        if self.draining.lock().remove(&id).is_some() {
            tracing::info!(broker = id, "drain cancelled");
        }
        Ok(Response::new(self.drain_status(id)?))
    }
}
