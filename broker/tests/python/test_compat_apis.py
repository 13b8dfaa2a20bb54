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

from helpers import create_topic, produce_ok, unique

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
