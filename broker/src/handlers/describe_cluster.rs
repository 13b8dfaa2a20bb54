//! DescribeCluster (key 60): cluster id, controller and brokers (KIP-700).

use fjord_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use fjord_protocol::kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use super::{broker_id, operations, str_bytes};
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, listener: &str, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let brokers = super::live_brokers(broker, &broker.image(), listener)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(broker_id(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(broker_id(broker.controller_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(operations::answer(
            request.include_cluster_authorized_operations,
            operations::CLUSTER,
        ))
}
