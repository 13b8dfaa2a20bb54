"""ListOffsets and the log start offset: offsets_for_times (first offset whose timestamp is >= the
target), earliest/latest watermarks, the max-timestamp spec, LogAppendTime topics (broker time
stamped on consumed records and in the produce response), and DeleteRecords moving the log start
offset."""

import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME,
                             TopicPartition)
from confluent_kafka.admin import OffsetSpec

from helpers import (admin, consume, consumer, create_topic, kafka_error_code, produce_ok, unique,
                     watermarks)


def _offsets_for_times(bootstrap, topic, targets):
    """One lookup per target (librdkafka keeps one entry per partition in a request)."""
    c = consumer(bootstrap)
    out = []
    try:
        for t in targets:
            (r,) = c.offsets_for_times([TopicPartition(topic, 0, t)], timeout=15)
            assert r.error is None, r.error
            out.append(r.offset)
    finally:
        c.close()
    return out


def test_offsets_for_times_and_watermarks(broker):
    topic = unique("bytime")
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 600_000  # ten minutes ago, 1 s apart
    recs = [{"partition": 0, "value": f"t{i}".encode(), "timestamp": base + i * 1000} for i in range(10)]
    produce_ok(broker.bootstrap, topic, recs, linger_ms=0)

    assert watermarks(broker.bootstrap, topic) == (0, 10)
    got = _offsets_for_times(broker.bootstrap, topic, [
        base - 5000,        # before everything -> 0
        base,               # exact first -> 0
        base + 2500,        # between t2 and t3 -> 3
        base + 3000,        # exact t3 -> 3
        base + 9000,        # exact last -> 9
        base + 9001,        # after everything -> -1 (no such offset)
    ])
    assert got == [0, 0, 3, 3, 9, -1]

    msgs = consume(broker.bootstrap, topic, [0], 10)
    for i, m in enumerate(msgs):
        assert m.offset() == i
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, base + i * 1000)


def test_offsets_for_times_across_batches(broker):
    """Timestamps spread over many separately produced batches (the time index has to be used
    or scanned across batches, not only inside one)."""
    topic = unique("bytime-batches")
    create_topic(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 3_600_000
    for b in range(20):
        produce_ok(broker.bootstrap, topic,
                   [{"partition": 0, "value": b"x" * 200, "timestamp": base + (b * 50 + i) * 10}
                    for i in range(50)], linger_ms=0)
    assert watermarks(broker.bootstrap, topic) == (0, 1000)
    targets = [base + k * 10 for k in (0, 1, 49, 50, 51, 499, 500, 777, 999)] + [base + 777 * 10 - 5]
    assert _offsets_for_times(broker.bootstrap, topic, targets) == [0, 1, 49, 50, 51, 499, 500, 777, 999, 777]


def test_list_offsets_admin_specs(broker):
    """AdminClient.list_offsets: earliest, latest, max timestamp (the offset of the record with
    the largest timestamp, here in the middle of the log) and for_timestamp."""
    topic = unique("maxts")
    create_topic(broker.bootstrap, topic)
    now = int(time.time() * 1000)
    stamps = [now - 50_000, now - 40_000, now - 1_000, now - 30_000, now - 20_000]
    produce_ok(broker.bootstrap, topic,
               [{"partition": 0, "value": f"m{i}".encode(), "timestamp": ts} for i, ts in enumerate(stamps)],
               linger_ms=0)
    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    specs = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest(),
             "max": OffsetSpec.max_timestamp(), "t": OffsetSpec.for_timestamp(now - 45_000)}
    out = {}
    for name, spec in specs.items():
        out[name] = a.list_offsets({tp: spec}, request_timeout=15)[tp].result(timeout=20)
    assert out["earliest"].offset == 0
    assert out["latest"].offset == 5
    assert (out["max"].offset, out["max"].timestamp) == (2, now - 1_000)
    assert (out["t"].offset, out["t"].timestamp) == (1, now - 40_000)


def test_log_append_time_topic(broker):
    topic = unique("lat")
    create_topic(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    delivered = produce_ok(broker.bootstrap, topic,
                           [{"partition": 0, "value": f"l{i}".encode(), "timestamp": 1_000_000 + i}
                            for i in range(5)], linger_ms=0)
    after = int(time.time() * 1000)
    for m in delivered:
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, "produce response must carry log_append_time"
        assert before - 1000 <= ts <= after + 1000, (ts, before, after)
    msgs = consume(broker.bootstrap, topic, [0], 5)
    for i, m in enumerate(msgs):
        ts_type, ts = m.timestamp()
        assert (m.offset(), m.value()) == (i, f"l{i}".encode())
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME
        assert before - 1000 <= ts <= after + 1000, (ts, before, after)
        assert ts != 1_000_000 + i


def test_delete_records_moves_log_start(broker):
    topic = unique("delrec")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_ok(broker.bootstrap, topic, [{"partition": i % 2, "value": f"d{i}".encode()} for i in range(40)])
    assert watermarks(broker.bootstrap, topic, 0) == (0, 20)
    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0, 7)
    res = a.delete_records([tp], request_timeout=15)
    (only,) = res.values()
    assert only.result(timeout=20).low_watermark == 7
    assert watermarks(broker.bootstrap, topic, 0) == (7, 20)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 20), "other partition untouched"

    msgs = consume(broker.bootstrap, topic, [0], 13)
    assert [(m.offset(), m.value()) for m in msgs] == [(i, f"d{2 * i}".encode()) for i in range(7, 20)]

    # Deleting below the current start offset is a no-op that reports the current start.
    res = a.delete_records([TopicPartition(topic, 0, 3)], request_timeout=15)
    assert list(res.values())[0].result(timeout=20).low_watermark == 7

    # Beyond the high watermark: OFFSET_OUT_OF_RANGE (1).
    res = a.delete_records([TopicPartition(topic, 0, 21)], request_timeout=15)
    with pytest.raises(Exception) as ei:
        list(res.values())[0].result(timeout=20)
    assert kafka_error_code(ei.value) == 1
    assert watermarks(broker.bootstrap, topic, 0) == (7, 20)

    # -1 (OFFSET_END) deletes everything up to the high watermark.
    res = a.delete_records([TopicPartition(topic, 1, -1)], request_timeout=15)
    assert list(res.values())[0].result(timeout=20).low_watermark == 20
    assert watermarks(broker.bootstrap, topic, 1) == (20, 20)

    # Producing after DeleteRecords continues at the high watermark.
    d = produce_ok(broker.bootstrap, topic, [{"partition": 1, "value": b"after"}])
    assert d[0].offset() == 20
    msgs = consume(broker.bootstrap, topic, [1], 1, start=OFFSET_BEGINNING)
    assert (msgs[0].offset(), msgs[0].value()) == (20, b"after")
