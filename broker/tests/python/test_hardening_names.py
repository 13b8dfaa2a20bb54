"""Hardening: reserved and internal topic names, metadata-log damage and stray partition dirs
(issue 19, defects 1, 2, 3 and the name-collision half of 10), against the real broker process.

- Reserved names: `__cluster_metadata` and Kafka's internal topics cannot be created by clients
  (Kafka API and admin gRPC), and the metadata log lives outside every directory a topic
  partition can map to; a data dir of the earlier layout is moved on start.
- Metadata log damage: a damaged entry followed by valid ones stops the start with a clear error
  and changes no file; a torn tail is still truncated; a partition dir whose topic id does not
  match is moved aside as `-stray`, never deleted.
- Internal topics: Produce, DeleteRecords, DeleteTopics, CreatePartitions and AlterConfigs that
  would break `__consumer_offsets` are refused with Kafka's codes, and committed offsets survive.
- `a.b` and `a_b` collide (INVALID_TOPIC_EXCEPTION), as in Kafka.
"""

from __future__ import annotations

import shutil
import time

import grpc
import pytest
from confluent_kafka import TopicCollection, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, ResourceType)

import wire
from helpers import (admin, consumer, create_topic, future_codes, produce_ok, unique,
                     wait_until, watermarks)
from test_admin_grpc import ReflectedAdmin

INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUEST = 42
POLICY_VIOLATION = 44
OFFSETS = "__consumer_offsets"


@pytest.fixture()
def fresh(broker_factory):
    """A broker of its own per test: these tests stop, damage and restart it."""
    return broker_factory(["--set", "topics.num_partitions=1"], name=unique("names"))


def metadata_log(data_dir):
    """The metadata log of either layout (so that a test fails on the defect, not the path)."""
    current = data_dir / "metadata" / "metadata.log"
    legacy = data_dir / "__cluster_metadata-0" / "metadata.log"
    return legacy if legacy.exists() and not current.exists() else current


def create_codes(bootstrap: str, names: list[str]) -> dict:
    a = admin(bootstrap)
    return future_codes(a.create_topics([NewTopic(n, 1, 1) for n in names], operation_timeout=10,
                                        request_timeout=15))


def topic_names(bootstrap: str) -> set:
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def commit_offset(bootstrap: str, group: str, topic: str, offset: int) -> None:
    c = consumer(bootstrap, group_id=group)
    try:
        c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = consumer(bootstrap, group_id=group)
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


# -- defect 1: reserved names, metadata log outside the partition namespace -------------------


def test_reserved_and_internal_names_cannot_be_created(fresh):
    reserved = ["__cluster_metadata", OFFSETS, "__transaction_state", "__share_group_state"]
    assert create_codes(fresh.bootstrap, reserved) == {n: INVALID_REQUEST for n in reserved}
    # Auto-creation (Metadata, Produce) never makes them either.
    assert not set(reserved) & topic_names(fresh.bootstrap)
    # The admin gRPC API goes through the same controller.
    ch = grpc.insecure_channel(fresh.admin)
    try:
        with pytest.raises(grpc.RpcError) as info:
            ReflectedAdmin(ch).call("CreateTopic", name="__cluster_metadata", partitions=1)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    finally:
        ch.close()


def test_the_reported_attack_no_longer_loses_topics(fresh):
    """Create/delete of `__cluster_metadata` used to delete metadata.log: topics gone on restart."""
    topic = unique("kept")
    create_topic(fresh.bootstrap, topic)
    produce_ok(fresh.bootstrap, topic, [{"value": b"v%d" % i} for i in range(10)])
    a = admin(fresh.bootstrap)
    create_codes(fresh.bootstrap, ["__cluster_metadata"])
    future_codes(a.delete_topics(["__cluster_metadata"], operation_timeout=10, request_timeout=15))
    assert (fresh.data_dir / "metadata" / "metadata.log").is_file()
    assert not (fresh.data_dir / "__cluster_metadata-0").exists()
    fresh.restart()
    assert topic in topic_names(fresh.bootstrap)
    assert watermarks(fresh.bootstrap, topic) == (0, 10)


def test_data_dir_of_the_earlier_layout_is_moved_on_start(fresh):
    topic = unique("upgrade")
    create_topic(fresh.bootstrap, topic)
    produce_ok(fresh.bootstrap, topic, [{"value": b"x"}] * 5)
    assert fresh.stop() == 0
    # Recreate the layout of earlier versions: the log inside a partition-shaped directory.
    legacy = fresh.data_dir / "__cluster_metadata-0"
    legacy.mkdir()
    (fresh.data_dir / "metadata" / "metadata.log").rename(legacy / "metadata.log")
    shutil.rmtree(fresh.data_dir / "metadata")  # (earlier releases had no disk reserve either)
    fresh.start()
    assert topic in topic_names(fresh.bootstrap)
    assert watermarks(fresh.bootstrap, topic) == (0, 5)
    assert (fresh.data_dir / "metadata" / "metadata.log").is_file()
    assert not legacy.exists()


# -- defect 2: metadata log corruption never deletes user data --------------------------------


def partition_files(root) -> dict:
    """Size of every file inside a partition directory (`<topic>-<n>`)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.glob("*-*/*") if p.is_file()}


def test_corruption_before_valid_entries_stops_the_start_and_touches_nothing(fresh):
    topics = [unique("c") for _ in range(3)]
    for t in topics:
        create_topic(fresh.bootstrap, t)
    produce_ok(fresh.bootstrap, topics[0], [{"value": b"r%d" % i} for i in range(100)])
    assert fresh.stop() == 0
    log = metadata_log(fresh.data_dir)
    data = bytearray(log.read_bytes())
    # Flip a few bytes inside the first entry's body (valid entries follow it).
    for i in range(12, 16):
        data[i] ^= 0x5A
    log.write_bytes(bytes(data))
    before = partition_files(fresh.data_dir)
    assert before
    with pytest.raises(AssertionError, match="exited"):
        fresh.start()
    text = fresh.log_text()
    assert "is corrupt at byte" in text and "refusing to truncate" in text, fresh.log_tail()
    assert log.read_bytes() == bytes(data), "the damaged log was modified"
    assert partition_files(fresh.data_dir) == before, "partition files changed although the broker refused to start"
    # Repaired (the operator restores the file): everything is back.
    for i in range(12, 16):
        data[i] ^= 0x5A
    log.write_bytes(bytes(data))
    fresh.start()
    assert set(topics) <= topic_names(fresh.bootstrap)
    assert watermarks(fresh.bootstrap, topics[0]) == (0, 100)


def test_torn_tail_is_truncated_and_the_broker_starts(fresh):
    topic = unique("torn")
    create_topic(fresh.bootstrap, topic)
    fresh.kill9()
    log = metadata_log(fresh.data_dir)
    with open(log, "ab") as f:  # a half-written entry: header promising more than follows
        f.write(b"\x00\x00\x01\x00\x12\x34\x56\x78[{\"type\":")
    fresh.start()
    assert topic in topic_names(fresh.bootstrap)


def test_the_metadata_log_is_compacted_and_replays_to_the_same_topics(broker_factory):
    """The embedded node's metadata log does not grow with every change ever made: past
    `cluster.snapshot_every` batches it is rewritten as its image, and restarts (including
    kill -9) replay it to the same topics, ids, partitions and configs."""
    b = broker_factory(["--set", "topics.num_partitions=1", "--set", "cluster.snapshot_every=20",
                        "--set", "storage.checkpoint_interval=200ms"], name=unique("compact"))
    topics = [unique("k") for _ in range(30)]
    for t in topics:
        create_topic(b.bootstrap, t, partitions=2, config={"retention.ms": "3600000"})
    gone = topics.pop()
    a = admin(b.bootstrap)
    a.delete_topics([gone], operation_timeout=10)[gone].result(timeout=20)
    log = metadata_log(b.data_dir)
    wait_until(lambda: "compacted the metadata log" in b.log_text(), 10, "a compaction")
    def topic_ids():
        a = admin(b.bootstrap)
        desc = a.describe_topics(TopicCollection(topics), request_timeout=15)
        return {name: str(f.result(timeout=20).topic_id) for name, f in desc.items()}

    ids_before = topic_ids()
    produce_ok(b.bootstrap, topics[0], [{"value": b"v%d" % i, "partition": 1} for i in range(5)])
    b.kill9()
    size = log.stat().st_size
    b.start()
    md = admin(b.bootstrap).list_topics(timeout=10)
    assert set(topics) <= set(md.topics) and gone not in md.topics
    assert topic_ids() == ids_before
    assert all(len(md.topics[t].partitions) == 2 for t in topics)
    assert watermarks(b.bootstrap, topics[0], 1) == (0, 5)
    cfg = ConfigResource(ResourceType.TOPIC, topics[-1])
    a = admin(b.bootstrap)  # alive until the future resolves
    values = a.describe_configs([cfg])[cfg].result(timeout=10)
    assert values["retention.ms"].value == "3600000"
    # 31 creations, a deletion and the registrations would be well over 30 entries uncompacted.
    assert size < 64 * 1024, size
    text = log.read_bytes()
    assert b'{"base_offset":' in text[:40], "the log starts with a checkpoint"
    # The image as of the compaction plus what came after: no record of a topic twice.
    assert text.count(b'"type":"Topic"') <= len(topics) + 2, text.count(b'"type":"Topic"')


def test_partition_dir_of_another_topic_id_is_moved_aside_not_deleted(fresh):
    topic = unique("stray")
    create_topic(fresh.bootstrap, topic)
    produce_ok(fresh.bootstrap, topic, [{"value": b"acked-%d" % i} for i in range(1000)])
    assert fresh.stop() == 0
    segment_bytes = sum(p.stat().st_size for p in (fresh.data_dir / f"{topic}-0").glob("*.log"))
    assert segment_bytes > 0
    # The metadata is lost (say, restored from an old backup): the topic is unknown.
    shutil.move(metadata_log(fresh.data_dir), fresh.workdir / "metadata.log.bak")
    fresh.start()
    # Auto-create makes a new topic of the same name, with a new topic id.
    produce_ok(fresh.bootstrap, topic, [{"value": b"new"}])
    strays = list(fresh.data_dir.glob(f"{topic}-0.*-stray"))
    assert len(strays) == 1, sorted(p.name for p in fresh.data_dir.iterdir())
    assert sum(p.stat().st_size for p in strays[0].glob("*.log")) == segment_bytes
    assert "moved aside as a stray dir" in fresh.log_text()
    assert watermarks(fresh.bootstrap, topic) == (0, 1)


# -- defect 3: internal topics cannot be written or destroyed by clients ----------------------


def test_internal_topics_refuse_client_changes_and_offsets_survive(fresh):
    topic = unique("src")
    group = unique("g")
    create_topic(fresh.bootstrap, topic)
    produce_ok(fresh.bootstrap, topic, [{"value": b"v"}] * 3)
    commit_offset(fresh.bootstrap, group, topic, 3)
    assert committed(fresh.bootstrap, group, topic) == 3
    wait_until(lambda: OFFSETS in topic_names(fresh.bootstrap), 10, "__consumer_offsets exists")
    md = admin(fresh.bootstrap).list_topics(topic=OFFSETS, timeout=10)
    partitions = sorted(md.topics[OFFSETS].partitions)
    a = admin(fresh.bootstrap)

    # Produce (raw frame: the code is Kafka's ReplicaManager refusal).
    batch = wire.record_batch([(b"k", b"fake offset commit")], int(time.time() * 1000))
    _, body = wire.roundtrip(fresh.bootstrap, wire.produce_v3_request(7, OFFSETS, 0, batch, acks=-1))
    assert wire.parse_produce_v3(body)[(OFFSETS, 0)][0] == INVALID_TOPIC_EXCEPTION
    # DeleteRecords.
    fs = a.delete_records([TopicPartition(OFFSETS, p, -1) for p in partitions[:3]], request_timeout=15)
    assert set(future_codes(fs).values()) == {INVALID_TOPIC_EXCEPTION}
    # AlterConfigs (full replace and incremental) that would let retention drop offsets.
    fs = a.alter_configs([ConfigResource(ResourceType.TOPIC, OFFSETS,
                                         set_config={"cleanup.policy": "delete", "retention.ms": "1"})])
    assert set(future_codes(fs).values()) == {POLICY_VIOLATION}
    fs = a.alter_configs([ConfigResource(ResourceType.TOPIC, OFFSETS, set_config={"retention.ms": "1"})])
    assert set(future_codes(fs).values()) == {POLICY_VIOLATION}, "replacing all configs drops compact"
    fs = a.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, OFFSETS, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND)])])
    assert set(future_codes(fs).values()) == {POLICY_VIOLATION}
    # CreatePartitions would remap every group to another partition.
    fs = a.create_partitions([NewPartitions(OFFSETS, len(partitions) + 1)], request_timeout=15)
    assert set(future_codes(fs).values()) == {INVALID_REQUEST}
    # DeleteTopics.
    fs = a.delete_topics([OFFSETS], operation_timeout=10, request_timeout=15)
    assert future_codes(fs) == {OFFSETS: INVALID_TOPIC_EXCEPTION}
    # A harmless change is still allowed, as Kafka allows tuning internal topics.
    fs = a.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, OFFSETS, incremental_configs=[
        ConfigEntry("min.cleanable.dirty.ratio", "0.3", incremental_operation=AlterConfigOpType.SET)])])
    assert set(future_codes(fs).values()) == {0}

    fresh.restart()
    assert committed(fresh.bootstrap, group, topic) == 3
    md = admin(fresh.bootstrap).list_topics(topic=OFFSETS, timeout=10)
    assert sorted(md.topics[OFFSETS].partitions) == partitions
    # Clients still read internal topics (tools that decode __consumer_offsets do).
    assert sum(watermarks(fresh.bootstrap, OFFSETS, p)[1] for p in partitions) > 0


def test_metadata_marks_only_kafka_internal_topics_internal(fresh):
    user = "__" + unique("user")  # a leading "__" alone does not make a topic internal
    create_topic(fresh.bootstrap, user)
    commit_offset(fresh.bootstrap, unique("g"), user, 0)
    md = admin(fresh.bootstrap).list_topics(timeout=10)
    from kafka import KafkaAdminClient  # the internal flag through a second client library
    k = KafkaAdminClient(bootstrap_servers=fresh.bootstrap)
    try:
        described = {t.get("topic", t.get("name")): t["is_internal"] for t in k.describe_topics([user, OFFSETS])}
    finally:
        k.close()
    assert described == {user: False, OFFSETS: True}
    assert user in md.topics


# -- defect 10 (second half): names that collide after '.' -> '_' ----------------------------


def test_dot_and_underscore_names_collide(fresh):
    base = unique("a")
    dotted, underscored = f"{base}.b", f"{base}_b"
    assert create_codes(fresh.bootstrap, [dotted]) == {dotted: 0}
    assert create_codes(fresh.bootstrap, [underscored]) == {underscored: INVALID_TOPIC_EXCEPTION}
    # Auto-create does not make it either.
    c = consumer(fresh.bootstrap)
    try:
        c.list_topics(topic=underscored, timeout=5)
    finally:
        c.close()
    assert underscored not in topic_names(fresh.bootstrap)
