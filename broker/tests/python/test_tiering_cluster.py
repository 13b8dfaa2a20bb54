"""Tiered storage on a replicated partition (issue 12): three brokers and a real S3 server (moto).
Only the leader uploads and commits the manifest; followers re-read it and trim their local logs
only below what it has committed; after the leader is killed the new leader carries on uploading
(its higher leader epoch fences the old manifest writer) and a consumer reads every record from
the start, remote and local."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from helpers import produce_ok, unique, wait_until
from test_cluster import FAST, RACKS, admin, live_nodes, topic_layout
from test_tiering import SEGMENT_BYTES, S3Server, local_segments, records, tier_args, tiering_state


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto-cluster"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(cluster_factory, s3):
    c = cluster_factory(size=3, racks=["a", "b", "c"], voters=3,
                        extra_args=FAST + tier_args(s3, "cluster"))
    for b in c.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all three brokers")
    return c


def uploaded_segments(broker) -> float:
    status, _, body = broker.http_get("/metrics")
    assert status == 200
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith("fjord_tiering_uploaded_segments_total"))


def read_all(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                  "fetch.max.bytes": 1 << 20})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    try:
        def more():
            for m in c.consume(500, timeout=1):
                if m.error() is None:
                    out.append(m.value())
            return len(out) >= expect
        wait_until(more, timeout=90, what=f"{expect} records", interval=0)
    finally:
        c.close()
    return out


def test_only_the_leader_uploads_followers_trim_and_a_new_leader_carries_on(cluster, s3):
    topic = unique("tiered-rf3")
    a = admin(cluster.node(1).bootstrap)
    a.create_topics([NewTopic(topic, 1, 3, config={
        "remote.storage.enable": "true", "segment.bytes": str(SEGMENT_BYTES), "local.retention.bytes": "1",
        "retention.ms": "-1", "min.insync.replicas": "2"})], request_timeout=15)[topic].result(timeout=30)
    layout = wait_until(lambda: topic_layout(cluster.node(1), topic), timeout=20, what="metadata")
    leader_id = layout[0][0]
    leader = cluster.node(leader_id)
    followers = [b for b in cluster.brokers if b is not leader]
    before = {b.name: uploaded_segments(b) for b in cluster.brokers}
    first = records(0, 300)
    produce_ok(leader.bootstrap, topic, first, acks="all", linger_ms=0, batch_size=4096, max_in_flight=1)
    # The leader uploads and trims its local log to what the manifest holds.
    state = wait_until(lambda: (s := tiering_state(leader, topic)) and s["remote_segments"] >= 3
                       and s["local_log_start_offset"] > 0 and s, timeout=90, what="leader tiered", interval=0.2)
    # Followers upload nothing; they learn the manifest and trim their own local logs below it.
    for f in followers:
        wait_until(lambda f=f: (s := tiering_state(f, topic)) and s["local_log_start_offset"] > 0, timeout=60,
                   what=f"{f.name} trimmed its local log below the remote end", interval=0.5)
        fs = tiering_state(f, topic)
        assert fs["local_log_start_offset"] <= (fs["remote_end_offset"] or 0), fs
        assert uploaded_segments(f) == before[f.name], f"follower {f.name} uploaded"
        # 300 records of ~900 bytes fill ~16 segments of 16 KiB: most are gone locally.
        assert len(local_segments(f, topic)) < 8, local_segments(f, topic)
    assert uploaded_segments(leader) > before[leader.name]
    remote_end = state["remote_end_offset"]
    # Kill the leader: a follower takes over and keeps tiering the new records.
    leader.kill9()
    survivors = ",".join(b.bootstrap for b in followers)
    new_leader_id = wait_until(lambda: (l := (topic_layout(followers[0], topic) or {}).get(0, (-1,))[0]) not in (-1, leader_id)
                               and l, timeout=40, what="a new leader")
    new_leader = cluster.node(new_leader_id)
    uploads_before = uploaded_segments(new_leader)
    second = records(300, 300)
    produce_ok(survivors, topic, second, acks="all", linger_ms=0, batch_size=4096, max_in_flight=1)
    wait_until(lambda: uploaded_segments(new_leader) > uploads_before
               and (tiering_state(new_leader, topic)["remote_end_offset"] or 0) > remote_end,
               timeout=90, what="the new leader uploads", interval=0.5)
    values = read_all(survivors, topic, 600)
    assert values == [r["value"] for r in first + second]
    leader.start()
    wait_until(lambda: set(topic_layout(cluster.node(new_leader_id), topic)[0][2]) == {1, 2, 3}, timeout=60,
               what="the old leader back in the isr")
    for b in cluster.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=40, what="all live")

