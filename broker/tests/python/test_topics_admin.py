"""Topic administration and the error codes it must return: CreateTopics (validate_only, per-topic
configs, duplicate -> TOPIC_ALREADY_EXISTS, invalid names -> INVALID_TOPIC_EXCEPTION), DeleteTopics,
CreatePartitions (increase then produce to the new partition; decrease or same count ->
INVALID_PARTITIONS), auto-create with topics.num_partitions, auto-create off (missing topic ->
UNKNOWN_TOPIC_OR_PARTITION, via librdkafka and via a raw Produce v3), and max.message.bytes
(MESSAGE_TOO_LARGE)."""

import time

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

import wire
from helpers import (admin, consume, create_topic, kafka_error_code, produce_all, produce_ok,
                     producer, unique, wait_until, watermarks)

AUTO_PARTITIONS = 3


@pytest.fixture(scope="module")
def broker(broker_factory):
    return broker_factory(["--set", f"topics.num_partitions={AUTO_PARTITIONS}"], name="admin-broker")


@pytest.fixture(scope="module")
def no_autocreate_broker(broker_factory):
    return broker_factory(["--auto-create-topics", "false"], name="no-autocreate-broker")


def topic_names(bootstrap) -> set:
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def create(bootstrap, new_topics, validate_only=False):
    a = admin(bootstrap)
    fs = a.create_topics(new_topics, validate_only=validate_only, operation_timeout=10,
                         request_timeout=15)
    out = {}
    for name, f in fs.items():
        try:
            f.result(timeout=20)
            out[name] = 0
        except Exception as e:  # noqa: BLE001 - the code is what is asserted
            out[name] = kafka_error_code(e)
    return out


def test_create_validate_only_creates_nothing(broker):
    topic = unique("validate")
    assert create(broker.bootstrap, [NewTopic(topic, 2, 1)], validate_only=True) == {topic: 0}
    assert topic not in topic_names(broker.bootstrap)
    # validate_only still validates.
    assert create(broker.bootstrap, [NewTopic("bad/name", 1, 1)], validate_only=True) == {"bad/name": 17}


def test_create_with_configs_and_duplicate(broker):
    topic = unique("withcfg")
    assert create(broker.bootstrap, [NewTopic(topic, 2, 1, config={"retention.ms": "3600000",
                                                                   "cleanup.policy": "delete"})]) == {topic: 0}
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1]
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["cleanup.policy"].value == "delete"
    assert create(broker.bootstrap, [NewTopic(topic, 1, 1)]) == {topic: 36}  # TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("name", ["bad/name", "a" * 300, "..", "spaces are bad"])
def test_invalid_topic_names(broker, name):
    assert create(broker.bootstrap, [NewTopic(name, 1, 1)]) == {name: 17}  # INVALID_TOPIC_EXCEPTION
    assert name not in topic_names(broker.bootstrap)


def test_invalid_partition_count_and_config(broker):
    topic = unique("badcount")
    assert create(broker.bootstrap, [NewTopic(topic, 0, 1)]) == {topic: 37}  # INVALID_PARTITIONS
    t2 = unique("badcfg")
    assert create(broker.bootstrap, [NewTopic(t2, 1, 1, config={"retention.ms": "soon"})]) == {t2: 40}
    assert not {topic, t2} & topic_names(broker.bootstrap)


def test_delete_topics(broker):
    topic = unique("del")
    create_topic(broker.bootstrap, topic)
    produce_ok(broker.bootstrap, topic, [{"partition": 0, "value": b"gone soon"}])
    a = admin(broker.bootstrap)
    a.delete_topics([topic], operation_timeout=10, request_timeout=15)[topic].result(timeout=20)
    wait_until(lambda: topic not in topic_names(broker.bootstrap), 10, f"{topic} gone from metadata")
    # Deleting it again: UNKNOWN_TOPIC_OR_PARTITION (3).
    with pytest.raises(Exception) as ei:
        a.delete_topics([topic], operation_timeout=10, request_timeout=15)[topic].result(timeout=20)
    assert kafka_error_code(ei.value) == 3
    # Re-creating the same name starts an empty log.
    create_topic(broker.bootstrap, topic)
    assert watermarks(broker.bootstrap, topic) == (0, 0)


def test_create_partitions_increase_then_decrease(broker):
    topic = unique("parts")
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_ok(broker.bootstrap, topic, [{"partition": 0, "value": b"p0"}])
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions(topic, 3)], operation_timeout=10,
                        request_timeout=15)[topic].result(timeout=20)
    md = admin(broker.bootstrap).list_topics(topic, timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]
    # A producer that has never seen the topic picks up all 3 partitions; write to the new one.
    d = produce_ok(broker.bootstrap, topic, [{"partition": 2, "key": b"k", "value": b"in-new-partition"}])
    assert (d[0].partition(), d[0].offset()) == (2, 0)
    msgs = consume(broker.bootstrap, topic, [2], 1)
    assert (msgs[0].partition(), msgs[0].offset(), msgs[0].value()) == (2, 0, b"in-new-partition")
    assert watermarks(broker.bootstrap, topic, 0) == (0, 1)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 0)

    for count in (2, 3):  # decrease, and "increase" to the same count
        with pytest.raises(Exception) as ei:
            a.create_partitions([NewPartitions(topic, count)], operation_timeout=10,
                                request_timeout=15)[topic].result(timeout=20)
        assert kafka_error_code(ei.value) == 37, f"to {count}: expected INVALID_PARTITIONS (37)"
    md = admin(broker.bootstrap).list_topics(topic, timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]


def test_create_partitions_unknown_topic(broker):
    topic = unique("parts-missing")
    a = admin(broker.bootstrap)
    with pytest.raises(Exception) as ei:
        a.create_partitions([NewPartitions(topic, 2)], operation_timeout=10,
                            request_timeout=15)[topic].result(timeout=20)
    assert kafka_error_code(ei.value) == 3


def test_auto_create_uses_default_partitions(broker):
    topic = unique("auto-n")
    d = produce_ok(broker.bootstrap, topic, [{"value": b"x"}])
    assert d[0].offset() == 0
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert sorted(md.topics[topic].partitions) == list(range(AUTO_PARTITIONS))


def test_message_too_large(broker):
    topic = unique("toolarge")
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "2000"})
    p = producer(broker.bootstrap, message_max_bytes=1_000_000, compression_type="none",
                 linger_ms=0, message_timeout_ms=15000)
    d = produce_all(p, topic, [{"partition": 0, "value": b"z" * 10_000}])
    assert not d.ok
    (err, _msg), = d.errors
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err.str()
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    # A small record still goes through.
    d = produce_all(p, topic, [{"partition": 0, "value": b"small" * 10}])
    assert not d.errors and d.ok[0].offset() == 0


def test_missing_topic_without_autocreate(no_autocreate_broker):
    b = no_autocreate_broker
    topic = unique("missing")
    # Metadata for it: UNKNOWN_TOPIC_OR_PARTITION, and it is not created.
    md = admin(b.bootstrap).list_topics(topic, timeout=10)
    assert md.topics[topic].error is not None
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic not in topic_names(b.bootstrap)

    # A raw Produce v3 to it: partition error 3.
    batch = wire.record_batch([(b"k", b"v")], int(time.time() * 1000))
    corr, body = wire.roundtrip(b.bootstrap, wire.produce_v3_request(21, topic, 0, batch))
    assert corr == 21
    err, _base, _lat = wire.parse_produce_v3(body)[(topic, 0)]
    assert err == 3

    # librdkafka reports the delivery failure as an unknown topic.
    # librdkafka waits topic.metadata.propagation.max.ms (30 s by default) for a missing topic
    # to appear before failing its messages with _UNKNOWN_TOPIC.
    p = producer(b.bootstrap, message_timeout_ms=15000, linger_ms=0,
                 topic_metadata_propagation_max_ms=1000)
    d = produce_all(p, topic, [{"value": b"nowhere"}], timeout=20)
    assert not d.ok
    (err, _), = d.errors
    assert err.code() in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART), err.str()
    assert topic not in topic_names(b.bootstrap)

    # Explicitly created topics work on this broker.
    t2 = unique("explicit")
    create_topic(b.bootstrap, t2)
    assert produce_ok(b.bootstrap, t2, [{"partition": 0, "value": b"ok"}])[0].offset() == 0
