"""Cluster mode under cut links (issue 11): every broker reaches the others' controller listeners
through a proxy per directed link (`netfault.Links`), so a test can partition the network while
the processes keep running. The metadata quorum must never commit on a minority, must replace an
isolated controller, and must converge when the links heal. Checks go through confluent-kafka."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import NewTopic

from helpers import wait_until
from test_cluster import FAST, RACKS, admin, create, describe, live_nodes, topic_layout, topic_names


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    c = cluster_factory(size=3, racks=["a", "b", "c"], voters=3, extra_args=FAST, proxied=True)
    for b in c.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all three brokers")
    return c


def controller_seen_by(broker) -> int | None:
    try:
        return describe(broker.bootstrap).controller.id
    except Exception:  # noqa: BLE001 - not answering
        return None


def converged(cluster) -> bool:
    """Every broker sees all three brokers, the same controller, and the same topics."""
    views = []
    for b in cluster.brokers:
        if live_nodes(b) != RACKS:
            return False
        try:
            views.append((controller_seen_by(b), frozenset(t for t in topic_names(b.bootstrap)
                                                            if not t.startswith("__"))))
        except Exception:  # noqa: BLE001
            return False
    return len(set(views)) == 1 and views[0][0] is not None


def try_create_once(bootstrap: str, name: str) -> str:
    """One CreateTopics attempt, no retries: 'ok' or the error text."""
    a = admin(bootstrap)
    try:
        a.create_topics([NewTopic(name, 3, 3)], request_timeout=12)[name].result(timeout=20)
        return "ok"
    except Exception as e:  # noqa: BLE001
        return str(e)


def test_an_isolated_controller_is_replaced_and_only_the_majority_commits(cluster):
    create(cluster.node(1).bootstrap, "before-cut", 6, 3)
    vid = controller_seen_by(cluster.node(1))
    assert vid in RACKS
    victim = cluster.node(vid)
    majority = [b for b in cluster.brokers if b is not victim]
    led = {p for p, (leader, _, _) in topic_layout(majority[0], "before-cut").items() if leader == vid}
    assert led

    cut_at = time.monotonic()
    cluster.links.isolate(vid)
    try:
        for b in majority:
            wait_until(lambda b=b: controller_seen_by(b) not in (None, vid), timeout=10,
                       what=f"a new controller, as {b.name} sees it")
        elected_s = time.monotonic() - cut_at
        # The majority keeps committing metadata changes.
        for i in range(3):
            create(majority[i % 2].bootstrap, f"during-cut-{i}", 3, 2)
        # The isolated broker's session runs out: it is fenced and its leaderships move.
        wait_until(lambda: set(live_nodes(majority[0])) == set(RACKS) - {vid}, timeout=20,
                   what=f"isolated broker {vid} fenced")
        # The other survivor may apply the fencing a moment later than majority[0].
        wait_until(lambda: all(topic_layout(majority[1], "before-cut")[p][0] not in (vid, -1) for p in led),
                   timeout=10, what=f"the leaderships of {vid} moved, as {majority[1].name} sees it")
        # The minority cannot commit: a CreateTopics through the isolated broker fails.
        outcome = try_create_once(victim.bootstrap, "minority-topic")
        assert outcome != "ok", "a topic was created by a controller cut off from the quorum"
    finally:
        cluster.links.heal_all()

    wait_until(lambda: converged(cluster), timeout=45, what="all brokers agree after the links heal")
    names = topic_names(cluster.node(vid).bootstrap)
    assert {"before-cut", "during-cut-0", "during-cut-1", "during-cut-2"} <= names
    # The isolated controller's uncommitted write was discarded, not applied later.
    assert "minority-topic" not in names
    print(f"new controller {elected_s:.2f}s after the cut")


def test_a_broker_cut_off_from_the_controller_only_is_fenced_and_the_cluster_keeps_working(cluster):
    """A partial partition: one broker loses its link to the active controller but still reaches
    the third broker. The controller fences it (no heartbeats arrive); metadata keeps being
    committed; after the heal everything converges, whoever is controller then."""
    wait_until(lambda: converged(cluster), timeout=45, what="a converged cluster")
    cid = controller_seen_by(cluster.node(1))
    xid = next(i for i in sorted(RACKS) if i != cid)
    third = next(i for i in sorted(RACKS) if i not in (cid, xid))
    cluster.links.cut(cid, xid)
    try:
        wait_until(lambda: xid not in live_nodes(cluster.node(third)), timeout=30,
                   what=f"broker {xid} fenced after losing its link to controller {cid}")
        create(cluster.node(third).bootstrap, "partial-cut", 3, 2, timeout=40)
    finally:
        cluster.links.heal_all()
    wait_until(lambda: converged(cluster), timeout=60, what="all brokers agree after the heal")
    assert "partial-cut" in topic_names(cluster.node(xid).bootstrap)
