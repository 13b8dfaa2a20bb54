"""Online group protocol migration (KIP-848, issue 20 item 6) through real clients: a live classic
group of a librdkafka (confluent-kafka) and a kafka-python member is rolled, one member at a time,
to the consumer protocol (group.protocol=consumer) and back. The coordinator converts the group
online both ways (group.consumer.migration.policy=bidirectional, Kafka's default); the classic
members keep working inside the consumer group through JoinGroup/SyncGroup/Heartbeat. Asserted:
every partition is owned by one member at a time (from the members' rebalance callbacks), every
record is consumed and every offset committed, and ListGroups/DescribeGroups/ConsumerGroupDescribe
report the group's type as Kafka does. A broker with the policy disabled refuses the upgrade."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import ConsumerGroupType, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import consumer, create_topic, produce_ok, unique, wait_until
from test_groups import Member, ownership_intervals, records

PARTITIONS = 6
CONSUMER = {"group.protocol": "consumer"}
CLASSIC = {"partition.assignment.strategy": "range"}
KAFKA_PYTHON = {"client": "kafka-python"}


@pytest.fixture(scope="module")
def mbroker(broker_factory):
    return broker_factory(
        [
            "--set", "groups.initial_rebalance_delay=0s",
            "--set", "groups.offsets_topic_partitions=4",
            "--set", "groups.consumer_heartbeat_interval=500ms",
        ],
        name="migration",
    )


def group_type(admin: AdminClient, group: str):
    listed = admin.list_consumer_groups().result(timeout=10)
    return {g.group_id: g.type for g in listed.valid}.get(group)


def owners(members: list[Member]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for m in members:
        for p in m.assignment():
            out.setdefault(p, []).append(m.name)
    return out


def covered_once(members: list[Member]) -> bool:
    o = owners([m for m in members if m.proc.poll() is None])
    return set(o) == set(range(PARTITIONS)) and all(len(v) == 1 for v in o.values())


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    c = consumer(bootstrap, **{"group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def test_rolling_classic_to_consumer_and_back(mbroker, tmp_path):
    bootstrap = mbroker.bootstrap
    topic, group = unique("mig"), unique("g-mig")
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    produce_ok(bootstrap, topic, records(600, PARTITIONS, "a"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    members: list[Member] = []

    def start(name: str, conf: dict) -> Member:
        m = Member(tmp_path, bootstrap, group, topic, name, conf)
        members.append(m)
        return m

    def converged(what: str, live: list[Member]):
        wait_until(lambda: covered_once(live) and all(m.assignment() for m in live), 90,
                   f"{what}: every partition owned by exactly one of {[m.name for m in live]}")

    try:
        # 1. A classic group: librdkafka (range) and kafka-python.
        rdk = start("rdk-classic", CLASSIC)
        kp = start("kafka-python", KAFKA_PYTHON)
        converged("classic group", [rdk, kp])
        assert group_type(admin, group) == ConsumerGroupType.CLASSIC
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert desc.type == ConsumerGroupType.CLASSIC and len(desc.members) == 2

        # 2. A consumer-protocol member joins: the live group becomes a consumer group in which
        #    the two classic members go on.
        c1 = start("rdk-consumer-1", CONSUMER)
        converged("upgraded group", [rdk, kp, c1])
        assert group_type(admin, group) == ConsumerGroupType.CONSUMER
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert desc.type == ConsumerGroupType.CONSUMER and len(desc.members) == 3

        # 3. Roll the librdkafka member to the consumer protocol.
        rdk.stop()
        c2 = start("rdk-consumer-2", CONSUMER)
        converged("rolled group", [kp, c1, c2])
        produce_ok(bootstrap, topic, records(300, PARTITIONS, "b"))

        # 4. Roll back: the consumer members leave one by one; when the last one has left the
        #    group is a classic group again, with kafka-python owning everything.
        c1.stop()
        converged("one consumer member left", [kp, c2])
        assert group_type(admin, group) == ConsumerGroupType.CONSUMER
        c2.stop()
        wait_until(lambda: group_type(admin, group) == ConsumerGroupType.CLASSIC, 30, "downgraded to classic")
        converged("downgraded group", [kp])
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert desc.type == ConsumerGroupType.CLASSIC and [m.client_id for m in desc.members] != []

        # 5. A classic librdkafka member joins the classic group again.
        rdk2 = start("rdk-classic-2", CLASSIC)
        converged("classic group again", [kp, rdk2])
        produce_ok(bootstrap, topic, records(300, PARTITIONS, "c"))

        # Every record consumed, every offset committed.
        expected = {(p, o) for p in range(PARTITIONS) for o in range(200)}
        wait_until(lambda: set().union(*(m.consumed() for m in members)) >= expected, 60,
                   "every record consumed")
        wait_until(lambda: committed(bootstrap, group, topic) == {p: 200 for p in range(PARTITIONS)}, 60,
                   "every offset committed")
    finally:
        for m in members:
            m.stop()

    # One owner at a time: no two members' ownership intervals of a partition overlap.
    assert_one_owner_at_a_time(members)
    # And every member really took part.
    assert all(m.consumed() for m in members), {m.name: len(m.consumed()) for m in members}


def assert_one_owner_at_a_time(members: list[Member]) -> None:
    end = time.time()
    intervals = {m.name: ownership_intervals(m, end) for m in members}
    for p in range(PARTITIONS):
        spans = sorted((a, b, name) for name, per in intervals.items() for a, b in per.get(p, []))
        for (a1, b1, n1), (a2, b2, n2) in zip(spans, spans[1:]):
            assert a2 >= b1, f"partition {p} owned by {n1} until {b1} and by {n2} from {a2}"


def test_cooperative_classic_members_hand_over_incrementally(mbroker, tmp_path):
    """librdkafka classic members with cooperative-sticky (they report owned partitions and keep
    the ones they are not asked to give up) in a group that a consumer-protocol member upgrades."""
    topic, group = unique("mig-coop"), unique("g-mig-coop")
    create_topic(mbroker.bootstrap, topic, partitions=PARTITIONS)
    produce_ok(mbroker.bootstrap, topic, records(300, PARTITIONS, "k"))
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    members = [Member(tmp_path, mbroker.bootstrap, group, topic, f"coop-{i}", coop) for i in range(2)]
    try:
        wait_until(lambda: covered_once(members) and all(m.assignment() for m in members), 90, "classic group")
        before = [m.assignment() for m in members]
        upgraded_at = time.time()
        members.append(Member(tmp_path, mbroker.bootstrap, group, topic, "consumer", CONSUMER))
        wait_until(lambda: covered_once(members) and all(m.assignment() for m in members), 90, "upgraded group")
        expected = {(p, o) for p in range(PARTITIONS) for o in range(50)}
        wait_until(lambda: set().union(*(m.consumed() for m in members)) >= expected, 60, "every record consumed")
        # Sticky and incremental: each classic member still has partitions it had before, and
        # only gave up what moved to the new member.
        for m, had in zip(members[:2], before):
            assert m.assignment() & had, (m.name, had, m.assignment())
            revoked = set().union(*(set(ev["partitions"]) for ev in m.read()
                                    if ev["ev"] == "revoke" and ev["t"] >= upgraded_at))
            assert revoked <= members[2].assignment(), (m.name, revoked)
    finally:
        for m in members:
            m.stop()
    assert_one_owner_at_a_time(members)


def test_upgrade_is_refused_when_the_policy_disables_it(broker_factory, tmp_path):
    b = broker_factory(["--set", "groups.initial_rebalance_delay=0s", "--set", "groups.offsets_topic_partitions=2",
                        "--set", "groups.consumer_migration_policy=disabled"], name="no-migration")
    topic, group = unique("mig-off"), unique("g-mig-off")
    create_topic(b.bootstrap, topic, partitions=2)
    classic = Member(tmp_path, b.bootstrap, group, topic, "classic", CLASSIC)
    try:
        wait_until(lambda: classic.assignment() == {0, 1}, 60, "classic member assigned")
        c = consumer(b.bootstrap, **{"group.id": group, **CONSUMER})
        try:
            c.subscribe([topic])
            deadline = time.time() + 5
            error = None
            while time.time() < deadline and error is None:
                m = c.poll(0.2)
                if m is not None and m.error():
                    error = m.error()
            assert c.assignment() == []
        finally:
            try:
                c.close()
            except KafkaException:
                pass
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        assert group_type(admin, group) == ConsumerGroupType.CLASSIC
        assert classic.assignment() == {0, 1}
    finally:
        classic.stop()


def test_converted_group_survives_a_broker_restart(broker_factory, tmp_path):
    """A consumer group holding a classic member (kafka-python) and a consumer-protocol member is
    stored as such: after a restart it is still a consumer group whose classic member goes on
    with the partitions it had, and the consumer member's departure still downgrades it."""
    b = broker_factory(["--set", "groups.initial_rebalance_delay=0s", "--set", "groups.offsets_topic_partitions=2",
                        "--set", "groups.consumer_heartbeat_interval=500ms"], name="mig-restart")
    topic, group = unique("mig-rs"), unique("g-mig-rs")
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)
    kp = Member(tmp_path, b.bootstrap, group, topic, "kafka-python", KAFKA_PYTHON)
    members = [kp]
    try:
        wait_until(lambda: kp.assignment() == set(range(PARTITIONS)), 60, "classic member assigned")
        c = Member(tmp_path, b.bootstrap, group, topic, "consumer", CONSUMER)
        members.append(c)
        wait_until(lambda: covered_once(members) and c.assignment(), 90, "upgraded group converged")
        before = kp.assignment()
        b.restart()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        wait_until(lambda: group_type(admin, group) == ConsumerGroupType.CONSUMER, 30, "still a consumer group")
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert len(desc.members) == 2
        produce_ok(b.bootstrap, topic, records(120, PARTITIONS, "r"))
        expected = {(p, o) for p in range(PARTITIONS) for o in range(20)}
        wait_until(lambda: kp.consumed() | c.consumed() >= expected, 60, "records consumed after the restart")
        assert kp.assignment() == before, "the classic member kept its partitions across the restart"
        c.stop()
        wait_until(lambda: group_type(admin, group) == ConsumerGroupType.CLASSIC, 30, "downgraded after the restart")
        wait_until(lambda: kp.assignment() == set(range(PARTITIONS)), 60, "classic member owns everything")
    finally:
        for m in members:
            m.stop()
