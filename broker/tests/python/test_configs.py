"""DescribeConfigs / IncrementalAlterConfigs / AlterConfigs round trips through confluent-kafka's
AdminClient: topic defaults with source DEFAULT_CONFIG, SET and DELETE with source
DYNAMIC_TOPIC_CONFIG, legacy AlterConfigs replacing the whole set, invalid values rejected
(INVALID_CONFIG), validate_only, the broker resource, and DescribeCluster."""

import pytest
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from helpers import admin, create_topic, kafka_error_code, unique

DEFAULT_RETENTION_MS = "604800000"


def source_of(entry) -> ConfigSource:
    s = entry.source
    return s if isinstance(s, ConfigSource) else ConfigSource(s)


def describe_topic(bootstrap, topic) -> dict:
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=15)[res].result(timeout=20)


def incremental(bootstrap, topic, entries, validate_only=False):
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    return a.incremental_alter_configs([res], request_timeout=15,
                                       validate_only=validate_only)[res].result(timeout=20)


def test_describe_topic_defaults(broker):
    topic = unique("cfg-default")
    create_topic(broker.bootstrap, topic)
    cfg = describe_topic(broker.bootstrap, topic)
    expected_defaults = {
        "retention.ms": DEFAULT_RETENTION_MS,
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "message.timestamp.type": "CreateTime",
        "segment.bytes": "1073741824",
        "segment.ms": "604800000",
    }
    for name, value in expected_defaults.items():
        assert name in cfg, f"{name} missing from DescribeConfigs (got {sorted(cfg)})"
        e = cfg[name]
        assert (e.value, source_of(e)) == (value, ConfigSource.DEFAULT_CONFIG), name
        assert e.is_default, name
    assert "max.message.bytes" in cfg
    assert int(cfg["max.message.bytes"].value) > 0


def test_incremental_alter_set_and_delete(broker):
    topic = unique("cfg-inc")
    create_topic(broker.bootstrap, topic)
    incremental(broker.bootstrap, topic,
                [ConfigEntry("retention.ms", "123456", incremental_operation=AlterConfigOpType.SET),
                 ConfigEntry("max.message.bytes", "50000", incremental_operation=AlterConfigOpType.SET)])
    cfg = describe_topic(broker.bootstrap, topic)
    assert (cfg["retention.ms"].value, source_of(cfg["retention.ms"])) == \
        ("123456", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert not cfg["retention.ms"].is_default
    assert (cfg["max.message.bytes"].value, source_of(cfg["max.message.bytes"])) == \
        ("50000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    # Untouched configs stay default.
    assert (cfg["cleanup.policy"].value, source_of(cfg["cleanup.policy"])) == \
        ("delete", ConfigSource.DEFAULT_CONFIG)

    incremental(broker.bootstrap, topic,
                [ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    cfg = describe_topic(broker.bootstrap, topic)
    assert (cfg["retention.ms"].value, source_of(cfg["retention.ms"])) == \
        (DEFAULT_RETENTION_MS, ConfigSource.DEFAULT_CONFIG)
    assert cfg["max.message.bytes"].value == "50000", "DELETE of one key must not touch another"


def test_incremental_validate_only_changes_nothing(broker):
    topic = unique("cfg-validate")
    create_topic(broker.bootstrap, topic)
    incremental(broker.bootstrap, topic,
                [ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
                validate_only=True)
    cfg = describe_topic(broker.bootstrap, topic)
    assert (cfg["retention.ms"].value, source_of(cfg["retention.ms"])) == \
        (DEFAULT_RETENTION_MS, ConfigSource.DEFAULT_CONFIG)


def test_invalid_config_value_rejected(broker):
    topic = unique("cfg-invalid")
    create_topic(broker.bootstrap, topic)
    for name, bad in [("retention.ms", "not-a-number"), ("cleanup.policy", "sometimes"),
                      ("message.timestamp.type", "WallClock")]:
        with pytest.raises(Exception) as ei:
            incremental(broker.bootstrap, topic,
                        [ConfigEntry(name, bad, incremental_operation=AlterConfigOpType.SET)])
        assert kafka_error_code(ei.value) == 40, f"{name}={bad}: expected INVALID_CONFIG (40)"
    cfg = describe_topic(broker.bootstrap, topic)
    assert cfg["retention.ms"].value == DEFAULT_RETENTION_MS


def test_legacy_alter_configs_replaces_whole_set(broker):
    """AlterConfigs (non-incremental) sets exactly the given configs: others revert to default."""
    topic = unique("cfg-legacy")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "7777777"})
    cfg = describe_topic(broker.bootstrap, topic)
    assert (cfg["retention.ms"].value, source_of(cfg["retention.ms"])) == \
        ("7777777", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.bytes": "1048576"})
    a.alter_configs([res], request_timeout=15)[res].result(timeout=20)
    cfg = describe_topic(broker.bootstrap, topic)
    assert (cfg["retention.bytes"].value, source_of(cfg["retention.bytes"])) == \
        ("1048576", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert (cfg["retention.ms"].value, source_of(cfg["retention.ms"])) == \
        (DEFAULT_RETENTION_MS, ConfigSource.DEFAULT_CONFIG)


def test_describe_unknown_topic(broker):
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, unique("cfg-missing"))
    with pytest.raises(Exception) as ei:
        a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert kafka_error_code(ei.value) == 3  # UNKNOWN_TOPIC_OR_PARTITION


def test_describe_broker_configs(broker):
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.BROKER, "0")
    cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert len(cfg) >= 5, f"broker 0 described only {sorted(cfg)}"
    for name, e in cfg.items():
        assert e.name == name and name
        assert source_of(e) != ConfigSource.UNKNOWN_CONFIG, name


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=15).result(timeout=20)
    assert desc.cluster_id, "cluster id must be non-empty"
    assert [(n.id, n.host, n.port) for n in desc.nodes] == [(0, "127.0.0.1", broker.port)]
    assert desc.controller is not None and desc.controller.id == 0
    # Metadata reports the same cluster id.
    md = a.list_topics(timeout=10)
    assert md.cluster_id == desc.cluster_id
    assert md.controller_id == 0
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {0: ("127.0.0.1", broker.port)}
