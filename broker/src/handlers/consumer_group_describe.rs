//! ConsumerGroupDescribe (key 69): a KIP-848 group's epochs, assignor and members with their
//! current and target assignments.

use std::collections::BTreeSet;
use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use fjord_protocol::kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};

use super::{operations, str_bytes, topic_name};
use crate::broker::Broker;
use crate::group::consumer::TopicPartition;
use crate::group::{self, GroupKind};

pub(super) fn handle(
    broker: &Arc<Broker>,
    request: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let image = broker.image();
    let assignment = |partitions: &BTreeSet<TopicPartition>| {
        let mut by_topic: Vec<TopicPartitions> = Vec::new();
        for (topic, p) in partitions {
            let Some(t) = image.topic(topic) else { continue };
            match by_topic.last_mut() {
                Some(last) if last.topic_id == t.id.0 => last.partitions.push(*p),
                _ => by_topic.push(
                    TopicPartitions::default()
                        .with_topic_id(t.id.0)
                        .with_topic_name(topic_name(topic.clone()))
                        .with_partitions(vec![*p]),
                ),
            }
        }
        Assignment::default().with_topic_partitions(by_topic)
    };
    let ops = operations::answer(request.include_authorized_operations, operations::GROUP);
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(ops);
            let fail = |error: ResponseError, message: String| {
                described
                    .clone()
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message)))
            };
            if let Err(error) = group::precheck(broker, &id) {
                return fail(error, format!("{error:?}"));
            }
            broker
                .groups
                .with_groups(|groups| match groups.get(id.as_str()).map(|g| &g.kind) {
                    None => fail(
                        ResponseError::GroupIdNotFound,
                        format!("group {} not found", id.as_str()),
                    ),
                    Some(GroupKind::Classic(_)) => fail(
                        ResponseError::GroupIdNotFound,
                        format!("group {} is not a consumer group", id.as_str()),
                    ),
                    Some(GroupKind::Consumer(g)) => described
                        .clone()
                        .with_group_state(str_bytes(g.state_name()))
                        .with_group_epoch(g.group_epoch)
                        .with_assignment_epoch(g.assignment_epoch)
                        .with_assignor_name(str_bytes(g.assignor.clone()))
                        .with_members(
                            g.describe_members()
                                .into_iter()
                                .map(|m| {
                                    // Kafka's MemberType: 0 classic, 1 consumer protocol.
                                    let member_type = if m.classic { 0 } else { 1 };
                                    let member = Member::default()
                                        .with_member_id(str_bytes(m.member_id))
                                        .with_instance_id(m.instance_id.map(str_bytes))
                                        .with_rack_id(m.rack_id.map(str_bytes))
                                        .with_member_epoch(m.member_epoch)
                                        .with_client_id(str_bytes(m.client_id))
                                        .with_client_host(str_bytes(m.client_host))
                                        .with_subscribed_topic_names(
                                            m.subscribed_topics.into_iter().map(topic_name).collect(),
                                        )
                                        .with_subscribed_topic_regex(m.subscribed_regex.map(str_bytes))
                                        .with_assignment(assignment(&m.assignment))
                                        .with_target_assignment(assignment(&m.target));
                                    if version >= 1 {
                                        member.with_member_type(member_type)
                                    } else {
                                        member
                                    }
                                })
                                .collect(),
                        ),
                })
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
