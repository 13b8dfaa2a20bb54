"""Hardening (issue 19, defects 6 and 7) against the real broker process: the broker-wide
partition limit (CreateTopics and CreatePartitions over `topics.max_partitions` get
POLICY_VIOLATION and create nothing); many partitions under a low open-file limit (the broker
creates them, restarts cleanly and after kill -9, serves them, and new clients still connect);
and a full disk on a small tmpfs (the broker restarts while the disk is full, DeleteTopics frees
space, produce works again; CreateTopics on a full disk answers KAFKA_STORAGE_ERROR and leaves no
half-created topic)."""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka.admin import NewPartitions, NewTopic

from helpers import admin, consume, kafka_error_code, produce_ok, unique, wait_until

POLICY_VIOLATION = 44
KAFKA_STORAGE_ERROR = 56

# Many partitions under a low open-file limit: the old broker held three descriptors per
# partition for good, so it failed after ~80 partitions at 256 and could not start again.
NOFILE = 256
MANY_TOPICS = 3
PARTITIONS_PER_TOPIC = 500


def create(bootstrap: str, new_topics, validate_only: bool = False) -> dict:
    a = admin(bootstrap)
    fs = a.create_topics(new_topics, validate_only=validate_only, operation_timeout=60,
                         request_timeout=90)
    out = {}
    for name, f in fs.items():
        try:
            f.result(timeout=120)
            out[name] = 0
        except Exception as e:  # noqa: BLE001 - the code is what is asserted
            out[name] = kafka_error_code(e)
    return out


def partition_counts(bootstrap: str) -> dict:
    md = admin(bootstrap).list_topics(timeout=20)
    return {name: len(t.partitions) for name, t in md.topics.items()}


# -- defect 6: partition limit ------------------------------------------------------------------


def test_create_topics_and_partitions_over_the_partition_limit_are_refused(broker_factory):
    b = broker_factory(["--set", "topics.max_partitions=20", "--set", "topics.num_partitions=1"],
                       name="limit-broker")
    first, second = unique("limit-a"), unique("limit-b")
    assert create(b.bootstrap, [NewTopic(first, 15, 1)]) == {first: 0}
    # 15 + 10 > 20: refused, also when only validating, and nothing is created.
    assert create(b.bootstrap, [NewTopic(second, 10, 1)], validate_only=True) == {second: POLICY_VIOLATION}
    assert create(b.bootstrap, [NewTopic(second, 10, 1)]) == {second: POLICY_VIOLATION}
    counts = partition_counts(b.bootstrap)
    assert second not in counts and counts[first] == 15
    a = admin(b.bootstrap)  # keep a reference: the futures fail if the client is destroyed
    fs = a.create_partitions([NewPartitions(first, 30)], request_timeout=30)
    with pytest.raises(Exception) as refused:
        fs[first].result(timeout=30)
    assert kafka_error_code(refused.value) == POLICY_VIOLATION
    assert "topics.max_partitions" in str(refused.value)
    assert partition_counts(b.bootstrap)[first] == 15
    # Up to the limit is fine.
    assert create(b.bootstrap, [NewTopic(second, 5, 1)]) == {second: 0}
    assert sum(partition_counts(b.bootstrap).values()) == 20
    # Auto-creation is held to the limit too: the topic is not created.
    auto = unique("limit-auto")
    admin(b.bootstrap).list_topics(topic=auto, timeout=10)
    assert auto not in partition_counts(b.bootstrap)
    assert "over its limit of 20" in b.log_text()


# -- defect 6: file handles ---------------------------------------------------------------------


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_many_partitions_under_a_low_open_file_limit_create_restart_and_serve(broker_factory):
    b = broker_factory(["--set", "topics.max_partitions=5000"], name="nofile-broker",
                       preexec_fn=low_nofile)
    topics = [unique(f"many{i}") for i in range(MANY_TOPICS)]
    assert create(b.bootstrap, [NewTopic(t, PARTITIONS_PER_TOPIC, 1) for t in topics]) == {t: 0 for t in topics}
    # Data in partitions spread over every topic (and so over many segment files).
    sample = [0, 1, PARTITIONS_PER_TOPIC // 2, PARTITIONS_PER_TOPIC - 1]
    for t in topics:
        produce_ok(b.bootstrap, t, [{"value": f"{t}-{p}".encode(), "partition": p} for p in sample])
    for kill9 in (False, True):
        b.restart(kill9=kill9)
        counts = partition_counts(b.bootstrap)
        assert all(counts[t] == PARTITIONS_PER_TOPIC for t in topics)
        for t in topics:
            got = consume(b.bootstrap, t, sample, len(sample), timeout=30)
            assert sorted(m.value() for m in got) == sorted(f"{t}-{p}".encode() for p in sample)
    # New clients still connect and are served while every partition is open.
    with ThreadPoolExecutor(max_workers=16) as pool:
        sizes = list(pool.map(lambda _: len(partition_counts(b.bootstrap)), range(32)))
    assert all(n >= MANY_TOPICS for n in sizes)
    produce_ok(b.bootstrap, topics[0], [{"value": b"after", "partition": 7}])
    assert "Too many open files" not in b.log_text()
