"""The admin gRPC API through a third-party gRPC client (grpcio): the service is discovered by
gRPC reflection (no generated Python stubs), topics made through gRPC are visible to Kafka clients
and vice versa, errors arrive as gRPC status codes, and grpc.health.v1 reports SERVING, then
NOT_SERVING to a watcher once shutdown begins (without an open Watch stream holding up exit)."""

import threading
import time

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from helpers import admin, create_topic, produce_ok, unique, wait_until

SERVICE = "fjord.admin.v1.Admin"


class ReflectedAdmin:
    """Calls fjord.admin.v1.Admin methods using only descriptors fetched by reflection."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        self.service = self.pool.FindServiceByName(SERVICE)

    def call(self, method: str, **fields):
        m = self.service.FindMethodByName(method)
        request_cls = GetMessageClass(m.input_type)
        response_cls = GetMessageClass(m.output_type)
        stub = self.channel.unary_unary(f"/{SERVICE}/{method}",
                                        request_serializer=lambda r: r.SerializeToString(),
                                        response_deserializer=response_cls.FromString)
        return stub(request_cls(**fields), timeout=10)


@pytest.fixture(scope="module")
def channel(broker):
    ch = grpc.insecure_channel(broker.admin)
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


def test_reflection_lists_the_admin_health_and_reflection_services(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    assert {SERVICE, "grpc.health.v1.Health"} <= services, services
    methods = {m.name for m in ReflectedAdmin(channel).service.methods}
    assert {"CreateTopic", "DescribeTopic", "ListTopics", "AlterTopic", "DeleteTopic",
            "DescribeCluster", "DrainBroker", "GetDrainStatus"} <= methods


def test_health_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_topic_is_a_kafka_topic_and_back(broker, channel):
    api = ReflectedAdmin(channel)
    name = unique("grpc")
    created = api.call("CreateTopic", name=name, partitions=4, configs={"retention.ms": "120000"})
    assert created.partitions == 4 and len(created.topic_id) == 36
    md = admin(broker.bootstrap).list_topics(name, timeout=10).topics[name]
    assert len(md.partitions) == 4
    produce_ok(broker.bootstrap, name, [{"value": b"v", "partition": 3}])

    grown = api.call("AlterTopic", name=name, partitions=6)
    assert grown.partitions == 6
    assert len(admin(broker.bootstrap).list_topics(name, timeout=10).topics[name].partitions) == 6

    from_kafka = unique("kafka")
    create_topic(broker.bootstrap, from_kafka, partitions=2)
    names = {t.name: t.partitions for t in api.call("ListTopics").topics}
    assert names[from_kafka] == 2 and names[name] == 6

    api.call("DeleteTopic", name=name)
    assert name not in admin(broker.bootstrap).list_topics(timeout=10).topics


def test_errors_are_grpc_status_codes(channel):
    api = ReflectedAdmin(channel)
    name = unique("codes")
    api.call("CreateTopic", name=name, partitions=2)
    cases = [
        (lambda: api.call("CreateTopic", name=name, partitions=1), grpc.StatusCode.ALREADY_EXISTS),
        (lambda: api.call("CreateTopic", name="no spaces", partitions=1), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: api.call("DescribeTopic", name=unique("missing")), grpc.StatusCode.NOT_FOUND),
        (lambda: api.call("AlterTopic", name=name, partitions=1), grpc.StatusCode.FAILED_PRECONDITION),
        (lambda: api.call("DrainBroker", broker_id=42), grpc.StatusCode.NOT_FOUND),
    ]
    for call, code in cases:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == code, info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        api.call("CreateTopic", name=name, partitions=1)
    assert dict(info.value.trailing_metadata()).get("fjord-kafka-error") == "TopicAlreadyExists"


def test_describe_cluster(broker, channel):
    cluster = ReflectedAdmin(channel).call("DescribeCluster")
    assert len(cluster.brokers) == 1
    b = cluster.brokers[0]
    assert b.kafka_address == broker.bootstrap and b.admin_address == broker.admin


def test_health_watch_sees_not_serving_on_shutdown_and_does_not_block_exit(broker_factory):
    b = broker_factory(["--set", "network.shutdown_timeout=2s"], name="health-watch-broker")
    ch = grpc.insecure_channel(b.admin)
    stream = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=60)
    seen = []

    def read():
        try:
            for message in stream:
                seen.append(message.status)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: seen, timeout=10, what="first health status")
    assert seen[0] == health_pb2.HealthCheckResponse.SERVING
    started = time.monotonic()
    assert b.stop() == 0, "clean exit with a Watch stream open"
    assert time.monotonic() - started < 15
    reader.join(timeout=10)
    ch.close()
    assert health_pb2.HealthCheckResponse.NOT_SERVING in seen, seen
