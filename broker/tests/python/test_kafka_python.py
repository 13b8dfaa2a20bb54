"""kafka-python (pure Python, its own protocol code): a produce/consume round trip and its admin
client (create_topics with configs, describe_configs). kafka-python negotiates versions from
ApiVersions v4 and infers a "broker version" from the advertised ranges, which exercises the
broker's ApiVersions handling differently from librdkafka."""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from helpers import unique


def test_produce_consume_round_trip(broker):
    topic = unique("kpy")
    # kafka-python 3 enables idempotence by default (InitProducerId, sequence numbers).
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=15000)
    try:
        futures = []
        for i in range(100):
            key = None if i % 10 == 0 else f"k{i}".encode()
            value = None if i == 55 else f"kafka-python-{i}".encode()
            headers = [("seq", str(i).encode())] if i % 2 else []
            futures.append(producer.send(topic, key=key, value=value, headers=headers, partition=0))
        metas = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    assert [m.offset for m in metas] == list(range(100))
    assert {m.partition for m in metas} == {0}

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=30000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 100 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
        assert len(got) == 100, f"consumed {len(got)} of 100"
        for i, r in enumerate(got):
            assert r.offset == i
            assert r.key == (None if i % 10 == 0 else f"k{i}".encode()), i
            assert r.value == (None if i == 55 else f"kafka-python-{i}".encode()), i
            assert list(r.headers) == ([("seq", str(i).encode())] if i % 2 else []), i
        assert consumer.end_offsets([tp]) == {tp: 100}
        assert consumer.beginning_offsets([tp]) == {tp: 0}
    finally:
        consumer.close()


def test_admin_create_topics_and_describe_configs(broker):
    topic = unique("kpy-admin")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        result = admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                              "configs": {"retention.ms": "3600000"}}})
        errors = {t["name"]: t["error_code"] for t in result["topics"]}
        assert errors == {topic: 0}

        desc = admin.describe_topics([topic])
        assert len(desc) == 1 and desc[0]["name"] == topic
        assert desc[0]["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc[0]["partitions"]) == [0, 1, 2]

        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                         config_filter="all")
        topic_configs = configs["topic"][topic]
        assert topic_configs["retention.ms"]["value"] == "3600000"
        assert topic_configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert topic_configs["cleanup.policy"]["value"] == "delete"
        assert topic_configs["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"

        # Creating it again fails with TOPIC_ALREADY_EXISTS (36).
        again = admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}},
                                    raise_errors=False)
        assert {t["name"]: t["error_code"] for t in again["topics"]} == {topic: 36}
    finally:
        admin.close()
