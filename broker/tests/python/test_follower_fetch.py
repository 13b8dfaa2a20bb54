"""Follower fetching (KIP-392, issue 12 item 6): with `cluster.replica_selector = "rack_aware"` a
partition leader sends a consumer whose `client.rack` holds an in-sync follower to that follower
(`preferred_read_replica`, no records), and followers serve consumer fetches up to their high
watermark. Checked with confluent-kafka consumers (librdkafka follows the preferred replica) and
the broker's own counters, and the error cases with hand-encoded Fetch v11 requests."""

from __future__ import annotations

import re
import statistics
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import wire
from helpers import unique, wait_until
from test_cluster import FAST, RACKS, admin, live_nodes, topic_layout
from test_replication import create_replicated, produce

SERVED = "fjord_replication_follower_fetch_records_total"
REDIRECTS = "fjord_replication_preferred_replica_redirects_total"
OFFSET_OUT_OF_RANGE = 1
NOT_LEADER_OR_FOLLOWER = 6


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    c = cluster_factory(size=3, racks=["a", "b", "c"], voters=3,
                        extra_args=[*FAST, "--set", "cluster.replica_selector=rack_aware"])
    for b in c.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all three brokers")
    return c


def metric(broker, name: str) -> float:
    _, _, body = broker.http_get("/metrics")
    m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


def served(cluster) -> dict[int, float]:
    return {i + 1: metric(b, SERVED) for i, b in enumerate(cluster.brokers)}


def consume(bootstrap: str, topic: str, expect: int, rack: str | None) -> list:
    """Every record of partition 0 from offset 0, as (offset, value), read by a consumer in `rack`."""
    conf = {"bootstrap.servers": bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    if rack is not None:
        conf["client.rack"] = rack
    c = Consumer(conf)
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    try:
        def more():
            for m in c.consume(500, timeout=1):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.value()))
            return len(out) >= expect
        wait_until(more, timeout=60, what=f"{expect} records from {topic}", interval=0)
    finally:
        c.close()
    return out


def replicated_topic(cluster, records: int) -> tuple[str, int, int, list[bytes]]:
    """A one-partition RF=3 topic holding `records` acknowledged records: (name, leader, a follower,
    values)."""
    topic = unique("ff")
    layout = create_replicated(cluster, topic, partitions=1)
    leader, replicas, _ = layout[0]
    follower = next(r for r in replicas if r != leader)
    values = [b"value-%d" % i for i in range(records)]
    assert len(produce(cluster.node(leader).bootstrap, topic, values)) == records
    return topic, leader, follower, values


def fetch_v11(broker, topic: str, offset: int, rack: str = "", partition: int = 0) -> dict:
    _, body = wire.roundtrip(broker.bootstrap, wire.fetch_v11_request(7, topic, partition, offset, rack_id=rack))
    return wire.parse_fetch_v11(body)[(topic, partition)]


def test_a_consumer_in_a_followers_rack_reads_every_record_from_that_follower(cluster):
    topic, leader, follower, values = replicated_topic(cluster, 500)
    before, redirects = served(cluster), metric(cluster.node(leader), REDIRECTS)
    got = consume(cluster.bootstrap, topic, len(values), rack=RACKS[follower])
    assert got == list(enumerate(values)), "every record, in order, once"
    after = served(cluster)
    assert after[follower] - before[follower] >= len(values), f"the follower in the client's rack served: {after}"
    assert all(after[b] == before[b] for b in after if b != follower), f"no other follower served: {after}"
    assert metric(cluster.node(leader), REDIRECTS) > redirects, "the leader named the preferred replica"


@pytest.mark.parametrize("where", ["no client.rack", "the leader's rack"])
def test_without_a_rack_or_in_the_leaders_rack_the_leader_serves(cluster, where):
    topic, leader, _, values = replicated_topic(cluster, 200)
    rack = None if where == "no client.rack" else RACKS[leader]
    before, redirects = served(cluster), metric(cluster.node(leader), REDIRECTS)
    assert consume(cluster.bootstrap, topic, len(values), rack=rack) == list(enumerate(values))
    assert served(cluster) == before, "no follower served a consumer"
    assert metric(cluster.node(leader), REDIRECTS) == redirects


def test_follower_fetch_answers_as_kafka_does(cluster):
    """Fetch v11 by hand: the leader names the follower in the client's rack and returns no
    records; the follower serves up to its high watermark, OFFSET_OUT_OF_RANGE past its log end;
    a broker that is not a replica, a Fetch older than v11 at a follower and ListOffsets at a
    follower get NOT_LEADER_OR_FOLLOWER."""
    topic, leader, follower, values = replicated_topic(cluster, 50)
    L, F = cluster.node(leader), cluster.node(follower)

    redirected = fetch_v11(L, topic, 0, rack=RACKS[follower])
    assert (redirected["error_code"], redirected["preferred_read_replica"]) == (0, follower)
    assert not redirected["records"], "no records with a preferred replica"
    assert redirected["high_watermark"] == len(values)
    at_leader = fetch_v11(L, topic, 0, rack=RACKS[leader])
    assert (at_leader["error_code"], at_leader["preferred_read_replica"]) == (0, -1)
    assert len(wire.parse_record_batches(at_leader["records"])) == len(values)

    wait_until(lambda: fetch_v11(F, topic, 0)["high_watermark"] == len(values), timeout=10,
               what="the follower learnt the high watermark")
    at_follower = fetch_v11(F, topic, 0, rack=RACKS[follower])
    assert (at_follower["error_code"], at_follower["preferred_read_replica"]) == (0, -1)
    assert [r["value"] for r in wire.parse_record_batches(at_follower["records"])] == values
    at_end = fetch_v11(F, topic, len(values))
    assert (at_end["error_code"], at_end["records"] or b"") == (0, b""), "nothing above the high watermark"
    assert fetch_v11(F, topic, len(values) + 1000)["error_code"] == OFFSET_OUT_OF_RANGE

    _, body = wire.roundtrip(F.bootstrap, wire.fetch_v4_request(8, topic, 0, 0, max_wait_ms=0))
    assert wire.parse_fetch_v4(body)[(topic, 0)]["error_code"] == NOT_LEADER_OR_FOLLOWER, "v4 is leader-only"
    _, body = wire.roundtrip(F.bootstrap, wire.list_offsets_v1_request(9, topic, 0, -1))
    assert wire.parse_list_offsets_v1(body)[(topic, 0)][0] == NOT_LEADER_OR_FOLLOWER, "ListOffsets is leader-only"

    two = unique("rf2")
    a = admin(L.bootstrap)
    a.create_topics([NewTopic(two, 1, 2)], request_timeout=15)[two].result(timeout=30)
    layout = wait_until(lambda: topic_layout(L, two), timeout=20, what=f"{two} metadata")
    outsider = next(b for b in RACKS if b not in layout[0][1])
    assert fetch_v11(cluster.node(outsider), two, 0)["error_code"] == NOT_LEADER_OR_FOLLOWER


def test_followers_learn_the_high_watermark_without_waiting_for_the_next_append(cluster):
    """A follower serves consumers up to the high watermark it learnt; the leader ends a
    follower's long-poll when the high watermark moves past what it knew, so a record
    acknowledged on an idle partition is readable at the follower within milliseconds, not
    after the follower's max_wait (500 ms)."""
    topic, leader, follower, _ = replicated_topic(cluster, 1)
    F = cluster.node(follower)
    p = Producer({"bootstrap.servers": cluster.node(leader).bootstrap, "acks": "all", "linger.ms": 0})
    waits = []
    for i in range(7):
        time.sleep(0.6)  # idle: every follower long-poll is parked at the log end
        p.produce(topic, value=b"x")
        assert p.flush(10) == 0
        acked = time.monotonic()
        wait_until(lambda i=i: fetch_v11(F, topic, 0)["high_watermark"] >= 2 + i, timeout=5,
                   what="the follower learnt the high watermark", interval=0.005)
        waits.append(time.monotonic() - acked)
    assert statistics.median(waits) < 0.25, f"seconds from ack to follower high watermark: {waits}"
