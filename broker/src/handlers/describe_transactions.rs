//! DescribeTransactions (key 65) and ListTransactions (key 66): the transaction coordinator's
//! view of transactional ids (Kafka's `kafka-transactions.sh describe/list`). An id this broker
//! does not know is TRANSACTIONAL_ID_NOT_FOUND. ListTransactions filters by state, producer id,
//! minimum duration (v1) and id pattern (v2, a regular expression).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use fjord_protocol::kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use fjord_protocol::kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse,
    ProducerId,
};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::txn::TxnState;

/// Kafka's state names that ListTransactions filters accept.
const STATES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub(super) fn describe(broker: &Arc<Broker>, request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .iter()
        .map(|id| {
            let base = TransactionState::default().with_transactional_id(id.clone());
            if !broker.txn.is_loaded() {
                return base.with_error_code(ResponseError::CoordinatorLoadInProgress.code());
            }
            let Some(m) = broker.txn.get(id).filter(|m| m.state != TxnState::Dead || !m.pending) else {
                return base.with_error_code(ResponseError::TransactionalIdNotFound.code());
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, p) in &m.partitions {
                match topics.last_mut() {
                    Some(t) if t.topic.as_str() == topic => t.partitions.push(*p),
                    _ => topics.push(
                        TopicData::default()
                            .with_topic(topic_name(topic.clone()))
                            .with_partitions(vec![*p]),
                    ),
                }
            }
            base.with_transaction_state(str_bytes(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub(super) fn list(broker: &Arc<Broker>, request: ListTransactionsRequest) -> ListTransactionsResponse {
    if !broker.txn.is_loaded() {
        return ListTransactionsResponse::default().with_error_code(ResponseError::CoordinatorLoadInProgress.code());
    }
    let unknown: Vec<_> = request
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    let pattern = match request.transactional_id_pattern.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => match regex_lite::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code());
            }
        },
        None => None,
    };
    let now = crate::clock::now_ms();
    let states = broker
        .txn
        .all()
        .into_iter()
        .filter(|(_, m)| !(m.pending && m.state == TxnState::Dead))
        .filter(|(_, m)| {
            request.state_filters.is_empty() || request.state_filters.iter().any(|s| s.as_str() == m.state.name())
        })
        .filter(|(_, m)| {
            request.producer_id_filters.is_empty() || request.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        })
        .filter(|(_, m)| {
            request.duration_filter < 0 || (m.start_ms >= 0 && now - m.start_ms >= request.duration_filter)
        })
        .filter(|(id, _)| pattern.as_ref().is_none_or(|r| r.is_match(id)))
        .map(|(id, m)| {
            ListedState::default()
                .with_transactional_id(str_bytes(id).into())
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
