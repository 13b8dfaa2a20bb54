"""Kafka APIs that clients and tools probe for (issue 20, item 10), through kafka-python's own
codec and admin client: OffsetForLeaderEpoch (23) with Kafka's fencing, DescribeLogDirs (35) with
per-partition sizes and disk totals, DescribeProducers (61) with idempotent producer state; and
ApiVersions advertising them."""

from __future__ import annotations

import socket
import struct

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.protocol.consumer import OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse

from helpers import create_topic, future_codes, produce_ok, unique

NONE, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_LEADER_EPOCH = 0, 3, 75


@pytest.fixture(scope="module")
def kadmin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    yield a
    a.close()


def kafka_python_roundtrip(addr: str, request, response_cls, version: int):
    """Sends `request` encoded by kafka-python's codec and decodes the answer with it."""
    request.with_header(correlation_id=11, client_id="compat-test")
    frame = request.encode(version=version, header=True, framed=True)
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(frame)
        size = struct.unpack(">i", _recv(s, 4))[0]
        payload = _recv(s, size)
    return response_cls.decode(payload, version=version, header=True)


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def epoch_request(topic: str, partitions: list[tuple[int, int, int]]):
    T = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    P = T.OffsetForLeaderPartition
    return OffsetForLeaderEpochRequest(replica_id=-1, topics=[T(topic=topic, partitions=[
        P(partition=p, current_leader_epoch=cur, leader_epoch=epoch) for p, cur, epoch in partitions])])


@pytest.mark.parametrize("version", [2, 4])
def test_offset_for_leader_epoch(broker, version):
    topic = unique("epochs")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_ok(broker.bootstrap, topic, [{"value": b"x", "partition": 0}] * 7)
    request = epoch_request(topic, [
        (0, -1, 0),    # latest epoch (0 on a fresh single node): its end is the log end offset
        (0, 0, 0),     # same, with the current epoch given
        (0, 1, 0),     # a newer current epoch than the leader knows: UNKNOWN_LEADER_EPOCH
        (1, -1, 0),    # empty partition 1
        (0, -1, 5),    # an epoch newer than any known: undefined (-1, -1)
        (9, -1, 0),    # no such partition
    ])
    response = kafka_python_roundtrip(broker.bootstrap, request, OffsetForLeaderEpochResponse, version)
    [t] = response.topics
    got = [(p.partition, p.error_code, p.leader_epoch, p.end_offset) for p in t.partitions]
    assert got == [
        (0, NONE, 0, 7),
        (0, NONE, 0, 7),
        (0, UNKNOWN_LEADER_EPOCH, -1, -1),
        (1, NONE, 0, 0),
        (0, NONE, -1, -1),
        (9, UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
    ]


def test_describe_log_dirs_reports_partition_sizes(broker, kadmin):
    topic = unique("logdirs")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_ok(broker.bootstrap, topic, [{"value": b"v" * 1000, "partition": 0}] * 50)
    result = kadmin.describe_log_dirs()
    text = repr(result)
    assert topic in text, text[:2000]
    dirs = result if isinstance(result, list) else result.get("log_dirs", result)
    [entry] = [d for d in _iter_dirs(dirs)]
    assert entry["error_code"] == NONE
    assert entry["total_bytes"] > 0 and 0 < entry["usable_bytes"] <= entry["total_bytes"]
    sizes = {p["partition_index"]: p["partition_size"]
             for t in entry["topics"] if t["name"] == topic for p in t["partitions"]}
    assert sizes[0] > 50 * 1000 and sizes[1] == 0, sizes
    # Asking for one partition returns just that one.
    only = kadmin.describe_log_dirs(topic_partitions={topic: [1]})
    [entry] = [d for d in _iter_dirs(only if isinstance(only, list) else only.get("log_dirs", only))]
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in entry["topics"]] == [(topic, [1])]


def _iter_dirs(obj):
    """kafka-python returns its response as nested dicts/lists; find the log-dir entries."""
    if isinstance(obj, dict):
        if "log_dir" in obj:
            yield obj
            return
        for v in obj.values():
            yield from _iter_dirs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _iter_dirs(v)


def test_describe_producers_lists_idempotent_producers(broker, kadmin):
    topic = unique("producers")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_ok(broker.bootstrap, topic, [{"value": b"a", "partition": 0}] * 5, enable_idempotence=True)
    result = kadmin.describe_producers([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    text = repr(result)
    states = list(_iter_producers(result))
    assert len(states) == 1, text
    [state] = states
    assert state["producer_id"] >= 0 and state["producer_epoch"] >= 0, text
    assert state["last_sequence"] == 4, text
    assert state["last_timestamp"] > 0, text


def _iter_producers(obj):
    if hasattr(obj, "_asdict"):
        obj = obj._asdict()
    if isinstance(obj, dict):
        if "producer_id" in obj:
            yield obj
            return
        for v in obj.values():
            yield from _iter_producers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _iter_producers(v)
    elif hasattr(obj, "__dict__"):
        yield from _iter_producers(vars(obj))


# -- item 2: CreateTopics / CreatePartitions with manual replica assignments ------------------

INVALID_REQUEST, INVALID_REPLICA_ASSIGNMENT = 42, 39


def test_create_topics_and_partitions_honour_replica_assignments(broker):
    from confluent_kafka.admin import NewPartitions, NewTopic

    from helpers import admin, wait_until
    a = admin(broker.bootstrap)
    node = next(iter(a.list_topics(timeout=10).brokers))
    topic = unique("assigned")
    # librdkafka wants the count alongside the assignment and sends -1/-1 on the wire, as Kafka requires.
    fs = a.create_topics([NewTopic(topic, 22, replica_assignment=[[node]] * 22)], request_timeout=15)
    assert future_codes(fs) == {topic: 0}
    wait_until(lambda: len(a.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 22, 10,
               "22 partitions")
    bad = {
        unique("unknown-broker"): [[node + 7]],
        unique("dup-broker"): [[node, node]],
    }
    fs = a.create_topics([NewTopic(n, len(r), replica_assignment=r) for n, r in bad.items()], request_timeout=15)
    assert future_codes(fs) == {n: INVALID_REPLICA_ASSIGNMENT for n in bad}
    # CreatePartitions: the assignments must cover exactly the new partitions.
    fs = a.create_partitions([NewPartitions(topic, 25, replica_assignment=[[node]] * 2)], request_timeout=15)
    assert set(future_codes(fs).values()) == {INVALID_REPLICA_ASSIGNMENT}
    fs = a.create_partitions([NewPartitions(topic, 25, replica_assignment=[[node + 3]] * 3)], request_timeout=15)
    assert set(future_codes(fs).values()) == {INVALID_REPLICA_ASSIGNMENT}
    fs = a.create_partitions([NewPartitions(topic, 25, replica_assignment=[[node]] * 3)], request_timeout=15)
    assert set(future_codes(fs).values()) == {0}
    wait_until(lambda: len(a.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 25, 10,
               "25 partitions")


# -- item 3: authorized operations (no authorizer: everything a resource type supports) -------


def test_authorized_operations_are_answered_when_requested(broker, kadmin):
    from confluent_kafka import TopicCollection
    from confluent_kafka import TopicPartition as CTopicPartition
    from confluent_kafka.admin import AclOperation

    from helpers import admin, consumer
    topic = unique("ops")
    create_topic(broker.bootstrap, topic)
    group = unique("ops-group")
    c = consumer(broker.bootstrap, group_id=group)
    try:
        c.commit(offsets=[CTopicPartition(topic, 0, 0)],
                 asynchronous=False)
    finally:
        c.close()
    a = admin(broker.bootstrap)
    [desc] = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True).values()
    topic_ops = set(desc.result(timeout=10).authorized_operations)
    assert {AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE, AclOperation.DESCRIBE,
            AclOperation.ALTER_CONFIGS} <= topic_ops, topic_ops
    cluster = a.describe_cluster(include_authorized_operations=True).result(timeout=10)
    assert {AclOperation.DESCRIBE, AclOperation.ALTER, AclOperation.CLUSTER_ACTION,
            AclOperation.IDEMPOTENT_WRITE} <= set(cluster.authorized_operations), cluster.authorized_operations
    [g] = a.describe_consumer_groups([group], include_authorized_operations=True).values()
    group_ops = set(g.result(timeout=10).authorized_operations or [])
    assert {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE} <= group_ops, group_ops
    # Not requested: no operations.
    [desc] = a.describe_topics(TopicCollection([topic])).values()
    assert not desc.result(timeout=10).authorized_operations
    # Metadata v8+ cluster operations, through kafka-python's describe_cluster (Metadata-based).
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    md = kafka_python_roundtrip(broker.bootstrap, MetadataRequest(
        topics=[], allow_auto_topic_creation=False, include_cluster_authorized_operations=True,
        include_topic_authorized_operations=False), MetadataResponse, 9)
    ops = md.authorized_operations  # kafka-python decodes the bitfield to a set of operation codes
    assert (set(ops) if not isinstance(ops, int) else ops) in ({5, 7, 8, 9, 10, 11, 12}, 0b1_1111_1010_0000), ops


# -- items 8 and 9: empty list values; null (not empty) error messages on success -------------


def test_success_carries_a_null_error_message(broker):
    from kafka.protocol.admin import (CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest,
                                      DescribeConfigsResponse)
    topic = unique("nullmsg")
    T = CreateTopicsRequest.CreatableTopic
    response = kafka_python_roundtrip(broker.bootstrap, CreateTopicsRequest(
        topics=[T(name=topic, num_partitions=1, replication_factor=1, assignments=[], configs=[])],
        timeout_ms=10000, validate_only=False), CreateTopicsResponse, 7)
    [t] = response.topics
    assert (t.error_code, t.error_message) == (0, None)
    R = DescribeConfigsRequest.DescribeConfigsResource
    response = kafka_python_roundtrip(broker.bootstrap, DescribeConfigsRequest(
        resources=[R(resource_type=2, resource_name=topic, configuration_keys=["retention.ms"])],
        include_synonyms=False, include_documentation=False), DescribeConfigsResponse, 4)
    [r] = response.results
    assert (r.error_code, r.error_message) == (0, None)
    # An error still has its message.
    response = kafka_python_roundtrip(broker.bootstrap, CreateTopicsRequest(
        topics=[T(name=topic, num_partitions=1, replication_factor=1, assignments=[], configs=[])],
        timeout_ms=10000, validate_only=False), CreateTopicsResponse, 7)
    [t] = response.topics
    assert t.error_code == 36 and t.error_message


def test_empty_cleanup_policy_is_a_valid_empty_list(broker):
    from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

    from helpers import admin
    a = admin(broker.bootstrap)
    topic = unique("nopolicy")
    fs = a.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": ""})], request_timeout=15)
    assert future_codes(fs) == {topic: 0}
    [f] = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    assert f.result(timeout=10)["cleanup.policy"].value == ""
    # An empty item inside a list is still refused (INVALID_CONFIG).
    bad = unique("badpolicy")
    fs = a.create_topics([NewTopic(bad, 1, 1, config={"cleanup.policy": "delete,,compact"})], request_timeout=15)
    assert future_codes(fs) == {bad: 40}


# -- item 5: consumer-group config resources (KIP-848) ----------------------------------------


def test_group_config_resources_set_describe_and_apply(broker, kadmin, tmp_path):
    import json
    import subprocess
    import sys
    import time
    from pathlib import Path

    from kafka.admin import ConfigResource, ConfigResourceType

    from helpers import admin, wait_until
    group = unique("cfg-group")
    session, interval = "3000", "500"
    out = kadmin.alter_configs([ConfigResource(ConfigResourceType.GROUP, group, configs={
        "group.consumer.session.timeout.ms": session,
        "group.consumer.heartbeat.interval.ms": interval})], incremental=True)
    assert "Error" not in repr(out), out
    described = kadmin.describe_configs([ConfigResource(ConfigResourceType.GROUP, group)],
                                        config_filter="all")["group"][group]
    assert {k: (v["value"], v["config_source"]) for k, v in described.items()} == {
        "group.consumer.session.timeout.ms": (session, "DYNAMIC_GROUP_CONFIG"),
        "group.consumer.heartbeat.interval.ms": (interval, "DYNAMIC_GROUP_CONFIG"),
    }
    # A heartbeat interval not below the session timeout is refused (INVALID_CONFIG, 40).
    out = kadmin.alter_configs([ConfigResource(ConfigResourceType.GROUP, group, configs={
        "group.consumer.heartbeat.interval.ms": "9000"})], incremental=True, raise_on_unknown=False)
    assert "[Error 40]" in out["group"][group], out
    # The override is what the group runs with: a KIP-848 member killed -9 leaves the group
    # after ~3 s, not the broker default of 45 s.
    topic = unique("cfg-topic")
    create_topic(broker.bootstrap, topic)
    events = tmp_path / "events.jsonl"
    member = Path(__file__).with_name("group_member.py")
    proc = subprocess.Popen([sys.executable, str(member), broker.bootstrap, group, topic, str(events),
                             json.dumps({"group.protocol": "consumer"})])
    try:
        wait_until(lambda: events.exists() and '"assign"' in events.read_text(), 30, "member assigned")
    finally:
        proc.kill()
        proc.wait()
    killed = time.monotonic()
    a = admin(broker.bootstrap)

    def members():
        [f] = a.describe_consumer_groups([group]).values()
        return len(f.result(timeout=10).members)

    wait_until(lambda: members() == 0, 20, "the killed member's session to expire")
    assert time.monotonic() - killed < 20


# -- item 4: dynamic broker configs -----------------------------------------------------------


def test_dynamic_broker_configs_apply_to_topics_and_survive_restart(broker_factory):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    from helpers import admin, wait_until
    b = broker_factory(name="dynamic-configs")
    a = admin(b.bootstrap)
    node = str(next(iter(a.list_topics(timeout=10).brokers)))
    topic, pinned = unique("follows"), unique("pinned")
    create_topic(b.bootstrap, topic)
    create_topic(b.bootstrap, pinned, config={"retention.ms": "1234567"})

    def topic_cfg(name):
        [f] = a.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values()
        return f.result(timeout=10)

    def broker_cfg(name):
        [f] = a.describe_configs([ConfigResource(ResourceType.BROKER, name)]).values()
        return f.result(timeout=10)

    def alter(name, entries):
        fs = a.incremental_alter_configs([ConfigResource(ResourceType.BROKER, name, incremental_configs=entries)])
        return future_codes(fs)

    SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE
    # Cluster-wide default (resource name "", what `kafka-configs --entity-default` sends; both
    # Python admin clients refuse an empty name, so kafka-python's codec sends it), then this
    # broker's own value over it.
    from kafka.protocol.admin import (DescribeConfigsRequest, DescribeConfigsResponse,
                                      IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse)
    R = IncrementalAlterConfigsRequest.AlterConfigsResource
    response = kafka_python_roundtrip(b.bootstrap, IncrementalAlterConfigsRequest(resources=[R(
        resource_type=4, resource_name="", configs=[R.AlterableConfig(
            name="log.retention.ms", config_operation=0, value="86400000")])], validate_only=False),
        IncrementalAlterConfigsResponse, 1)
    assert [(r.resource_name, r.error_code) for r in response.responses] == [("", 0)]
    D = DescribeConfigsRequest.DescribeConfigsResource
    response = kafka_python_roundtrip(b.bootstrap, DescribeConfigsRequest(
        resources=[D(resource_type=4, resource_name="", configuration_keys=None)],
        include_synonyms=False, include_documentation=False), DescribeConfigsResponse, 4)
    [r] = response.results
    assert [(c.name, c.value, c.config_source) for c in r.configs] == [("log.retention.ms", "86400000", 3)]
    c = topic_cfg(topic)["retention.ms"]
    assert (c.value, c.source) == ("86400000", 3), (c.value, c.source)  # DYNAMIC_DEFAULT_BROKER_CONFIG
    assert set(alter(node, [ConfigEntry("log.retention.ms", "3600000", incremental_operation=SET),
                            ConfigEntry("message.max.bytes", "2097152", incremental_operation=SET)]).values()) == {0}
    c = topic_cfg(topic)["retention.ms"]
    assert (c.value, c.source) == ("3600000", 2), (c.value, c.source)  # DYNAMIC_BROKER_CONFIG
    assert topic_cfg(pinned)["retention.ms"].value == "1234567", "a topic override still wins"
    bc = broker_cfg(node)["log.retention.ms"]
    assert (bc.value, bc.source, bc.is_read_only) == ("3600000", 2, False)
    # The new max.message.bytes default is enforced: a 1.5 MiB record is accepted.
    produce_ok(b.bootstrap, topic, [{"value": b"x" * (1536 * 1024)}], message_max_bytes=4 * 1024 * 1024)
    # Static settings and bad values are refused with INVALID_CONFIG (40).
    assert set(alter(node, [ConfigEntry("num.network.threads", "4", incremental_operation=SET)]).values()) == {40}
    assert set(alter(node, [ConfigEntry("log.retention.ms", "soon", incremental_operation=SET)]).values()) == {40}
    # Durable: a restart keeps the dynamic values (they are metadata records).
    b.restart()
    a = admin(b.bootstrap)
    assert topic_cfg(topic)["retention.ms"].value == "3600000"
    # Deleting the per-broker value falls back to the cluster default.
    assert set(alter(node, [ConfigEntry("log.retention.ms", None, incremental_operation=DELETE)]).values()) == {0}
    wait_until(lambda: topic_cfg(topic)["retention.ms"].value == "86400000", 10, "fallback to the default")


def test_api_versions_let_clients_infer_kafka_4(broker):
    """kafka-python infers the broker version from ApiVersions (Fetch v17 -> 3.9, ListOffsets v10
    -> 4.0): a broker inferred as older gets older request versions and fewer features."""
    from kafka import KafkaAdminClient
    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        node = next(iter(k.describe_cluster()["brokers"]))
        node = node.get("node_id", node.get("broker_id")) if isinstance(node, dict) else node
        data = k.get_broker_version_data(node)
        version = getattr(data, "broker_version", data)
    finally:
        k.close()
    assert tuple(version)[:2] >= (4, 0), version
