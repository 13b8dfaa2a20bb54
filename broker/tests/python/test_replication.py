"""ISR replication (issue 12, first part): followers copy their leaders' logs with the Kafka Fetch
protocol, the high watermark waits for the ISR, and acks=all means every ISR member has the
batch. Checked with confluent-kafka producers and consumers against three broker processes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from helpers import unique, wait_until
from test_cluster import FAST, RACKS, admin, describe, live_nodes, topic_layout


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    c = cluster_factory(size=3, racks=["a", "b", "c"], voters=3, extra_args=FAST)
    for b in c.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all three brokers")
    return c


def create_replicated(cluster, name: str, partitions: int = 3, min_isr: int = 2) -> dict:
    a = admin(cluster.node(1).bootstrap)
    a.create_topics([NewTopic(name, partitions, 3, config={"min.insync.replicas": str(min_isr)})],
                    request_timeout=15)[name].result(timeout=30)
    return wait_until(lambda: topic_layout(cluster.node(1), name), timeout=20, what=f"{name} metadata")


def produce(bootstrap: str, topic: str, values: list[bytes], **conf) -> list:
    """Produces with acks=all and idempotence; returns (partition, offset, value) per ack."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 30000, **conf})
    acked, errors = [], []

    def report(err, msg):
        (errors if err else acked).append((err, msg))

    for i, v in enumerate(values):
        p.produce(topic, value=v, key=str(i).encode(), on_delivery=report)
        p.poll(0)
    p.flush(60)
    assert not errors, errors[:3]
    return [(m.partition(), m.offset(), m.value()) for _, m in acked]


def consume_all(bootstrap: str, topic: str, partitions: int, expect: int, timeout: float = 60) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    try:
        def more():
            for m in c.consume(500, timeout=1):
                if m.error() is None:
                    out.append((m.partition(), m.offset(), m.value()))
            return len(out) >= expect
        wait_until(more, timeout=timeout, what=f"{expect} records from {topic}", interval=0)
    finally:
        c.close()
    return out


def segment_bytes(broker, topic: str, partition: int) -> bytes:
    d = Path(broker.data_dir) / f"{topic}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


def test_every_replica_holds_the_leaders_batches_byte_for_byte(cluster):
    topic = unique("repl")
    create_replicated(cluster, topic)
    acked = produce(cluster.bootstrap, topic, [b"v%d" % i for i in range(600)])
    assert len(acked) == 600
    for p in range(3):
        wait_until(lambda p=p: len({segment_bytes(b, topic, p) for b in cluster.brokers}) == 1,
                   timeout=20, what=f"replicas of partition {p} identical")
        assert segment_bytes(cluster.node(1), topic, p), "replicated data is there"


def test_acknowledged_records_survive_kill9_of_every_leader_in_turn(cluster):
    topic = unique("survive")
    layout = create_replicated(cluster, topic)
    acked = produce(cluster.bootstrap, topic, [b"a%d" % i for i in range(300)])
    leaders = sorted({leader for leader, _, _ in layout.values()})
    killed = []
    for vid in leaders:
        victim = cluster.node(vid)
        victim.kill9()
        killed.append(vid)
        observer = next(b for b in cluster.brokers if b.alive())
        wait_until(lambda: vid not in live_nodes(observer), timeout=20, what=f"broker {vid} fenced")
        wait_until(lambda: all(l not in (vid, -1) for l, _, _ in topic_layout(observer, topic).values()),
                   timeout=20, what="leaders moved off the killed broker")
        got = consume_all(observer.bootstrap, topic, 3, len(acked))
        assert sorted(got) == sorted(acked), "an acknowledged record was lost or duplicated"
        victim.start()
        wait_until(lambda: live_nodes(observer) == RACKS, timeout=40, what=f"broker {vid} back")
    assert killed


def test_acks_all_gets_not_enough_replicas_when_the_isr_is_below_min_insync(cluster):
    """min.insync.replicas=3 and one follower paused: the leader drops it from the ISR after
    replica_lag_time_max, acks=all then gets NOT_ENOUGH_REPLICAS while acks=1 still works; once
    the follower is back and has caught up it rejoins the ISR and acks=all works again. (Pausing
    two of three brokers would also stop the metadata quorum, as in KRaft's combined mode.)"""
    topic = unique("nenough")
    layout = create_replicated(cluster, topic, partitions=1, min_isr=3)
    leader, replicas, _ = layout[0]
    follower = next(r for r in replicas if r != leader and r != describe(cluster.node(1).bootstrap).controller.id)
    observer = cluster.node(leader)
    assert produce(observer.bootstrap, topic, [b"before"])
    cluster.node(follower).proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: follower not in topic_layout(observer, topic)[0][2], timeout=20,
                   what=f"follower {follower} out of the ISR")
        p = Producer({"bootstrap.servers": observer.bootstrap, "acks": "all", "retries": 0,
                      "message.timeout.ms": 10000})
        errors = []
        p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
        p.flush(15)
        assert errors and errors[0] is not None and errors[0].name() == "NOT_ENOUGH_REPLICAS", errors
        p1 = Producer({"bootstrap.servers": observer.bootstrap, "acks": "1", "retries": 0})
        ok = []
        p1.produce(topic, value=b"y", on_delivery=lambda err, msg: ok.append(err))
        p1.flush(15)
        assert ok == [None], ok
    finally:
        cluster.node(follower).proc.send_signal(signal.SIGCONT)
    wait_until(lambda: set(topic_layout(observer, topic)[0][2]) == set(replicas), timeout=40,
               what=f"follower {follower} back in the ISR")
    assert produce(observer.bootstrap, topic, [b"after"])
    for b in cluster.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=40, what="all live")


def test_a_groups_coordinator_is_killed_and_the_group_moves_with_its_offsets(cluster):
    topic = unique("grp")
    create_replicated(cluster, topic)
    produce(cluster.bootstrap, topic, [b"g%d" % i for i in range(300)])
    group = unique("group")

    def consumer(bootstrap):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        c.subscribe([topic])
        return c

    c = consumer(cluster.bootstrap)
    seen = []
    try:
        wait_until(lambda: seen.extend(m for m in c.consume(50, timeout=1) if m.error() is None) or len(seen) >= 150,
                   timeout=60, what="150 records", interval=0)
        c.commit(asynchronous=False)
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)}
    finally:
        c.close()
    a = admin(cluster.bootstrap)
    coordinator = a.describe_consumer_groups([group])[group].result(timeout=20).coordinator.id
    victim = cluster.node(coordinator)
    victim.kill9()
    try:
        survivors = ",".join(b.bootstrap for b in cluster.brokers if b.alive())
        c = consumer(survivors)
        try:
            def same():
                try:
                    got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=5)
                except Exception:  # noqa: BLE001 - coordinator moving
                    return False
                return {tp.partition: tp.offset for tp in got} == committed
            wait_until(same, timeout=40, what="the committed offsets from the new coordinator")
            rest = []
            wait_until(lambda: rest.extend(m for m in c.consume(50, timeout=1) if m.error() is None)
                       or len(seen) + len(rest) >= 300, timeout=60, what="the rest of the records", interval=0)
            c.commit(asynchronous=False)
            values = sorted(m.value() for m in seen + rest)
            assert len(set(values)) == 300, "a record was skipped after the coordinator moved"
        finally:
            c.close()
        a2 = admin(survivors)  # alive until the future resolves
        new = a2.describe_consumer_groups([group])[group].result(timeout=30).coordinator.id
        assert new != coordinator
    finally:
        victim.start()
        observer = next(b for b in cluster.brokers if b is not victim)
        wait_until(lambda: live_nodes(observer) == RACKS, timeout=40, what="the killed broker back")


def test_unclean_leader_election_off_keeps_the_partition_offline_and_on_brings_it_back_with_loss(cluster):
    """RF=2 on brokers 1 (leader) and 2: broker 2 is paused until the ISR is broker 1 alone, which
    then takes records broker 2 never gets; broker 1 is killed. With unclean.leader.election.enable
    off the partition stays offline; turned on (AlterConfigs), broker 2 leads without those records
    (the loss Kafka accepts for availability, logged by the controller); broker 1 comes back as a
    follower and truncates to broker 2's log."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    topic = unique("unclean")
    observer = cluster.node(3)
    a = admin(observer.bootstrap)
    a.create_topics([NewTopic(topic, 1, replica_assignment=[[1, 2]])], request_timeout=15)[topic].result(timeout=30)
    wait_until(lambda: (topic_layout(observer, topic) or {}).get(0, (None,))[0] == 1, timeout=20, what="leader 1")
    kept = produce(observer.bootstrap, topic, [f"kept-{i}".encode() for i in range(20)])
    wait_until(lambda: topic_layout(observer, topic)[0][2] == (1, 2), timeout=20, what="isr 1, 2")
    leader, follower = cluster.node(1), cluster.node(2)
    follower.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: topic_layout(observer, topic)[0][2] == (1,), timeout=30, what="isr shrunk to 1")
        lost = produce(observer.bootstrap, topic, [f"lost-{i}".encode() for i in range(30)])
        assert len(lost) == 30
        leader.kill9()
    finally:
        follower.proc.send_signal(signal.SIGCONT)
    # Broker 2 is alive but outside the ISR: no leader while unclean election is off.
    wait_until(lambda: topic_layout(observer, topic)[0][0] == -1, timeout=40, what="partition offline")
    p = Producer({"bootstrap.servers": observer.bootstrap, "acks": "all", "message.timeout.ms": 3000})
    errors = []
    p.produce(topic, value=b"while-offline", partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None, errors
    assert topic_layout(observer, topic)[0][0] == -1, "still offline after a while"
    # Turn it on for the topic: the controller elects broker 2, alone in the ISR.
    resource = ConfigResource("TOPIC", topic, incremental_configs=[
        ConfigEntry("unclean.leader.election.enable", "true", incremental_operation=AlterConfigOpType.SET)])

    def turn_on() -> bool:
        # A fresh client: librdkafka sends it to the controller, which may have moved with the kill.
        fresh = admin(observer.bootstrap)
        try:
            fresh.incremental_alter_configs([resource])[resource].result(timeout=15)
            return True
        except KafkaException:
            return False
    wait_until(turn_on, timeout=60, what="unclean.leader.election.enable set", interval=1)
    wait_until(lambda: topic_layout(observer, topic)[0][:1] == (2,), timeout=30, what="broker 2 leads")
    assert topic_layout(observer, topic)[0][2] == (2,)
    wait_until(lambda: "unclean leader election" in "".join(b.log_text() for b in cluster.brokers if b.alive()),
               timeout=10, what="the controller logged the unclean election")
    after = produce(observer.bootstrap, topic, [f"after-{i}".encode() for i in range(10)])
    seen = [v for _, _, v in consume_all(observer.bootstrap, topic, 1, expect=30)]
    assert seen == [v for _, _, v in kept] + [v for _, _, v in after], seen[:5]
    # The old leader returns as a follower, truncates its unreplicated records and catches up.
    leader.start()
    wait_until(lambda: set(topic_layout(observer, topic)[0][2]) == {1, 2}, timeout=60, what="broker 1 back in the isr")
    wait_until(lambda: segment_bytes(leader, topic, 0) == segment_bytes(follower, topic, 0), timeout=30,
               what="identical logs")
    for b in cluster.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=40, what="all live")
