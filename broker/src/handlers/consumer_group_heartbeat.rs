//! ConsumerGroupHeartbeat (key 68): the KIP-848 consumer group protocol. Joins, leaves and
//! heartbeats of a member; the answer carries its epoch and (when changed) its assignment,
//! computed by the server-side assignor and reconciled incrementally.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_metadata::TopicId;
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use fjord_protocol::kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::{ClientInfo, str_bytes};
use crate::broker::Broker;
use crate::group::consumer::{ConsumerGroup, HeartbeatParams, HeartbeatResponse};
use crate::group::{self, Group, GroupKind};

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client: &ClientInfo,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.to_string();
    let image = broker.image();
    let owned = request.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|tp| {
                image
                    .topic_by_id(TopicId(tp.topic_id))
                    .map(|t| (t.name.clone(), &tp.partitions))
            })
            .flat_map(|(name, ps)| ps.iter().map(move |p| (name.clone(), *p)))
            .collect::<BTreeSet<_>>()
    });
    let params = HeartbeatParams {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout: (request.rebalance_timeout_ms >= 0)
            .then(|| Duration::from_millis(request.rebalance_timeout_ms as u64)),
        subscribed_topics: request
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        subscribed_regex: request.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: request.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
    };
    // The group's dynamic configs (session timeout, heartbeat interval) over the broker's.
    let config = &match image.group_configs(&group_id) {
        Some(overrides) => group::configs::effective(&broker.groups.config, overrides),
        None => broker.groups.config.clone(),
    };
    let r = match group::precheck(broker, &group_id) {
        Err(error) => error_response(error, format!("{error:?}"), &params.member_id),
        Ok(()) => {
            let topics = group::topic_counts(broker);
            let r = broker.groups.with_groups(|groups| {
                let now = Instant::now();
                let group = groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::of(GroupKind::Consumer(ConsumerGroup::new())));
                if let GroupKind::Classic(g) = &group.kind {
                    if g.is_empty() {
                        // An empty classic group (offsets only) becomes a consumer group; its
                        // group record goes.
                        group.pending.push((
                            crate::group::records::RecordKey::Group {
                                group: group_id.clone(),
                            },
                            None,
                        ));
                        group.kind = GroupKind::Consumer(ConsumerGroup::new());
                    } else if params.member_epoch != 0 {
                        return error_response(
                            ResponseError::GroupIdNotFound,
                            format!("group {group_id} is not a consumer group"),
                            &params.member_id,
                        );
                    } else if let Err((code, message)) = group.upgrade(&group_id, &topics, config, now) {
                        return error_response(code, message, &params.member_id);
                    }
                }
                let GroupKind::Consumer(g) = &mut group.kind else {
                    unreachable!("converted above")
                };
                let r = g.heartbeat(params.clone(), &topics, config, version, now);
                // The last consumer-protocol member leaving a group of classic members.
                group.maybe_downgrade(&group_id, config, now, crate::clock::now_ms());
                r
            });
            // Whatever the heartbeat changed is durable before the member hears of it.
            match group::persist(broker, &group_id).await {
                Ok(()) => r,
                Err(error) => error_response(error, "storing the group state failed".into(), &params.member_id),
            }
        }
    };
    let (error, message) = r
        .error
        .clone()
        .map_or((0, None), |(e, m)| (e.code(), Some(str_bytes(m))));
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(error)
        .with_error_message(message)
        .with_member_id(Some(str_bytes(r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(config.consumer_heartbeat_interval.as_millis() as i32)
        .with_assignment(r.assignment.map(|partitions| {
            let mut by_topic: Vec<TopicPartitions> = Vec::new();
            for (topic, p) in partitions {
                let Some(id) = image.topic(&topic).map(|t| t.id.0) else {
                    continue;
                };
                match by_topic.last_mut() {
                    Some(last) if last.topic_id == id => last.partitions.push(p),
                    _ => by_topic.push(TopicPartitions::default().with_topic_id(id).with_partitions(vec![p])),
                }
            }
            Assignment::default().with_topic_partitions(by_topic)
        }))
}

fn error_response(error: ResponseError, message: String, member_id: &str) -> HeartbeatResponse {
    HeartbeatResponse {
        error: Some((error, message)),
        member_id: member_id.to_string(),
        member_epoch: -1,
        assignment: None,
    }
}
