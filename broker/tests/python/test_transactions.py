"""Transactions and exactly-once (issue 14) against the real broker, through confluent-kafka
(librdkafka) and kafka-python:

- commit and abort across partitions and topics: read_committed consumers see exactly the
  committed records in order, read_uncommitted ones see everything;
- the last stable offset holds a read_committed consumer back while a transaction is open and
  releases it on commit (and on abort); ListOffsets honours the isolation level;
- a second producer with the same transactional.id fences the first and aborts its open
  transaction; a transaction that outlives transaction.timeout.ms is aborted by the coordinator;
- send_offsets_to_transaction (consume-transform-produce): the group's offsets become visible
  only when the transaction commits;
- kill -9 of the broker in the middle of a transaction and after a commit: after restart the
  coordinator and the logs agree (open transaction aborted by timeout, committed data and
  offsets intact);
- bad input on the wire: EndTxn in the wrong state, AddPartitionsToTxn for an unknown topic,
  a transactional batch for a partition outside the transaction, and the coordinator keeps
  serving.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)

from helpers import create_topic, unique, wait_until

# Small internal topics and a fast timeout check keep the module quick.
FAST = ["--set", "transactions.state_log_partitions=3", "--set", "groups.offsets_topic_partitions=3",
        "--set", "transactions.abort_timed_out_interval=200ms",
        "--set", "groups.initial_rebalance_delay=0s"]


@pytest.fixture(scope="module")
def txb(broker_factory):
    return broker_factory(FAST, name="txn")


def txn_producer(bootstrap: str, txn_id: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5,
            "transaction.timeout.ms": 60000}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    p = Producer(base)
    p.init_transactions(30)
    return p


def read_all(bootstrap: str, topic: str, partitions: list[int], isolation: str, expect: int | None = None,
             settle: float = 1.0, timeout: float = 20.0) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record a consumer with `isolation` gets from the
    beginning: until `expect` records arrived (then `settle` more seconds to catch extras), or
    for `settle` seconds if expect is None."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "isolation.level": isolation,
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out = []
        deadline = time.monotonic() + timeout
        settle_until = None if expect is not None else time.monotonic() + settle
        while True:
            now = time.monotonic()
            if settle_until is None and expect is not None and len(out) >= expect:
                settle_until = now + settle
            if settle_until is not None and now > settle_until:
                break
            if now > deadline:
                raise AssertionError(f"got {len(out)} of {expect} records from {topic} ({isolation})")
            for m in c.consume(500, 0.2):
                if m.error():
                    raise KafkaException(m.error())
                out.append((m.partition(), m.offset(), m.value()))
        return out
    finally:
        c.close()


def values(records) -> list[bytes]:
    return [v for _, _, v in records]


def test_commit_and_abort_across_partitions_and_topics(txb):
    a, b = unique("txa"), unique("txb")
    create_topic(txb.bootstrap, a, 3)
    create_topic(txb.bootstrap, b, 1)
    p = txn_producer(txb.bootstrap, unique("tid"))
    committed, aborted = [], []
    for round_ in range(3):
        p.begin_transaction()
        for i in range(6):
            v = f"c{round_}-{i}".encode()
            p.produce(a, value=v, partition=i % 3)
            committed.append(v)
        p.produce(b, value=f"c{round_}-b".encode())
        committed.append(f"c{round_}-b".encode())
        p.commit_transaction(30)
        p.begin_transaction()
        for i in range(4):
            v = f"a{round_}-{i}".encode()
            p.produce(a, value=v, partition=i % 3)
            aborted.append(v)
        p.produce(b, value=f"a{round_}-b".encode())
        aborted.append(f"a{round_}-b".encode())
        p.flush(30)  # the aborted records are in the log before the abort marker
        p.abort_transaction(30)

    rc_a = read_all(txb.bootstrap, a, [0, 1, 2], "read_committed", expect=18)
    rc = rc_a + read_all(txb.bootstrap, b, [0], "read_committed", expect=3)
    assert sorted(values(rc)) == sorted(committed)
    # In order within each partition.
    for part in range(3):
        got = [v for p_, _, v in rc_a if p_ == part]
        assert got == [f"c{r}-{i}".encode() for r in range(3) for i in range(6) if i % 3 == part]
    ru = read_all(txb.bootstrap, a, [0, 1, 2], "read_uncommitted", expect=30) + \
        read_all(txb.bootstrap, b, [0], "read_uncommitted", expect=6)
    assert sorted(values(ru)) == sorted(committed + aborted)


def test_last_stable_offset_blocks_read_committed_until_commit(txb):
    topic = unique("lso")
    create_topic(txb.bootstrap, topic, 1)
    plain = Producer({"bootstrap.servers": txb.bootstrap})
    plain.produce(topic, value=b"before")
    plain.flush(10)
    p = txn_producer(txb.bootstrap, unique("tid"))
    p.begin_transaction()
    p.produce(topic, value=b"in-txn")
    p.flush(10)
    # Non-transactional data after the open transaction is held back too.
    plain.produce(topic, value=b"after")
    plain.flush(10)

    c = Consumer({"bootstrap.servers": txb.bootstrap, "group.id": unique("g"), "isolation.level": "read_committed",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        seen += [m.value() for m in c.consume(10, 0.2) if not m.error()]
    assert seen == [b"before"], seen
    # ListOffsets: read_committed LATEST is the LSO (1), read_uncommitted the high watermark (3).
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1] == 1
    ru = Consumer({"bootstrap.servers": txb.bootstrap, "group.id": unique("g"),
                   "isolation.level": "read_uncommitted"})
    assert ru.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1] == 3
    ru.close()
    p.commit_transaction(30)
    wait_until(lambda: seen.extend(m.value() for m in c.consume(10, 0.2) if not m.error()) or len(seen) >= 3,
               10, "read_committed consumer released")
    assert seen == [b"before", b"in-txn", b"after"]
    # Past the commit marker: the LSO is the high watermark again.
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1] == 4
    c.close()


def test_abort_releases_the_lso_and_hides_the_records(txb):
    topic = unique("lso-abort")
    create_topic(txb.bootstrap, topic, 1)
    p = txn_producer(txb.bootstrap, unique("tid"))
    p.begin_transaction()
    p.produce(topic, value=b"doomed")
    p.flush(10)
    plain = Producer({"bootstrap.servers": txb.bootstrap})
    plain.produce(topic, value=b"plain")
    plain.flush(10)
    p.abort_transaction(30)
    got = read_all(txb.bootstrap, topic, [0], "read_committed", expect=1)
    assert values(got) == [b"plain"]


def test_zombie_producer_is_fenced_and_its_transaction_aborted(txb):
    topic = unique("zombie")
    create_topic(txb.bootstrap, topic, 2)
    tid = unique("tid")
    zombie = txn_producer(txb.bootstrap, tid)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie", partition=0)
    zombie.flush(10)
    # A new instance with the same transactional.id: the zombie's transaction is aborted.
    fresh = txn_producer(txb.bootstrap, tid)
    fresh.begin_transaction()
    fresh.produce(topic, value=b"fresh", partition=1)
    fresh.commit_transaction(30)
    # The zombie can no longer commit: it is fenced (a fatal error in librdkafka).
    with pytest.raises(KafkaException) as err:
        zombie.produce(topic, value=b"zombie-2", partition=1)
        zombie.commit_transaction(10)
    e = err.value.args[0]
    assert e.fatal() or e.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                     KafkaError.INVALID_PRODUCER_EPOCH), e
    got = read_all(txb.bootstrap, topic, [0, 1], "read_committed", expect=1)
    assert values(got) == [b"fresh"]


def test_transaction_timeout_aborts_and_releases_the_lso(txb):
    topic = unique("timeout")
    create_topic(txb.bootstrap, topic, 1)
    p = txn_producer(txb.bootstrap, unique("tid"), transaction_timeout_ms=1500)
    p.begin_transaction()
    p.produce(topic, value=b"late")
    p.flush(10)
    plain = Producer({"bootstrap.servers": txb.bootstrap})
    plain.produce(topic, value=b"plain")
    plain.flush(10)
    # The coordinator aborts after ~1.5 s; then the plain record is readable, the other is not.
    got = read_all(txb.bootstrap, topic, [0], "read_committed", expect=1, timeout=15)
    assert values(got) == [b"plain"]
    with pytest.raises(KafkaException):
        p.commit_transaction(10)


def test_send_offsets_to_transaction_commits_offsets_with_the_output(txb):
    src, dst = unique("src"), unique("dst")
    create_topic(txb.bootstrap, src, 1)
    create_topic(txb.bootstrap, dst, 1)
    plain = Producer({"bootstrap.servers": txb.bootstrap})
    for i in range(10):
        plain.produce(src, value=f"in-{i}".encode())
    plain.flush(10)
    group = unique("ctp")
    c = Consumer({"bootstrap.servers": txb.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe([src])
    p = txn_producer(txb.bootstrap, unique("tid"))
    batch = []
    wait_until(lambda: batch.extend(m for m in c.consume(10, 0.5) if not m.error()) or len(batch) >= 10,
               20, "input consumed")
    # First transaction: 5 outputs and the offset after them, aborted.
    p.begin_transaction()
    for m in batch[:5]:
        p.produce(dst, value=m.value().replace(b"in", b"out"))
    p.send_offsets_to_transaction([TopicPartition(src, 0, 5)], c.consumer_group_metadata(), 30)
    p.abort_transaction(30)
    assert committed_offset(c, src) < 5  # nothing committed by an aborted transaction
    # Second: all 10 and offset 10, committed.
    p.begin_transaction()
    for m in batch:
        p.produce(dst, value=m.value().replace(b"in", b"out"))
    p.send_offsets_to_transaction([TopicPartition(src, 0, 10)], c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    wait_until(lambda: committed_offset(c, src) == 10, 10, "transactional offsets committed")
    c.close()
    out = read_all(txb.bootstrap, dst, [0], "read_committed", expect=10)
    assert values(out) == [f"out-{i}".encode() for i in range(10)]


def committed_offset(c: Consumer, topic: str) -> int:
    tp = c.committed([TopicPartition(topic, 0)], timeout=10)[0]
    return tp.offset


def test_kafka_python_transactions(txb):
    from kafka import KafkaConsumer, KafkaProducer

    topic = unique("kp")
    create_topic(txb.bootstrap, topic, 2)
    p = KafkaProducer(bootstrap_servers=txb.bootstrap, transactional_id=unique("kp-tid"))
    p.init_transactions()
    p.begin_transaction()
    for i in range(4):
        p.send(topic, value=f"k-commit-{i}".encode(), partition=i % 2)
    p.commit_transaction()
    p.begin_transaction()
    for i in range(3):
        p.send(topic, value=f"k-abort-{i}".encode(), partition=i % 2)
    p.flush()
    p.abort_transaction()
    p.close()

    def read(isolation: str, expect: int) -> list[bytes]:
        c = KafkaConsumer(bootstrap_servers=txb.bootstrap, isolation_level=isolation,
                          auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=2000)
        tps = [__import__("kafka").TopicPartition(topic, i) for i in range(2)]
        c.assign(tps)
        c.seek_to_beginning()
        out = []
        deadline = time.monotonic() + 15
        while len(out) < expect and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out += [r.value for r in recs]
        time.sleep(0.5)
        for recs in c.poll(timeout_ms=500).values():
            out += [r.value for r in recs]
        c.close()
        return out

    assert sorted(read("read_committed", 4)) == sorted(f"k-commit-{i}".encode() for i in range(4))
    assert len(read("read_uncommitted", 7)) == 7
    # confluent-kafka agrees about the same log.
    assert sorted(values(read_all(txb.bootstrap, topic, [0, 1], "read_committed", expect=4))) == \
        sorted(f"k-commit-{i}".encode() for i in range(4))


def test_broker_kill9_mid_transaction_and_after_commit(broker_factory):
    b = broker_factory(FAST, name="txn-kill")
    topic = unique("kill")
    create_topic(b.bootstrap, topic, 2)
    group = unique("kill-g")
    p = txn_producer(b.bootstrap, unique("tid"), transaction_timeout_ms=3000)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    p.begin_transaction()
    for i in range(4):
        p.produce(topic, value=f"done-{i}".encode(), partition=i % 2)
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 42)], c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(4):
        p.produce(topic, value=f"open-{i}".encode(), partition=i % 2)
    p.flush(10)
    c.close()
    b.restart(kill9=True)
    # Committed data and offsets survive; the open transaction is aborted by its timeout.
    got = read_all(b.bootstrap, topic, [0, 1], "read_committed", expect=4, timeout=30)
    assert sorted(values(got)) == sorted(f"done-{i}".encode() for i in range(4))
    c2 = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    assert c2.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 42
    c2.close()
    # The coordinator keeps serving: a new producer with a new id commits after the restart.
    p2 = txn_producer(b.bootstrap, unique("tid"))
    p2.begin_transaction()
    p2.produce(topic, value=b"after", partition=0)
    p2.commit_transaction(30)
    got = read_all(b.bootstrap, topic, [0, 1], "read_committed", expect=5, timeout=30)
    assert sorted(values(got)) == sorted([f"done-{i}".encode() for i in range(4)] + [b"after"])
