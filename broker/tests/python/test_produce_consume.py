"""Produce and consume through confluent-kafka (librdkafka): keys, null keys, null values
(tombstones), headers, every compression codec, per-partition order across several partitions,
and acks=0/1/all. Every record is read back and compared field by field, with its partition and
offset."""

import pytest
from helpers import admin, consume, create_topic, produce_all, produce_ok, producer, unique, watermarks


def _records(n: int, partitions: int) -> list[dict]:
    recs = []
    for i in range(n):
        r = {"partition": i % partitions,
             "key": None if i % 5 == 0 else f"key-{i}".encode(),
             "value": None if i % 7 == 3 else (f"value-{i}-".encode() + bytes([i % 256]) * (i % 300)),
             "headers": [] if i % 3 == 0 else [("h1", f"hv{i}".encode()), ("empty", b""),
                                                 ("h1", b"dup-name")]}
        if i % 11 == 0:
            r["headers"] = [("null-valued", None)]
        recs.append(r)
    return recs


def _norm_headers(h):
    return [(k, v) for k, v in (h or [])]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_round_trip_every_field(broker, codec):
    topic = unique(f"rt-{codec}")
    create_topic(broker.bootstrap, topic, partitions=3)
    recs = _records(300, 3)
    delivered = produce_ok(broker.bootstrap, topic, recs, compression_type=codec, linger_ms=20)

    # Delivery reports: per partition, offsets 0..n-1 in send order.
    expected_by_offset = {}
    next_offset = {0: 0, 1: 0, 2: 0}
    per_part = {p: sorted((m for m in delivered if m.partition() == p), key=lambda m: m.offset())
                for p in range(3)}
    for p in range(3):
        sent = [r for r in recs if r["partition"] == p]
        got = per_part[p]
        assert [m.offset() for m in got] == list(range(len(sent))), f"partition {p} offsets"
        for r, m in zip(sent, got):
            assert (m.key(), m.value()) == (r["key"], r["value"]), f"p{p} offset {m.offset()}"
            expected_by_offset[(p, m.offset())] = r
            next_offset[p] += 1

    for p in range(3):
        assert watermarks(broker.bootstrap, topic, p) == (0, next_offset[p])

    msgs = consume(broker.bootstrap, topic, range(3), len(recs))
    seen = set()
    for m in msgs:
        k = (m.partition(), m.offset())
        assert k not in seen, f"duplicate {k}"
        seen.add(k)
        r = expected_by_offset[k]
        assert m.topic() == topic
        assert m.key() == r["key"], k
        assert m.value() == r["value"], k
        assert _norm_headers(m.headers()) == _norm_headers(r["headers"]), k
    assert seen == set(expected_by_offset)


def test_per_partition_order_many_records(broker):
    topic = unique("order")
    parts = 4
    n = 8000
    create_topic(broker.bootstrap, topic, partitions=parts)
    recs = [{"partition": i % parts, "key": f"k{i % 97}".encode(), "value": f"{i:08d}".encode()}
            for i in range(n)]
    produce_ok(broker.bootstrap, topic, recs, linger_ms=10, batch_num_messages=500)
    msgs = consume(broker.bootstrap, topic, range(parts), n, timeout=60)
    per = {p: [] for p in range(parts)}
    for m in msgs:
        per[m.partition()].append((m.offset(), int(m.value())))
    for p in range(parts):
        offsets = [o for o, _ in per[p]]
        seqs = [s for _, s in per[p]]
        assert offsets == list(range(n // parts)), f"partition {p} offsets not 0..n-1 in order"
        assert seqs == list(range(p, n, parts)), f"partition {p} values out of send order"
        assert watermarks(broker.bootstrap, topic, p) == (0, n // parts)


@pytest.mark.parametrize("max_in_flight", [1, 5, 1000])
def test_pipelined_small_batches_keep_order(broker, max_in_flight):
    """Many small batches in flight on one connection: offsets must follow send order (Kafka
    handles a connection's requests one after another). max_in_flight=1 is the control."""
    topic = unique(f"pipelined-{max_in_flight}")
    create_topic(broker.bootstrap, topic)
    n = 400
    recs = [{"partition": 0, "value": f"{i:06d}".encode() + b"p" * 1000} for i in range(n)]
    delivered = produce_ok(broker.bootstrap, topic, recs, linger_ms=0, batch_size=4096,
                           max_in_flight=max_in_flight)
    acked = sorted((m.offset(), int(m.value()[:6])) for m in delivered)
    misplaced = [(o, s) for o, s in acked if o != s]
    assert not misplaced, (f"{len(misplaced)} of {n} records acked at an offset other than their "
                           f"send position, e.g. (offset, seq) {misplaced[:6]}")
    msgs = consume(broker.bootstrap, topic, [0], n)
    assert [int(m.value()[:6]) for m in msgs] == list(range(n))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, acks):
    topic = unique(f"acks-{acks}")
    create_topic(broker.bootstrap, topic, partitions=1)
    recs = [{"partition": 0, "key": b"k", "value": f"acks-{acks}-{i}".encode()} for i in range(50)]
    d = produce_all(producer(broker.bootstrap, acks=acks), topic, recs)
    assert not d.errors, [e.str() for e, _ in d.errors[:3]]
    if acks != "0":
        # With acks>=1 the broker reports real offsets.
        assert sorted(m.offset() for m in d.ok) == list(range(50))
    msgs = consume(broker.bootstrap, topic, [0], 50)
    assert [(m.offset(), m.value()) for m in msgs] == [(i, f"acks-{acks}-{i}".encode()) for i in range(50)]
    assert watermarks(broker.bootstrap, topic, 0) == (0, 50)


def test_auto_created_topic_round_trip(broker):
    """Producing to a topic that does not exist auto-creates it (default on)."""
    topic = unique("auto")
    produce_ok(broker.bootstrap, topic, [{"key": b"a", "value": b"first"}, {"key": b"b", "value": b"second"}])
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert topic in md.topics and md.topics[topic].error is None
    nparts = len(md.topics[topic].partitions)
    msgs = consume(broker.bootstrap, topic, range(nparts), 2)
    assert sorted(m.value() for m in msgs) == [b"first", b"second"]


def test_consume_from_middle_offset(broker):
    topic = unique("mid")
    create_topic(broker.bootstrap, topic)
    produce_ok(broker.bootstrap, topic, [{"value": f"v{i}".encode()} for i in range(20)])
    msgs = consume(broker.bootstrap, topic, [0], 8, start=12)
    assert [(m.offset(), m.value()) for m in msgs] == [(i, f"v{i}".encode()) for i in range(12, 20)]
