"""Replication under faults (issue 12): idempotent acks=all producers (confluent-kafka twice,
kafka-python once) and a consumer run against an RF=3, min.insync.replicas=2 topic while a
nemesis kills (-9), pauses (SIGSTOP) and isolates (cuts every link of: controller RPC and
replica fetches, through per-link proxies) one broker at a time; then `nemesis.check` proves
that no acknowledged record was lost, duplicated or moved, that each producer's records kept
their order, and that the consumer never read a record that was later truncated.

CI runs a 20-second nemesis; longer runs and other seeds are one command each:

    FJORD_NEMESIS_SECONDS=60 FJORD_NEMESIS_SEED=499202655 FJORD_BROKER_BIN=target/debug/fjord-broker \\
        .venv/bin/pytest -q broker/tests/python/test_replication_faults.py

    FJORD_NEMESIS_SECONDS=600 FJORD_BROKER_BIN=target/debug/fjord-broker \\
        .venv/bin/pytest -q broker/tests/python/test_replication_faults.py

`FJORD_NEMESIS_WEAKEN=1` runs the same workload with acks=1: the checker must then report lost
records (it did: seed 4242 lost 631 of 22,712 acknowledged records). The acks=all run found two
real losses before they were fixed (see the issue 12 note): followers admitted to the ISR below
the new leader's epoch start, and acks=all waits that outlived a leadership change."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaProducer

from helpers import unique, wait_until
from nemesis import History, Nemesis, check
from test_cluster import FAST, RACKS, admin, live_nodes, topic_layout

SECONDS = float(os.environ.get("FJORD_NEMESIS_SECONDS", "20"))
WEAKEN = os.environ.get("FJORD_NEMESIS_WEAKEN") == "1"
PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    c = cluster_factory(size=3, racks=["a", "b", "c"], voters=3, extra_args=FAST, proxied=True)
    for b in c.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all three brokers")
    return c


def test_the_checker_names_lost_duplicated_reordered_and_truncated_records():
    history = History(acked={b"a": (0, 0), b"b": (0, 1), b"c": (1, 0)},
                      sent={"p": [b"a", b"b", b"c"]},
                      consumed=[{0: [(0, b"a"), (1, b"x")]}])
    assert check(history, {0: [(0, b"a"), (1, b"b")], 1: [(0, b"c")]}) == [
        "consumer saw b'x' at 0/1, which the log holds as b'b' (a truncated record was read)"]
    problems = check(history, {0: [(0, b"b"), (1, b"a"), (2, b"a")], 1: []})
    assert any(p.startswith("duplicated: b'a'") for p in problems)
    assert any(p.startswith("lost: b'c'") for p in problems)
    assert any(p.startswith("moved: b'b'") for p in problems)
    assert any(p.startswith("reordered: producer p") for p in problems)


class Workload:
    def __init__(self, bootstrap: str, topic: str, acks: str):
        self.bootstrap, self.topic, self.acks = bootstrap, topic, acks
        self.history = History()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.failed_sends = 0
        self.fatal_errors: list[str] = []

    def ack(self, value: bytes, partition: int, offset: int) -> None:
        with self.lock:
            self.history.acked[value] = (partition, offset)

    def confluent(self, name: str) -> None:
        def error(err):
            if err.fatal():
                with self.lock:
                    self.fatal_errors.append(f"{name}: {err}")
        conf = {"bootstrap.servers": self.bootstrap, "acks": self.acks, "linger.ms": 5,
                "message.timeout.ms": 60000, "enable.idempotence": self.acks == "all", "error_cb": error}
        p = Producer(conf)
        sent = self.history.sent.setdefault(name, [])

        def report(err, msg):
            if err is None:
                self.ack(msg.value(), msg.partition(), msg.offset())
            else:
                with self.lock:
                    self.failed_sends += 1
        i = 0
        while not self.stop.is_set():
            value = f"{name}-{i}".encode()
            try:
                p.produce(self.topic, value=value, partition=i % PARTITIONS, on_delivery=report)
            except BufferError:
                p.poll(0.1)
                continue
            except KafkaException:
                # A fatal idempotence error (recorded by `error`): the application must start a
                # new producer, as it would in production.
                p.flush(10)
                p = Producer(conf)
                continue
            sent.append(value)
            i += 1
            p.poll(0)
            time.sleep(0.004)
        p.flush(90)

    def kafka_python(self, name: str) -> None:
        p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all" if self.acks == "all" else 1,
                          enable_idempotence=self.acks == "all", linger_ms=5, retries=1000,
                          request_timeout_ms=10000, delivery_timeout_ms=60000)
        sent = self.history.sent.setdefault(name, [])
        i = 0
        while not self.stop.is_set():
            value = f"{name}-{i}".encode()
            future = p.send(self.topic, value=value, partition=i % PARTITIONS)
            future.add_callback(lambda md, v=value: self.ack(v, md.partition, md.offset))
            future.add_errback(lambda e: self._failed())
            sent.append(value)
            i += 1
            time.sleep(0.01)
        p.flush(90)
        p.close(10)

    def _failed(self) -> None:
        with self.lock:
            self.failed_sends += 1

    def consume(self) -> None:
        """Reads every partition from the start; a new session after any client error."""
        while not self.stop.is_set():
            session: dict[int, list[tuple[int, bytes]]] = {}
            self.history.consumed.append(session)
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique("nemesis"),
                          "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            c.assign([TopicPartition(self.topic, p, 0) for p in range(PARTITIONS)])
            try:
                while not self.stop.is_set():
                    for m in c.consume(200, timeout=0.5):
                        if m.error() is None:
                            session.setdefault(m.partition(), []).append((m.offset(), m.value()))
            finally:
                c.close()

    def start(self) -> None:
        targets = [(self.confluent, "ck1"), (self.confluent, "ck2"), (self.kafka_python, "kp"), (self.consume, None)]
        for target, name in targets:
            t = threading.Thread(target=target, args=(name,) if name else (), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)


def final_log(bootstrap: str, topic: str) -> dict[int, list[tuple[int, bytes]]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("final"), "enable.auto.commit": False})
    try:
        out = {}
        for p in range(PARTITIONS):
            def marks(p=p):
                try:
                    return c.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)
                except Exception:  # noqa: BLE001 - leadership moving (preferred leader election)
                    return None
            low, high = wait_until(marks, timeout=30, what=f"watermarks of partition {p}", interval=0.2)
            records: list[tuple[int, bytes]] = []
            c.assign([TopicPartition(topic, p, low)])
            while (records[-1][0] + 1 if records else low) < high:
                for m in c.consume(500, timeout=2):
                    if m.error() is None:
                        records.append((m.offset(), m.value()))
            out[p] = records
        return out
    finally:
        c.close()


@pytest.mark.timeout(int(SECONDS) + 420)
def test_no_acknowledged_record_is_lost_or_duplicated_under_faults(cluster):
    topic = unique("nemesis")
    a = admin(cluster.node(1).bootstrap)
    a.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                    request_timeout=15)[topic].result(timeout=30)
    wait_until(lambda: topic_layout(cluster.node(1), topic), timeout=20, what="topic metadata")
    work = Workload(",".join(b.bootstrap for b in cluster.brokers), topic, "1" if WEAKEN else "all")
    # A fixed default seed keeps CI repeatable (timing still varies); FJORD_NEMESIS_SEED=random
    # explores.
    raw_seed = os.environ.get("FJORD_NEMESIS_SEED", "499202655")
    seed = random.randrange(1 << 30) if raw_seed == "random" else int(raw_seed)
    nemesis = Nemesis(cluster, seed=seed)
    work.start()
    try:
        time.sleep(2)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            nemesis.step()
            time.sleep(2)
    finally:
        cluster.links.heal_all()
        for b in cluster.brokers:
            if not b.alive():
                b.start()
        work.finish()
    print(f"seed {seed} (FJORD_NEMESIS_SEED); nemesis: {nemesis.log}; fatal producer errors: {work.fatal_errors}")
    for b in cluster.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all brokers again")
    wait_until(lambda: all(len(isr) == 3 for _, _, isr in topic_layout(cluster.node(1), topic).values()),
               timeout=60, what="every replica back in the ISR")
    final = final_log(cluster.node(1).bootstrap, topic)
    problems = check(work.history, final)
    summary = (f"seed {seed} (FJORD_NEMESIS_SEED); {len(work.history.acked)} acknowledged, "
               f"{work.failed_sends} failed sends, {sum(len(r) for r in final.values())} in the log; "
               f"nemesis: {nemesis.log}")
    print(summary)
    if WEAKEN:
        assert problems, "the checker found nothing although acks=1 was used: " + summary
        print("\n".join(problems[:20]))
        return
    assert not problems, "\n".join(problems[:20]) + "\n" + summary
    assert not work.fatal_errors, f"fatal producer errors: {work.fatal_errors}; {summary}"
    assert len(work.history.acked) > 500, summary


def test_an_isolated_leader_truncates_what_it_never_replicated(cluster):
    """The leader of a partition is cut off from the other brokers (controller RPC and replica
    fetches) while a client still reaches it: acks=1 writes land only on it. The controller fences
    it and elects another ISR member, which takes new writes. Healed, the old leader becomes a
    follower, truncates its unreplicated records (diverging epoch) and ends byte-identical."""
    from test_replication import segment_bytes
    for b in cluster.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} sees all brokers")
    topic = unique("truncate")
    a = admin(cluster.node(1).bootstrap)
    a.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})],
                    request_timeout=15)[topic].result(timeout=30)
    layout = wait_until(lambda: topic_layout(cluster.node(1), topic), timeout=20, what="metadata")
    old_id = layout[0][0]
    old = cluster.node(old_id)
    others = [b for b in cluster.brokers if b is not old]

    def send(bootstrap: str, values: list[bytes], acks: str) -> list:
        p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0, "message.timeout.ms": 10000,
                      "retries": 0})
        done = []
        for v in values:
            p.produce(topic, value=v, partition=0, on_delivery=lambda err, msg: done.append((err, msg)))
        p.flush(15)
        return done

    assert all(err is None for err, _ in send(old.bootstrap, [b"before-%d" % i for i in range(50)], "all"))
    cluster.links.isolate(old_id)
    try:
        # acks=1 on the isolated leader: acknowledged by it alone, never replicated.
        stray = send(old.bootstrap, [b"stray-%d" % i for i in range(20)], "1")
        assert sum(err is None for err, _ in stray) > 0, stray[:3]
        wait_until(lambda: (topic_layout(others[0], topic) or {0: (old_id,)})[0][0] not in (old_id, -1),
                   timeout=40, what="another leader elected")
        new_id = topic_layout(others[0], topic)[0][0]
        after = send(cluster.node(new_id).bootstrap, [b"after-%d" % i for i in range(30)], "all")
        assert all(err is None for err, _ in after), after[:3]
    finally:
        cluster.links.heal_all()
    wait_until(lambda: set(topic_layout(others[0], topic)[0][2]) == {1, 2, 3}, timeout=60,
               what="the old leader back in the isr")
    wait_until(lambda: len({segment_bytes(b, topic, 0) for b in cluster.brokers}) == 1, timeout=30,
               what="identical replicas")
    assert b"stray-" not in segment_bytes(old, topic, 0)
    assert segment_bytes(old, topic, 0).count(b"after-") == 30
    wait_until(lambda: "truncated a diverging follower log" in old.log_text(), timeout=5, what="truncation logged")
