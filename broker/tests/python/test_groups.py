"""Consumer groups through real clients: the classic protocol (librdkafka's range and
cooperative-sticky assignors, static membership), the KIP-848 protocol (group.protocol=consumer),
committed offsets across broker restarts, lag metrics, and the error codes of bad group requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

import group_wire as gw
from helpers import consumer, create_topic, produce_ok, unique, wait_until

# Error codes (Kafka protocol).
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
UNKNOWN_TOPIC_OR_PARTITION = 3
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82
NON_EMPTY_GROUP = 68

SESSION_MS = 6000  # the broker's minimum session timeout
MEMBER = Path(__file__).with_name("group_member.py")


@pytest.fixture(scope="module")
def gbroker(broker_factory):
    # No initial rebalance delay, few __consumer_offsets partitions, fast KIP-848 heartbeats.
    return broker_factory(
        [
            "--set", "groups.initial_rebalance_delay=0s",
            "--set", "groups.offsets_topic_partitions=4",
            "--set", "groups.consumer_heartbeat_interval=500ms",
        ],
        name="groups",
    )


class Member:
    """A group member in its own process (group_member.py)."""

    def __init__(self, tmp: Path, bootstrap: str, group: str, topic: str, name: str, conf: dict):
        self.events = tmp / f"{name}.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER), bootstrap, group, topic, str(self.events), json.dumps(conf)],
            stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.stderr", "w"))
        self.name = name

    def read(self) -> list[dict]:
        if not self.events.exists():
            return []
        lines = self.events.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def assignment(self) -> set[int]:
        """Partitions currently owned according to the callbacks (eager: assign replaces)."""
        owned: set[int] = set()
        for ev in self.read():
            if ev["ev"] == "assign":
                owned |= set(ev["partitions"])
            elif ev["ev"] in ("revoke", "lost"):
                owned -= set(ev["partitions"])
        return owned

    def consumed(self) -> set[tuple[int, int]]:
        return {(ev["p"], ev["o"]) for ev in self.read() if ev["ev"] == "msg"}

    def kill9(self) -> float:
        self.proc.kill()
        self.proc.wait(timeout=10)
        return time.time()

    def stop(self):
        if self.proc.poll() is None:
            Path(str(self.events) + ".stop").touch()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def ownership_intervals(member: Member, end: float) -> dict[int, list[tuple[float, float]]]:
    """partition -> [(from, to)] for one member, from its callbacks; open intervals end at `end`."""
    out: dict[int, list[tuple[float, float]]] = {}
    since: dict[int, float] = {}
    for ev in member.read():
        if ev["ev"] == "assign":
            for p in ev["partitions"]:
                since[p] = ev["t"]
        elif ev["ev"] in ("revoke", "lost"):
            for p in ev["partitions"]:
                if p in since:
                    out.setdefault(p, []).append((since.pop(p), ev["t"]))
    for p, t in since.items():
        out.setdefault(p, []).append((t, end))
    return out


def records(n: int, partitions: int, tag: str) -> list[dict]:
    return [{"key": f"{tag}-{i}".encode(), "value": f"{tag}-{i}".encode(), "partition": i % partitions}
            for i in range(n)]


def test_three_members_share_partitions_and_survive_a_kill9(gbroker, tmp_path):
    topic, group = unique("grp-kill"), unique("g-kill")
    create_topic(gbroker.bootstrap, topic, partitions=6)
    produce_ok(gbroker.bootstrap, topic, records(600, 6, "a"))
    conf = {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range"}
    members = [Member(tmp_path, gbroker.bootstrap, group, topic, f"m{i}", conf) for i in range(3)]
    try:
        def balanced():
            sets = [m.assignment() for m in members]
            return all(len(s) == 2 for s in sets) and set().union(*sets) == set(range(6))

        wait_until(balanced, 60, "three members with two partitions each")
        victim = members[0]
        lost_partitions = victim.assignment()
        killed_at = victim.kill9()
        produce_ok(gbroker.bootstrap, topic, records(600, 6, "b"))
        survivors = members[1:]

        def reassigned():
            return set().union(*[m.assignment() for m in survivors]) == set(range(6))

        wait_until(reassigned, 30, "the killed member's partitions reassigned")
        taken_at = min(ev["t"] for m in survivors for ev in m.read()
                       if ev["ev"] == "assign" and ev["t"] > killed_at and set(ev["partitions"]) & lost_partitions)
        # Within the session timeout (plus the rebalance and scheduling slack).
        assert taken_at - killed_at < SESSION_MS / 1000 + 5, f"reassigned after {taken_at - killed_at:.1f}s"

        # Every record is consumed at least once: none skipped.
        def all_consumed():
            seen = set().union(*[m.consumed() for m in members])
            return all((p, o) in seen for p in range(6) for o in range(200))

        wait_until(all_consumed, 60, "every record consumed")
        # Each partition had at most one owner at any time.
        now = time.time()
        intervals = [ownership_intervals(m, killed_at if m is victim else now) for m in members]
        for p in range(6):
            spans = sorted(span for owned in intervals for span in owned.get(p, []))
            for (a_from, a_to), (b_from, _) in zip(spans, spans[1:]):
                assert b_from >= a_to, f"partition {p} owned twice: {spans}"
    finally:
        for m in members:
            m.stop()


def test_static_member_restart_keeps_partitions_without_rebalance(gbroker, tmp_path):
    topic, group = unique("grp-static"), unique("g-static")
    create_topic(gbroker.bootstrap, topic, partitions=4)
    conf = {"session.timeout.ms": 30000, "heartbeat.interval.ms": 500, "partition.assignment.strategy": "range"}
    a = Member(tmp_path, gbroker.bootstrap, group, topic, "a", dict(conf, **{"group.instance.id": "inst-a"}))
    b = Member(tmp_path, gbroker.bootstrap, group, topic, "b", dict(conf, **{"group.instance.id": "inst-b"}))
    a2 = None
    try:
        wait_until(lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2, 60, "both static members assigned")
        before = a.assignment()
        b_events = len([e for e in b.read() if e["ev"] in ("assign", "revoke")])
        a.kill9()
        a2 = Member(tmp_path, gbroker.bootstrap, group, topic, "a2", dict(conf, **{"group.instance.id": "inst-a"}))
        wait_until(lambda: a2.assignment() == before, 30, "restarted static member gets its partitions back")
        time.sleep(2)
        assert len([e for e in b.read() if e["ev"] in ("assign", "revoke")]) == b_events, \
            "the other member saw a rebalance"
    finally:
        for m in (a, b, a2):
            if m:
                m.stop()


def poll_all(consumers, seconds: float) -> list:
    got = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for c in consumers:
            for m in c.consume(num_messages=500, timeout=0.05):
                if not m.error():
                    got.append(m)
    return got


def test_cooperative_sticky_moves_only_what_it_must(gbroker):
    topic, group = unique("grp-coop"), unique("g-coop")
    create_topic(gbroker.bootstrap, topic, partitions=6)
    revoked = {"a": [], "b": []}

    def make(name):
        c = consumer(gbroker.bootstrap, **{"group.id": group, "partition.assignment.strategy": "cooperative-sticky",
                                           "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500})
        c.subscribe([topic], on_revoke=lambda _c, ps: revoked[name].append(sorted(p.partition for p in ps)))
        return c

    a = make("a")
    try:
        wait_until(lambda: poll_all([a], 0.2) is not None and len(a.assignment()) == 6, 30, "a owns all")
        b = make("b")
        try:
            def split():
                poll_all([a, b], 0.2)
                return len(a.assignment()) == 3 and len(b.assignment()) == 3
            wait_until(split, 60, "cooperative rebalance to 3+3")
            assert {p.partition for p in a.assignment()}.isdisjoint({p.partition for p in b.assignment()})
            # Incremental: a gave up exactly the three partitions b took, never all six.
            moved = [r for r in revoked["a"] if r]
            assert moved and all(len(r) <= 3 for r in moved), revoked
        finally:
            b.close()
    finally:
        a.close()


def test_kip848_consumer_protocol_group(gbroker):
    topic, group = unique("grp-848"), unique("g-848")
    create_topic(gbroker.bootstrap, topic, partitions=6)
    produce_ok(gbroker.bootstrap, topic, records(300, 6, "k"))
    conf = {"group.id": group, "group.protocol": "consumer", "auto.offset.reset": "earliest"}
    a = consumer(gbroker.bootstrap, **conf)
    b = consumer(gbroker.bootstrap, **conf)
    try:
        a.subscribe([topic])
        b.subscribe([topic])
        got = []

        def converged():
            got.extend(poll_all([a, b], 0.3))
            pa = {p.partition for p in a.assignment()}
            pb = {p.partition for p in b.assignment()}
            return pa and pb and pa.isdisjoint(pb) and pa | pb == set(range(6))

        wait_until(converged, 60, "KIP-848 assignment converged over both members")
        wait_until(lambda: got.extend(poll_all([a, b], 0.3)) or
                   len({(m.partition(), m.offset()) for m in got}) >= 300, 60, "all records consumed")
        assert {(m.partition(), m.offset()) for m in got} == {(p, o) for p in range(6) for o in range(50)}
        # The broker describes the group with its two members and their assignments.
        admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert len(desc.members) == 2
    finally:
        a.close()
        b.close()


def test_committed_offsets_and_group_metadata_survive_kill9(broker_factory):
    b = broker_factory(["--set", "groups.initial_rebalance_delay=0s", "--set", "groups.offsets_topic_partitions=3"],
                       name="groups-restart")
    topic, group = unique("grp-dur"), unique("g-dur")
    create_topic(b.bootstrap, topic, partitions=2)
    produce_ok(b.bootstrap, topic, records(100, 2, "d"))
    c = consumer(b.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest", "session.timeout.ms": 30000,
                                 "heartbeat.interval.ms": 500})
    c.subscribe([topic])
    try:
        wait_until(lambda: len(poll_all([c], 0.2)) >= 0 and len(c.assignment()) == 2, 30, "assigned")
        c.commit(offsets=[TopicPartition(topic, 0, 30, metadata="m0"), TopicPartition(topic, 1, 20)],
                 asynchronous=False)
        b.restart(kill9=True)
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
        res = admin.list_consumer_group_offsets([req])[group].result(timeout=15)
        got = {tp.partition: (tp.offset, tp.metadata) for tp in res.topic_partitions}
        assert got[0] == (30, "m0") and got[1][0] == 20
        # Group metadata survived: the member is still there and keeps its generation.
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert str(desc.state).endswith("STABLE") and len(desc.members) == 1
        poll_all([c], 2)
        assert len(c.assignment()) == 2
    finally:
        c.close()
    # A new consumer of the group resumes from the committed offsets.
    c2 = consumer(b.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"})
    c2.subscribe([topic])
    try:
        got = []
        # 50 records per partition: 20 + 30 left after the committed offsets.
        wait_until(lambda: got.extend(poll_all([c2], 0.3)) or len(got) >= 50, 30, "resumed consumption")
        first = {}
        for m in got:
            first.setdefault(m.partition(), m.offset())
        assert first == {0: 30, 1: 20}
    finally:
        c2.close()


def test_kip848_group_membership_survives_broker_kill9(broker_factory, tmp_path):
    """KIP-848 members, epochs and assignments are records in __consumer_offsets: after a broker
    kill -9 both librdkafka members carry on (no revoke or lost callback, same partitions) and the
    group is described with the same member ids and assignments."""
    b = broker_factory(["--set", "groups.offsets_topic_partitions=3",
                        "--set", "groups.consumer_heartbeat_interval=500ms"], name="groups-848-restart")
    topic, group = unique("grp-848-dur"), unique("g-848-dur")
    create_topic(b.bootstrap, topic, partitions=6)
    produce_ok(b.bootstrap, topic, records(60, 6, "a"))
    conf = {"group.protocol": "consumer"}
    members = [Member(tmp_path, b.bootstrap, group, topic, f"k{i}", conf) for i in range(2)]
    try:
        def converged():
            owned = [m.assignment() for m in members]
            return all(owned) and owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(range(6))

        wait_until(converged, 60, "KIP-848 assignment converged over both members")
        wait_until(lambda: len(members[0].consumed() | members[1].consumed()) >= 60, 30, "first records consumed")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})

        def described() -> dict[str, set[int]]:
            desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
            return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members}

        wait_until(lambda: len(described()) == 2 and all(described().values()), 30, "group described as stable")
        before_desc = described()
        before = [m.assignment() for m in members]
        events_before = [len(m.read()) for m in members]
        b.restart(kill9=True)

        def described_or_none():
            try:
                return described()
            except Exception:  # noqa: BLE001 - coordinator still loading on a slow machine
                return None

        # Right after the restart the group is there with the same member ids (a member that had
        # to rejoin would have a new id): on a loaded machine the load may take a few seconds.
        assert wait_until(described_or_none, 30, "group described after the restart") == before_desc
        produce_ok(b.bootstrap, topic, records(60, 6, "b"))
        wait_until(lambda: len(members[0].consumed() | members[1].consumed()) >= 120, 60,
                   "records produced after the restart consumed")
        time.sleep(2)  # a few heartbeats after the restart
        for m, owned, n in zip(members, before, events_before):
            later = [ev for ev in m.read()[n:] if ev["ev"] in ("assign", "revoke", "lost")]
            assert later == [], f"{m.name} rebalanced after the broker restart: {later}"
            assert m.assignment() == owned
        assert described() == before_desc
    finally:
        for m in members:
            m.stop()


def test_offset_delete_refuses_topics_a_regex_subscribes_to(gbroker):
    """OffsetDelete (through kafka-python) on a live KIP-848 group: a topic its member subscribes
    to by regex gets GROUP_SUBSCRIBED_TO_TOPIC; another topic's offsets are deleted."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition
    from kafka.errors import GroupSubscribedToTopicError, NoError
    prefix = unique("grp-re")
    watched, other, group = f"{prefix}-a", unique("grp-other"), unique("g-re")
    for t in (watched, other):
        create_topic(gbroker.bootstrap, t)
    produce_ok(gbroker.bootstrap, watched, records(5, 1, "r"))
    c = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": "consumer",
                                        "auto.offset.reset": "earliest"})
    c.subscribe([f"^{prefix}-.*"])
    try:
        wait_until(lambda: poll_all([c], 0.3) is not None and len(c.assignment()) == 1, 60,
                   "regex subscription assigned")
        c.commit(offsets=[TopicPartition(watched, 0, 3), TopicPartition(other, 0, 2)], asynchronous=False)
        admin = KafkaAdminClient(bootstrap_servers=gbroker.bootstrap)
        try:
            got = admin.delete_group_offsets(group, [KTopicPartition(watched, 0), KTopicPartition(other, 0)])
        finally:
            admin.close()
        assert got[KTopicPartition(watched, 0)] is GroupSubscribedToTopicError
        assert got[KTopicPartition(other, 0)] is NoError
        left = c.committed([TopicPartition(watched, 0), TopicPartition(other, 0)], timeout=10)
        assert [tp.offset for tp in left] == [3, OFFSET_INVALID]
    finally:
        c.close()


def test_admin_list_describe_delete_groups(gbroker):
    topic, group = unique("grp-admin"), unique("g-admin")
    create_topic(gbroker.bootstrap, topic, partitions=1)
    produce_ok(gbroker.bootstrap, topic, records(10, 1, "x"))
    c = consumer(gbroker.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    try:
        wait_until(lambda: len(poll_all([c], 0.2)) >= 0 and len(c.assignment()) == 1, 30, "assigned")
        c.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
        listed = admin.list_consumer_groups().result(timeout=10)
        assert group in {g.group_id for g in listed.valid}
        # A group with members cannot be deleted.
        with pytest.raises(Exception) as err:
            admin.delete_consumer_groups([group])[group].result(timeout=10)
        assert "NON_EMPTY_GROUP" in str(err.value) or "not empty" in str(err.value).lower()
    finally:
        c.close()
    admin.delete_consumer_groups([group])[group].result(timeout=10)
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
    assert res[group].result(timeout=10).topic_partitions[0].offset < 0


def test_lag_is_exported_per_group(gbroker):
    topic, group = unique("grp-lag"), unique("g-lag")
    create_topic(gbroker.bootstrap, topic, partitions=1)
    produce_ok(gbroker.bootstrap, topic, records(25, 1, "l"))
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 10)])])[group].result(timeout=10)
    _, _, body = gbroker.http_get("/metrics")
    line = next(l for l in body.splitlines() if l.startswith("fjord_consumer_group_lag{") and f'"{group}"' in l)
    assert float(line.split()[-1]) == 15


def test_bad_group_requests_get_kafka_error_codes(gbroker):
    topic, group = unique("grp-bad"), unique("g-bad")
    create_topic(gbroker.bootstrap, topic, partitions=2)
    with gw.Conn(gbroker.bootstrap) as conn:
        assert gw.find_coordinator(conn, group) == (0, 0)
        first = gw.join_group(conn, group, protocols=[("range", gw.consumer_subscription([topic]))])
        assert first["error"] == MEMBER_ID_REQUIRED and first["member_id"]
        joined = gw.join_group(conn, group, member_id=first["member_id"],
                               protocols=[("range", gw.consumer_subscription([topic]))])
        assert joined["error"] == 0 and joined["leader"] == first["member_id"]
        me, gen = joined["member_id"], joined["generation"]
        assert gw.sync_group(conn, group, gen, me, [(me, b"plan")])["assignment"] == b"plan"
        # Unknown member, illegal generation, wrong protocol type.
        assert gw.heartbeat(conn, group, gen, "nobody") == UNKNOWN_MEMBER_ID
        assert gw.heartbeat(conn, group, gen + 5, me) == ILLEGAL_GENERATION
        other = gw.join_group(conn, group, protocol_type="connect", protocols=[("x", b"")])
        assert other["error"] == INCONSISTENT_GROUP_PROTOCOL
        # Inconsistent protocol set: no protocol in common with the group.
        other = gw.join_group(conn, group, protocols=[("roundrobin", b"")])
        assert other["error"] == INCONSISTENT_GROUP_PROTOCOL
        # Commits: unknown topic, wrong generation, unknown member.
        res = gw.offset_commit(conn, group, gen, me, {(topic, 0): 1, ("no-such-topic", 0): 1})
        assert res == {(topic, 0): 0, ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION}
        assert gw.offset_commit(conn, group, gen + 1, me, {(topic, 0): 1}) == {(topic, 0): ILLEGAL_GENERATION}
        assert gw.offset_commit(conn, group, gen, "ghost", {(topic, 0): 1}) == {(topic, 0): UNKNOWN_MEMBER_ID}
        # The group still works for its member.
        assert gw.heartbeat(conn, group, gen, me) == 0

    # A fenced static member: a restarted instance takes over the instance id.
    sgroup = unique("g-fence")
    with gw.Conn(gbroker.bootstrap) as conn:
        old = gw.join_group(conn, sgroup, instance="i1")
        assert old["error"] == 0
        gw.sync_group(conn, sgroup, old["generation"], old["member_id"], [(old["member_id"], b"a")], instance="i1")
        new = gw.join_group(conn, sgroup, instance="i1")
        assert new["error"] == 0 and new["member_id"] != old["member_id"]
        assert new["generation"] == old["generation"], "static rejoin without a rebalance"
        assert gw.heartbeat(conn, sgroup, old["generation"], old["member_id"], instance="i1") == FENCED_INSTANCE_ID
        assert gw.heartbeat(conn, sgroup, new["generation"], new["member_id"], instance="i1") == 0
        assert gw.sync_group(conn, sgroup, new["generation"], new["member_id"], instance="i1")["assignment"] == b"a"
        error, codes = gw.leave_group(conn, sgroup, [("", "i1"), ("", "unknown-instance")])
        assert error == 0 and codes == [0, UNKNOWN_MEMBER_ID]
