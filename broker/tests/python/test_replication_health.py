"""Replication observability (issue 12 item 7) on a cluster with the default replica selector:
under-replicated, under-min-ISR and offline partitions, ISR shrink/expand counters, follower lag
and fetcher bytes on `/metrics`, and `/ready` (the rolling-restart gate) through the real HTTP
endpoint while a follower is paused with SIGSTOP and after it resumes. Also: the default
selector (`leader`, Kafka's) keeps a consumer with `client.rack` on the leader."""

from __future__ import annotations

import json
import signal

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

import wire
from helpers import unique, wait_until
from test_cluster import FAST, RACKS, admin, describe, live_nodes, topic_layout
from test_follower_fetch import REDIRECTS, SERVED, consume, fetch_v11, metric, served
from test_replication import create_replicated, produce

URP = "fjord_replication_under_replicated_partitions"
UNDER_MIN_ISR = "fjord_replication_under_min_isr_partitions"
OFFLINE = "fjord_replication_offline_partitions"
SHRINKS = "fjord_replication_isr_shrinks_total"
EXPANDS = "fjord_replication_isr_expands_total"
LEADER_LAG = "fjord_replication_leader_max_follower_lag_records"
FETCHED = "fjord_replication_fetcher_fetched_bytes_total"


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    c = cluster_factory(size=3, racks=["a", "b", "c"], voters=3, extra_args=FAST)
    for b in c.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all three brokers")
    return c


def ready(broker) -> tuple[int, dict]:
    status, ctype, body = broker.http_get("/ready")
    assert ctype.startswith("application/json"), ctype
    return status, json.loads(body)


def test_the_default_selector_keeps_a_rack_aware_consumer_on_the_leader(cluster):
    topic = unique("lead")
    leader, replicas, _ = create_replicated(cluster, topic, partitions=1)[0]
    follower = next(r for r in replicas if r != leader)
    values = [b"v%d" % i for i in range(200)]
    produce(cluster.node(leader).bootstrap, topic, values)
    before = served(cluster)
    assert consume(cluster.bootstrap, topic, len(values), rack=RACKS[follower]) == list(enumerate(values))
    assert served(cluster) == before, "no follower served"
    assert metric(cluster.node(leader), REDIRECTS) == 0
    assert fetch_v11(cluster.node(leader), topic, 0, rack=RACKS[follower])["preferred_read_replica"] == -1


def test_a_paused_follower_shows_in_metrics_and_ready_until_it_is_back_in_sync(cluster):
    for b in cluster.brokers:
        wait_until(lambda b=b: ready(b)[0] == 200, timeout=30, what=f"{b.name} ready")
    topic = unique("urp")
    leader, replicas, _ = create_replicated(cluster, topic, partitions=1, min_isr=3)[0]
    controller = describe(cluster.node(leader).bootstrap).controller.id
    follower = next(r for r in replicas if r not in (leader, controller))
    other = next(r for r in replicas if r not in (leader, follower))
    L, F, O = cluster.node(leader), cluster.node(follower), cluster.node(other)
    # A partition whose only replica is the paused broker goes offline once it is fenced.
    alone = unique("alone")
    a = admin(L.bootstrap)
    a.create_topics([NewTopic(alone, 1, replica_assignment=[[follower]])], request_timeout=15)[alone].result(timeout=30)
    wait_until(lambda: (topic_layout(L, alone) or {}).get(0, (-1,))[0] == follower, timeout=20,
               what=f"{alone} led by {follower}")
    produce(L.bootstrap, topic, [b"before-%d" % i for i in range(100)])
    assert metric(L, URP) == 0 and metric(L, UNDER_MIN_ISR) == 0 and metric(L, OFFLINE) == 0
    wait_until(lambda: metric(O, FETCHED) > 0, timeout=10, what="the other follower's fetcher copied bytes")
    shrinks, expands = metric(L, SHRINKS), metric(L, EXPANDS)

    F.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: metric(L, URP) >= 1, timeout=20, what="the leader counts an under-replicated partition")
        assert metric(L, SHRINKS) > shrinks
        assert metric(L, UNDER_MIN_ISR) >= 1, "min.insync.replicas=3 with two in sync"
        p = Producer({"bootstrap.servers": L.bootstrap, "acks": 1, "linger.ms": 5})
        for i in range(300):
            p.produce(topic, value=b"during-%d" % i)
        assert p.flush(30) == 0
        wait_until(lambda: metric(L, LEADER_LAG) >= 300, timeout=10, what="the leader sees the follower lag")
        for b in (L, O):
            status, body = ready(b)
            assert status == 503 and not body["ready"], body
            mine = [u for u in body["under_replicated"] if u["topic"] == topic]
            assert mine and follower not in mine[0]["isr"] and follower in mine[0]["replicas"], body
            assert body["under_replicated_count"] >= 1
        wait_until(lambda: metric(L, OFFLINE) >= 1, timeout=20, what=f"{alone} offline once {follower} is fenced")
    finally:
        F.proc.send_signal(signal.SIGCONT)

    wait_until(lambda: metric(L, URP) == 0, timeout=40, what="the follower back in the isr")
    assert metric(L, EXPANDS) > expands
    assert metric(L, UNDER_MIN_ISR) == 0
    wait_until(lambda: metric(L, LEADER_LAG) == 0, timeout=10, what="no follower lag")
    wait_until(lambda: metric(L, OFFLINE) == 0, timeout=30, what=f"{alone} led again")
    for b in cluster.brokers:
        wait_until(lambda b=b: ready(b)[0] == 200, timeout=30, what=f"{b.name} ready again")
    assert ready(L)[1] == {"ready": True, "shutting_down": False, "unfenced": True,
                           "under_replicated_count": 0, "under_replicated": []}
