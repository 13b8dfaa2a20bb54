//! An in-memory admin API for reconcile tests: topics kept like the broker keeps them (ids,
//! partitions that only grow, topic-level configs), scripted drain answers per broker id, and a
//! switch that makes every endpoint unreachable. Every call is recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fjord_api::v1 as pb;
use fjord_operator::admin::{AdminApi, AdminError, AdminResult};
use futures_util::future::BoxFuture;

#[derive(Default)]
struct State {
    topics: BTreeMap<String, pb::Topic>,
    drains: BTreeMap<i32, pb::DrainState>,
    /// Broker ids the admin API does not know (never registered): NOT_FOUND.
    unknown: std::collections::BTreeSet<i32>,
    unreachable: bool,
    calls: Vec<String>,
    next_id: u32,
}

#[derive(Clone, Default)]
pub(crate) struct FakeAdmin {
    state: Arc<Mutex<State>>,
}

impl FakeAdmin {
    pub(crate) fn topic(&self, name: &str) -> Option<pb::Topic> {
        self.state.lock().expect("lock").topics.get(name).cloned()
    }

    /// Changes a live topic behind the operator's back (drift).
    pub(crate) fn tamper(&self, name: &str, f: impl FnOnce(&mut pb::Topic)) {
        let mut state = self.state.lock().expect("lock");
        f(state.topics.get_mut(name).expect("topic"));
    }

    /// What DrainBroker answers for a broker from now on (default IN_PROGRESS).
    pub(crate) fn set_drain(&self, broker: i32, state: pb::DrainState) {
        self.state.lock().expect("lock").drains.insert(broker, state);
    }

    /// From now on the admin API answers NOT_FOUND for this broker (it never registered).
    pub(crate) fn set_unknown(&self, broker: i32) {
        self.state.lock().expect("lock").unknown.insert(broker);
    }

    /// The drain state the fake holds for a broker (None: never asked).
    pub(crate) fn drain_state(&self, broker: i32) -> Option<pb::DrainState> {
        self.state.lock().expect("lock").drains.get(&broker).copied()
    }

    pub(crate) fn set_unreachable(&self, unreachable: bool) {
        self.state.lock().expect("lock").unreachable = unreachable;
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }

    fn call(&self, what: String) -> AdminResult<std::sync::MutexGuard<'_, State>> {
        let mut state = self.state.lock().expect("lock");
        state.calls.push(what);
        if state.unreachable {
            return Err(AdminError::Unreachable("connection refused".into()));
        }
        Ok(state)
    }
}

fn status(code: tonic::Code, message: String) -> AdminError {
    AdminError::Status(tonic::Status::new(code, message))
}

impl AdminApi for FakeAdmin {
    fn describe_topic<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, AdminResult<Option<pb::Topic>>> {
        Box::pin(async move {
            let state = self.call(format!("describe {endpoint} {name}"))?;
            Ok(state.topics.get(name).cloned())
        })
    }

    fn create_topic<'a>(
        &'a self,
        endpoint: &'a str,
        r: pb::CreateTopicRequest,
    ) -> BoxFuture<'a, AdminResult<pb::Topic>> {
        Box::pin(async move {
            let mut state = self.call(format!("create {endpoint} {} {:?}", r.name, r.partitions))?;
            if state.topics.contains_key(&r.name) {
                return Err(status(
                    tonic::Code::AlreadyExists,
                    format!("topic {} already exists", r.name),
                ));
            }
            if r.configs.keys().any(|k| k == "bad.config") {
                return Err(status(
                    tonic::Code::InvalidArgument,
                    "unknown topic config bad.config".into(),
                ));
            }
            state.next_id += 1;
            let topic = pb::Topic {
                name: r.name.clone(),
                topic_id: format!("00000000-0000-0000-0000-{:012}", state.next_id),
                partitions: r.partitions.unwrap_or(1),
                replication_factor: r.replication_factor.unwrap_or(1),
                configs: r.configs,
                effective_configs: Default::default(),
            };
            state.topics.insert(r.name, topic.clone());
            Ok(topic)
        })
    }

    fn alter_topic<'a>(&'a self, endpoint: &'a str, r: pb::AlterTopicRequest) -> BoxFuture<'a, AdminResult<pb::Topic>> {
        Box::pin(async move {
            let mut state = self.call(format!(
                "alter {endpoint} {} {:?} {:?}",
                r.name,
                r.partitions,
                r.set_configs.keys().collect::<Vec<_>>()
            ))?;
            let Some(topic) = state.topics.get_mut(&r.name) else {
                return Err(status(
                    tonic::Code::NotFound,
                    format!("topic {} does not exist", r.name),
                ));
            };
            if let Some(n) = r.partitions {
                if n < topic.partitions {
                    return Err(status(
                        tonic::Code::FailedPrecondition,
                        "partitions can only be increased".into(),
                    ));
                }
                topic.partitions = n;
            }
            topic.configs.extend(r.set_configs);
            for k in r.delete_configs {
                topic.configs.remove(&k);
            }
            Ok(topic.clone())
        })
    }

    fn delete_topic<'a>(&'a self, endpoint: &'a str, name: &'a str) -> BoxFuture<'a, AdminResult<bool>> {
        Box::pin(async move {
            let mut state = self.call(format!("delete {endpoint} {name}"))?;
            Ok(state.topics.remove(name).is_some())
        })
    }

    fn drain_broker<'a>(&'a self, endpoint: &'a str, broker_id: i32) -> BoxFuture<'a, AdminResult<pb::DrainStatus>> {
        Box::pin(async move {
            let mut state = self.call(format!("drain {endpoint} {broker_id}"))?;
            if state.unknown.contains(&broker_id) {
                return Err(status(
                    tonic::Code::NotFound,
                    format!("broker {broker_id} is not in this cluster"),
                ));
            }
            let drain = match state.drains.get(&broker_id).copied() {
                None | Some(pb::DrainState::NotDraining) => pb::DrainState::InProgress,
                Some(d) => d,
            };
            state.drains.insert(broker_id, drain);
            Ok(pb::DrainStatus {
                broker_id,
                state: drain as i32,
                partitions_remaining: if drain == pb::DrainState::Done { 0 } else { 3 },
                message: if drain == pb::DrainState::Blocked {
                    "nowhere to move".into()
                } else {
                    String::new()
                },
            })
        })
    }

    fn cancel_drain<'a>(&'a self, endpoint: &'a str, broker_id: i32) -> BoxFuture<'a, AdminResult<pb::DrainStatus>> {
        Box::pin(async move {
            let mut state = self.call(format!("cancel {endpoint} {broker_id}"))?;
            if state.unknown.contains(&broker_id) {
                return Err(status(
                    tonic::Code::NotFound,
                    format!("broker {broker_id} is not in this cluster"),
                ));
            }
            state.drains.insert(broker_id, pb::DrainState::NotDraining);
            Ok(pb::DrainStatus {
                broker_id,
                state: pb::DrainState::NotDraining as i32,
                partitions_remaining: 3,
                message: String::new(),
            })
        })
    }
}
