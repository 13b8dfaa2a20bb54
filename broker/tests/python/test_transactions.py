"""Transactions and exactly-once (issue 14) against the real broker, through confluent-kafka
(librdkafka) and kafka-python:

- commit and abort across partitions and topics: read_committed consumers see exactly the
  committed records in order, read_uncommitted ones see everything;
- the last stable offset holds a read_committed consumer back while a transaction is open and
  releases it on commit (and on abort); ListOffsets honours the isolation level;
- a second producer with the same transactional.id fences the first and aborts its open
  transaction; a transaction that outlives transaction.timeout.ms is aborted by the coordinator;
- send_offsets_to_transaction (consume-transform-produce): the group's offsets become visible
  only when the transaction commits (UNSTABLE_OFFSET_COMMIT for require_stable fetches until
  then); a consume-transform-produce loop killed with kill -9 at random points produces each
  output exactly once;
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
    # The abort bumped the epoch: the producer is fenced (as with Kafka, librdkafka treats it
    # as fatal).
    with pytest.raises(KafkaException) as err:
        p.commit_transaction(10)
    assert err.value.args[0].fatal(), err.value


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
    # While the transaction is open, a read_committed consumer's OffsetFetch (require_stable)
    # gets UNSTABLE_OFFSET_COMMIT and retries until its timeout.
    with pytest.raises(KafkaException):
        c.committed([TopicPartition(src, 0)], timeout=2)
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


# ---------------------------------------------------------------------------------------------
# The wire contract: Kafka's error codes for bad transactional input (non-flexible versions).

def _init_pid(addr: str, tid: str, timeout_ms: int = 60000) -> tuple[int, int, int]:
    import wire
    body = wire.string(tid) + wire.i32(timeout_ms)
    _, resp = wire.roundtrip(addr, wire.frame(wire.request_header_v1(22, 1, 1) + body))
    r = wire.Reader(resp)
    r.i32()
    return r.i16(), r.i64(), r.i16()


def _add_partitions(addr: str, tid: str, pid: int, epoch: int, topic: str, parts: list[int],
                    version: int = 2) -> dict[int, int]:
    import wire
    body = (wire.string(tid) + wire.i64(pid) + wire.i16(epoch)
            + wire.array([wire.string(topic) + wire.array([wire.i32(p) for p in parts])]))
    _, resp = wire.roundtrip(addr, wire.frame(wire.request_header_v1(24, version, 2) + body))
    r = wire.Reader(resp)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[p] = r.i16()
    return out


def _end_txn(addr: str, tid: str, pid: int, epoch: int, commit: bool, version: int = 2) -> int:
    import wire
    body = wire.string(tid) + wire.i64(pid) + wire.i16(epoch) + wire.i8(1 if commit else 0)
    _, resp = wire.roundtrip(addr, wire.frame(wire.request_header_v1(26, version, 3) + body))
    r = wire.Reader(resp)
    r.i32()
    return r.i16()


def _txn_batch(pid: int, epoch: int, seq: int, value: bytes) -> bytes:
    """A transactional batch (attributes bit 4) of one record."""
    import struct

    import wire
    ts = int(time.time() * 1000)
    recs = wire.record(0, 0, None, value)
    after_crc = (wire.i16(1 << 4) + wire.i32(0) + wire.i64(ts) + wire.i64(ts) + wire.i64(pid)
                 + wire.i16(epoch) + wire.i32(seq) + wire.i32(1) + recs)
    after_length = wire.i32(-1) + wire.i8(2) + struct.pack(">I", wire.crc32c(after_crc)) + after_crc
    return wire.i64(0) + wire.i32(len(after_length)) + after_length


def _produce_txn(addr: str, tid: str, topic: str, batch: bytes) -> int:
    import wire
    body = (wire.string(tid) + wire.i16(-1) + wire.i32(10000)
            + wire.array([wire.string(topic) + wire.array([wire.i32(0) + wire.nbytes(batch)])]))
    _, resp = wire.roundtrip(addr, wire.frame(wire.request_header_v1(0, 3, 4) + body))
    return wire.parse_produce_v3(resp)[(topic, 0)][0]


def test_bad_transactional_input_gets_kafka_error_codes(txb):
    addr = txb.bootstrap
    topic = unique("wire-txn")
    create_topic(addr, topic, 1)
    tid = unique("wire-tid")
    err, pid, epoch = wait_until(lambda: (r := _init_pid(addr, tid))[0] != 14 and r, 10, "coordinator loaded")
    assert (err, epoch) == (0, 0)
    # transaction.timeout.ms above transactions.max_timeout: INVALID_TRANSACTION_TIMEOUT (50).
    assert _init_pid(addr, unique("tid"), timeout_ms=3_600_000)[0] == 50
    # EndTxn with nothing added: INVALID_TXN_STATE (48).
    assert _end_txn(addr, tid, pid, epoch, True) == 48
    # A transactional batch for a partition the transaction has not added: INVALID_TXN_STATE.
    assert _produce_txn(addr, tid, topic, _txn_batch(pid, epoch, 0, b"x")) == 48
    # AddPartitionsToTxn naming an unknown topic: UNKNOWN_TOPIC_OR_PARTITION (3) for it (and
    # OPERATION_NOT_ATTEMPTED (55) for the rest of the request).
    assert _add_partitions(addr, tid, pid, epoch, unique("nope"), [0]) == {0: 3}
    # Unknown transactional id or producer id: INVALID_PRODUCER_ID_MAPPING (49).
    assert _add_partitions(addr, unique("ghost"), pid, epoch, topic, [0]) == {0: 49}
    assert _add_partitions(addr, tid, pid + 1, epoch, topic, [0]) == {0: 49}
    # Stale epoch: PRODUCER_FENCED (90) from v2, INVALID_PRODUCER_EPOCH (47) before (KIP-588).
    assert _add_partitions(addr, tid, pid, epoch + 1, topic, [0]) == {0: 90}
    assert _add_partitions(addr, tid, pid, epoch + 1, topic, [0], version=1) == {0: 47}
    # The proper sequence works: add, produce, commit; a retried commit succeeds, an abort after
    # it is INVALID_TXN_STATE.
    assert _add_partitions(addr, tid, pid, epoch, topic, [0]) == {0: 0}
    assert _produce_txn(addr, tid, topic, _txn_batch(pid, epoch, 0, b"ok")) == 0
    assert _end_txn(addr, tid, pid, epoch, True) == 0
    assert _end_txn(addr, tid, pid, epoch, True) == 0
    assert _end_txn(addr, tid, pid, epoch, False) == 48
    # A new producer for the id fences this one: its transactional batches and EndTxn are refused.
    err, pid2, epoch2 = _init_pid(addr, tid)
    assert (err, pid2, epoch2) == (0, pid, epoch + 1)
    assert _add_partitions(addr, tid, pid, epoch, topic, [0]) == {0: 90}
    assert _end_txn(addr, tid, pid, epoch, False) == 90
    assert _produce_txn(addr, tid, topic, _txn_batch(pid, epoch, 1, b"zombie")) == 47
    # The coordinator keeps serving.
    assert _add_partitions(addr, tid, pid2, epoch2, topic, [0]) == {0: 0}
    assert _end_txn(addr, tid, pid2, epoch2, False) == 0
    assert values(read_all(addr, topic, [0], "read_committed", expect=1)) == [b"ok"]


# ---------------------------------------------------------------------------------------------
# Exactly once through client crashes: a consume-transform-produce loop killed with kill -9.

CTP_SCRIPT = r'''
import sys, time
from confluent_kafka import Consumer, Producer, TopicPartition
bootstrap, src, dst, group, tid = sys.argv[1:6]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
              "auto.offset.reset": "earliest", "isolation.level": "read_committed",
              # A killed member holds up the next rebalance until its session times out.
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe([src])
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 1,
              "transaction.timeout.ms": 10000})
p.init_transactions(30)
print("ready", flush=True)
while True:
    msgs = [m for m in c.consume(20, 0.5) if not m.error()]
    if not msgs:
        continue
    p.begin_transaction()
    for m in msgs:
        time.sleep(0.005)
        p.produce(dst, value=m.value().replace(b"in", b"out"), partition=m.partition())
    offsets = {}
    for m in msgs:
        offsets[m.partition()] = m.offset() + 1
    p.send_offsets_to_transaction([TopicPartition(src, k, v) for k, v in offsets.items()],
                                  c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    print("committed", len(msgs), flush=True)
'''


def test_consume_transform_produce_survives_kill9_of_the_client_exactly_once(txb, tmp_path):
    import random
    import signal
    import subprocess
    import sys

    addr = txb.bootstrap
    src, dst = unique("ctp-src"), unique("ctp-dst")
    create_topic(addr, src, 2)
    create_topic(addr, dst, 2)
    n = 400
    plain = Producer({"bootstrap.servers": addr, "linger.ms": 5})
    for i in range(n):
        plain.produce(src, value=f"in-{i}".encode(), partition=i % 2)
    plain.flush(30)
    group, tid = unique("ctp-g"), unique("ctp-tid")
    script = tmp_path / "ctp.py"
    script.write_text(CTP_SCRIPT)
    rng = random.Random(14)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, str(script), addr, src, dst, group, tid],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            # Let it commit a few transactions, then kill it at a random point of the next ones.
            for _ in range(rng.randint(1, 3)):
                assert proc.stdout.readline().startswith(b"committed")
            time.sleep(rng.uniform(0.0, 0.2))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    # A last run finishes the input.
    proc = subprocess.Popen([sys.executable, str(script), addr, src, dst, group, tid],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        got = read_all(addr, dst, [0, 1], "read_committed", expect=n, settle=2.0, timeout=90)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    outs = values(got)
    assert len(outs) == n, f"{len(outs)} outputs for {n} inputs ({len(outs) - len(set(outs))} duplicates)"
    assert sorted(outs) == sorted(f"out-{i}".encode() for i in range(n))
    # In input order per partition.
    for part in range(2):
        assert [v for p_, _, v in got if p_ == part] == [f"out-{i}".encode() for i in range(part, n, 2)]


def test_describe_and_list_transactions_with_kafka_python_admin(txb):
    from kafka import KafkaAdminClient

    topic = unique("desc")
    create_topic(txb.bootstrap, topic, 2)
    tid = unique("desc-tid")
    p = txn_producer(txb.bootstrap, tid)
    p.begin_transaction()
    p.produce(topic, value=b"x", partition=1)
    p.flush(10)
    k = KafkaAdminClient(bootstrap_servers=txb.bootstrap)
    try:
        d = k.describe_transactions([tid])[tid]
        assert str(d.state).endswith("ONGOING") or "Ongoing" in str(d.state), d
        assert {(tp.topic, tp.partition) for tp in d.topic_partitions} == {(topic, 1)}
        assert d.transaction_timeout_ms == 60000 and d.producer_epoch == 0
        def listing(**filters):
            return {t.transactional_id: t for ts in k.list_transactions(**filters).values() for t in ts}

        assert tid in listing(state_filters=["Ongoing"])
        p.commit_transaction(30)
        listed = listing(transactional_id_pattern="desc-tid-.*")
        assert set(listed) == {tid}
        assert "COMPLETECOMMIT" in str(listed[tid].state).upper().replace("_", ""), listed[tid]
        assert tid not in listing(state_filters=["Ongoing"])
        with pytest.raises(Exception) as err:
            k.describe_transactions([unique("unknown-tid")])
        assert "TransactionalIdNotFound" in type(err.value).__name__ or "105" in str(err.value) or \
            "not be found" in str(err.value).lower(), err.value
    finally:
        k.close()


def test_broker_kill9_during_commit_gives_all_or_nothing(broker_factory):
    """kill -9 racing EndTxn: after the restart every round's records are visible in all eight
    partitions or in none (prepared commits are completed from __transaction_state, open
    transactions are aborted by their timeout), and the id serves a new producer."""
    import random
    import threading

    b = broker_factory(FAST, name="txn-commit-kill")
    topic = unique("commit-kill")
    create_topic(b.bootstrap, topic, 8)
    tid = unique("tid")
    rng = random.Random(9)
    rounds = 4
    for r in range(rounds):
        p = txn_producer(b.bootstrap, tid, transaction_timeout_ms=3000)
        p.begin_transaction()
        for part in range(8):
            p.produce(topic, value=f"r{r}-p{part}".encode(), partition=part)
        p.flush(10)
        t = threading.Thread(target=lambda: _swallow(lambda: p.commit_transaction(5)), daemon=True)
        t.start()
        time.sleep(rng.uniform(0.0, 0.004))
        b.restart(kill9=True)
        t.join(15)
        del p
    # Every open transaction is resolved after at most its timeout; then count per round.
    got = read_all(b.bootstrap, topic, list(range(8)), "read_committed", settle=6.0)
    per_round = {r: sum(1 for v in values(got) if v.startswith(f"r{r}-".encode())) for r in range(rounds)}
    assert all(n in (0, 8) for n in per_round.values()), per_round
    uncommitted = read_all(b.bootstrap, topic, list(range(8)), "read_uncommitted", expect=8 * rounds)
    assert len(uncommitted) == 8 * rounds
    p = txn_producer(b.bootstrap, tid)
    p.begin_transaction()
    p.produce(topic, value=b"final", partition=0)
    p.commit_transaction(30)
    got = read_all(b.bootstrap, topic, list(range(8)), "read_committed", expect=sum(per_round.values()) + 1)
    assert b"final" in values(got)
    recovered = b.log_text().count("completing a prepared transaction")
    print("rounds committed before/at the kill:", per_round, "prepared at restart:", recovered)


def _swallow(f):
    try:
        f()
    except Exception:  # noqa: BLE001 - the broker is killed under it
        pass
