"""Durability across restarts. kill -9 during acks=all load: after restarting on the same data dir,
every acknowledged record is present exactly once, at the offset that was acknowledged, with the
value that was sent. A clean SIGTERM restart exits 0 and keeps topics, topic ids, partition
counts, configs and data, and new records continue at the old log end."""

import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer, TopicCollection
from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

from helpers import admin, consume, create_topic, produce_ok, unique, watermarks

PARTITIONS = 3
MAX_RECORDS = 50_000
KILL_AFTER_ACKS = 5_000
OUTSTANDING = 2_000


@pytest.mark.timeout(300)
def test_kill9_during_acks_all_load_loses_no_acknowledged_record(broker):
    topic = unique("kill9")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    acked: dict[tuple[int, int], bytes] = {}
    failed = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    sent = [0]

    def on_delivery(err, msg):
        with lock:
            if err is None:
                key = (msg.partition(), msg.offset())
                assert key not in acked, f"offset {key} acknowledged twice"
                acked[key] = msg.value()
            else:
                failed[err.str()] += 1

    p = Producer({
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 200,
        # No retries: a record whose request was in flight when the broker died fails instead of
        # being sent twice, so "exactly once" below holds for every record, acked or not.
        "retries": 0,
        "message.timeout.ms": 60000,
        "socket.timeout.ms": 10000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    })

    def produce_loop():
        for seq in range(MAX_RECORDS):
            if stop.is_set():
                return
            value = f"seq-{seq:08d}-".encode() + b"d" * 80
            while True:
                try:
                    p.produce(topic, value=value, partition=seq % PARTITIONS, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)
            sent[0] += 1
            # Keep at most OUTSTANDING records unacknowledged, so the load is still going (and
            # records are in flight) when the test kills the broker.
            while len(p) > OUTSTANDING and not stop.is_set():
                p.poll(0.01)

    th = threading.Thread(target=produce_loop, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            p.poll(0.05)
            with lock:
                n = len(acked)
            if n >= KILL_AFTER_ACKS:
                break
            assert time.monotonic() < deadline, f"only {n} acks in 120 s"
            assert th.is_alive() or n >= KILL_AFTER_ACKS, "producer loop ended before the kill"
        still_producing = th.is_alive() and sent[0] < MAX_RECORDS
        broker.kill9()
        with lock:
            acked_at_kill = len(acked)
        stop.set()
        th.join(timeout=30)
        broker.start()  # same ports, same data dir
        assert still_producing, "all records were produced before the kill: raise MAX_RECORDS"

        # Whatever librdkafka still holds (never sent) goes to the restarted broker.
        remaining = p.flush(60)
        assert remaining == 0, f"{remaining} records never got a delivery report"
    finally:
        stop.set()
        if not broker.alive():
            broker.start()  # leave a serving broker to the module's other tests

    with lock:
        acked_total = dict(acked)
    assert acked_at_kill >= KILL_AFTER_ACKS

    # Read back every partition up to its high watermark.
    log: dict[tuple[int, int], bytes] = {}
    for part in range(PARTITIONS):
        low, high = watermarks(broker.bootstrap, topic, part)
        assert low == 0
        max_acked = max((o for (pp, o) in acked_total if pp == part), default=-1)
        assert high > max_acked, (f"partition {part}: high watermark {high} after restart, but "
                                  f"offset {max_acked} was acknowledged")
        msgs = consume(broker.bootstrap, topic, [part], high, timeout=120) if high else []
        assert [m.offset() for m in msgs] == list(range(high)), f"partition {part}: gaps or disorder"
        for m in msgs:
            log[(part, m.offset())] = m.value()

    missing = [k for k in acked_total if k not in log]
    assert not missing, f"{len(missing)} acknowledged records missing after kill -9, e.g. {missing[:5]}"
    wrong = [(k, acked_total[k][:20], log[k][:20]) for k in acked_total if log[k] != acked_total[k]]
    assert not wrong, f"{len(wrong)} acknowledged offsets hold other values, e.g. {wrong[:5]}"
    counts = Counter(log.values())
    dups = [v[:20] for v, c in counts.items() if c > 1]
    assert not dups, f"{len(dups)} values stored more than once, e.g. {dups[:5]}"
    # Every stored value is one the producer sent to that partition (order across pipelined
    # requests is checked by test_produce_consume.py::test_pipelined_small_batches_keep_order).
    for (part, _off), v in log.items():
        assert v.startswith(b"seq-") and int(v[4:12]) % PARTITIONS == part, (part, v[:20])
    print(f"\nkill -9 after {acked_at_kill} acks; {len(acked_total)} acked in total, "
          f"{len(log)} stored, {sum(failed.values())} failed: {dict(failed)}")


def test_clean_restart_keeps_topics_ids_configs_and_data(broker):
    topic = unique("restart")
    create_topic(broker.bootstrap, topic, partitions=2,
                 config={"retention.ms": "12345678", "max.message.bytes": "65536"})
    auto_topic = unique("restart-auto")
    produce_ok(broker.bootstrap, auto_topic, [{"value": b"auto"}])
    recs = [{"partition": i % 2, "key": f"k{i}".encode(), "value": f"v{i}".encode(),
             "headers": [("i", str(i).encode())]} for i in range(100)]
    produce_ok(broker.bootstrap, topic, recs)

    def snapshot():
        a = admin(broker.bootstrap)
        desc = a.describe_topics(TopicCollection([topic, auto_topic]), request_timeout=15)
        ids = {name: str(f.result(timeout=20).topic_id) for name, f in desc.items()}
        res = ConfigResource(ResourceType.TOPIC, topic)
        cfg = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
        md = a.list_topics(timeout=10)
        return {
            "ids": ids,
            "partitions": {t: sorted(md.topics[t].partitions) for t in (topic, auto_topic)},
            "retention.ms": (cfg["retention.ms"].value, ConfigSource(cfg["retention.ms"].source)
                             if not isinstance(cfg["retention.ms"].source, ConfigSource)
                             else cfg["retention.ms"].source),
            "max.message.bytes": cfg["max.message.bytes"].value,
            "cluster_id": md.cluster_id,
            "watermarks": [watermarks(broker.bootstrap, topic, p) for p in (0, 1)],
        }

    before = snapshot()
    assert before["watermarks"] == [(0, 50), (0, 50)]
    assert before["retention.ms"] == ("12345678", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert all(i and i != "AAAAAAAAAAAAAAAAAAAAAA" for i in before["ids"].values()), before["ids"]

    # Ten more records to partition 0 right before the shutdown: nothing may depend on a
    # periodic checkpoint having run since the last append.
    last = [{"partition": 0, "key": f"last{i}".encode(), "value": f"lv{i}".encode(),
             "headers": [("i", b"last")]} for i in range(10)]
    produce_ok(broker.bootstrap, topic, last, linger_ms=0)
    rc = broker.restart()
    assert rc == 0, f"SIGTERM shutdown exited with {rc}"

    after = snapshot()
    before["watermarks"] = [(0, 60), (0, 50)]
    assert after == before

    msgs = consume(broker.bootstrap, topic, [0, 1], 110)
    got = {(m.partition(), m.offset()): (m.key(), m.value(), m.headers()) for m in msgs}
    expected = {}
    for i, r in enumerate(recs):
        expected[(i % 2, i // 2)] = (r["key"], r["value"], r["headers"])
    for i, r in enumerate(last):
        expected[(0, 50 + i)] = (r["key"], r["value"], r["headers"])
    assert got == expected

    d = produce_ok(broker.bootstrap, topic, [{"partition": 0, "value": b"after-restart"}])
    assert (d[0].partition(), d[0].offset()) == (0, 60)


def test_high_watermark_restored_right_after_restart(broker):
    """Consumers see all committed data immediately after a restart (clean or kill -9): the high
    watermark after recovery equals the recovered log end, with no produce needed to move it."""
    topic = unique("hw-restart")
    create_topic(broker.bootstrap, topic)
    produce_ok(broker.bootstrap, topic, [{"partition": 0, "value": b"h%d" % i} for i in range(30)],
               acks="all", linger_ms=0)
    assert watermarks(broker.bootstrap, topic) == (0, 30)
    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (0, 30), "after SIGTERM restart"
    produce_ok(broker.bootstrap, topic, [{"partition": 0, "value": b"h%d" % i} for i in range(30, 40)],
               acks="all", linger_ms=0)
    broker.restart(kill9=True)
    assert watermarks(broker.bootstrap, topic) == (0, 40), "after kill -9 restart (acks=all data)"
    msgs = consume(broker.bootstrap, topic, [0], 40)
    assert [m.value() for m in msgs] == [b"h%d" % i for i in range(40)]


def test_failed_fsync_halts_before_acknowledging(broker_factory, tmp_path):
    """A failed fsync (injected in debug builds while a marker file exists) must never be
    answered as success: the broker halts with EX_IOERR (74), as Kafka halts on a failed log dir,
    and every record acknowledged before it is still there after a restart."""
    marker = tmp_path / "fail-fsync"
    b = broker_factory(name="fsync-fault", env={"FJORD_FAULT_FSYNC_FAIL_IF_EXISTS": str(marker)})
    topic = unique("fsyncfail")
    create_topic(b.bootstrap, topic)
    before = produce_ok(b.bootstrap, topic, [{"value": b"durable-%d" % i} for i in range(100)], acks="all")
    assert len(before) == 100
    marker.touch()
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "message.timeout.ms": 5000,
                  "retries": 0, "linger.ms": 0})
    acked, errors = [], []
    p.produce(topic, b"never-durable", on_delivery=lambda err, m: (errors if err else acked).append(m))
    p.flush(15)
    assert acked == [], "a write whose fsync failed was acknowledged"
    assert b.proc.wait(timeout=15) == 74
    assert "fsync failed: halting the broker" in b.log_text()
    marker.unlink()
    b.proc = None
    b.start()
    assert watermarks(b.bootstrap, topic)[1] >= 100
    got = consume(b.bootstrap, topic, [0], 100, timeout=30)
    assert [m.value() for m in got[:100]] == [b"durable-%d" % i for i in range(100)]
