"""Per-record produce errors (KIP-467, issue 20 item 1) against the real broker: a batch with some
invalid records (keyless records on a compacted topic, record timestamps outside
message.timestamp.before/after.max.ms) is refused whole, as Kafka's LogValidator refuses it, and
the Produce response (v8+) names each offending record in `record_errors` (batch_index and
message) with Kafka's `error_message`; Produce v7 gets the plain error code. Checked with raw
frames (v7, v8), kafka-python (Produce v9, whose futures carry the per-record messages) and
confluent-kafka: librdkafka fails the named records and their valid neighbours with different
codes (its per-record message, kept for `rd_kafka_message_produce_errstr`, is not surfaced by
the Python delivery reports)."""

from __future__ import annotations

import struct
import time

from confluent_kafka import KafkaError
from kafka import KafkaProducer

import wire
from helpers import create_topic, produce_all, producer, unique, watermarks

INVALID_TIMESTAMP = 32
INVALID_RECORD = 87
KEYLESS = "Compacted topic cannot accept message without key"


def batch(records: list[tuple[bytes | None, bytes | None, int]], base_ts: int) -> bytes:
    """An uncompressed v2 batch of (key, value, timestamp delta) records."""
    recs = b"".join(wire.record(i, ts, k, v) for i, (k, v, ts) in enumerate(records))
    n = len(records)
    after_crc = (wire.i16(0) + wire.i32(n - 1) + wire.i64(base_ts)
                 + wire.i64(base_ts + max(ts for _, _, ts in records))
                 + wire.i64(-1) + wire.i16(-1) + wire.i32(-1) + wire.i32(n) + recs)
    after_length = wire.i32(-1) + wire.i8(2) + struct.pack(">I", wire.crc32c(after_crc)) + after_crc
    return wire.i64(0) + wire.i32(len(after_length)) + after_length


def produce(broker, version: int, topic: str, payload: bytes) -> dict:
    """Produce v3..v8 (non-flexible; the request body is the same) of one batch to partition 0;
    returns the partition's response fields, asserting the response has exactly the fields of
    its version."""
    body = (wire.string(None) + wire.i16(-1) + wire.i32(10_000)
            + wire.array([wire.string(topic) + wire.array([wire.i32(0) + wire.nbytes(payload)])]))
    req = wire.frame(wire.request_header_v1(0, version, 7) + body)
    corr, resp = wire.roundtrip(broker.bootstrap, req, timeout=30)
    assert corr == 7
    r = wire.Reader(resp)
    out = None
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            p = {"partition": r.i32(), "error_code": r.i16(), "base_offset": r.i64(),
                 "log_append_time": r.i64()}
            if version >= 5:
                p["log_start_offset"] = r.i64()
            if version >= 8:
                p["record_errors"] = [(r.i32(), r.string()) for _ in range(r.i32())]
                p["error_message"] = r.string()
            if name == topic:
                out = p
    r.i32()  # throttle_time_ms
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in Produce v{version} response"
    assert out is not None
    return out


def test_keyless_records_on_a_compacted_topic_are_each_named(broker):
    topic = unique("kip467-keys")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    now = int(time.time() * 1000)
    payload = batch([(b"a", b"1", 0), (None, b"2", 0), (b"c", b"3", 0), (None, b"4", 0), (b"e", b"5", 0)], now)
    p = produce(broker, 8, topic, payload)
    assert p["error_code"] == INVALID_RECORD, p
    assert p["record_errors"] == [(1, KEYLESS), (3, KEYLESS)], p
    assert p["error_message"] == (
        "One or more records have been rejected due to 2 record errors in total, and only showing the "
        f"first three errors at most: [RecordError(batchIndex=1, message='{KEYLESS}'), "
        f"RecordError(batchIndex=3, message='{KEYLESS}')]"), p
    assert p["base_offset"] == -1
    # Older versions have neither field: the plain error code.
    old = produce(broker, 7, topic, payload)
    assert old["error_code"] == INVALID_RECORD and "record_errors" not in old, old
    # Kafka still refuses the whole batch: nothing was appended.
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    ok = produce(broker, 8, topic, batch([(b"a", b"1", 0)], now))
    assert ok["error_code"] == 0 and ok["record_errors"] == [] and ok["error_message"] is None, ok


def test_out_of_range_timestamps_are_invalid_timestamp_with_record_errors(broker):
    topic = unique("kip467-ts")
    create_topic(broker.bootstrap, topic, config={"message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    hour = 3_600_000
    p = produce(broker, 8, topic, batch([(b"a", b"1", 0), (b"b", b"2", 0), (b"c", b"3", hour)], now))
    assert p["error_code"] == INVALID_TIMESTAMP, p
    assert [i for i, _ in p["record_errors"]] == [2], p
    message = p["record_errors"][0][1]
    assert message.startswith(f"Timestamp {now + hour} of message with offset 2 is out of range."), message
    assert p["error_message"] == "One or more records have been rejected due to invalid timestamp", p
    # A keyless record next to a bad timestamp on a compacted topic: both named, and the code is
    # INVALID_TIMESTAMP (Kafka's processRecordErrors).
    compacted = unique("kip467-both")
    create_topic(broker.bootstrap, compacted, config={"cleanup.policy": "compact",
                                                      "message.timestamp.after.max.ms": "60000"})
    p = produce(broker, 8, compacted, batch([(None, b"1", 0), (b"b", b"2", hour)], now))
    assert p["error_code"] == INVALID_TIMESTAMP, p
    assert [i for i, _ in p["record_errors"]] == [0, 1] and p["record_errors"][0][1] == KEYLESS, p
    assert produce(broker, 7, topic, batch([(b"c", b"3", hour)], now))["error_code"] == INVALID_TIMESTAMP
    assert watermarks(broker.bootstrap, topic) == (0, 0)


def test_kafka_python_futures_carry_the_record_errors(broker):
    """kafka-python (Produce v9, flexible) fails the named record with its own message and the
    rest of the batch with "part of a batch which had one or more invalid records"."""
    topic = unique("kip467-kp")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=500, retries=0,
                      batch_size=1 << 20)
    try:
        futures = [p.send(topic, key=None if i == 2 else b"k%d" % i, value=b"v", partition=0)
                   for i in range(4)]
        p.flush(timeout=30)
        errors = [f.exception for f in futures]
    finally:
        p.close(timeout=10)
    assert all(e is not None for e in errors), errors
    assert KEYLESS in str(errors[2]), errors[2]
    for i in (0, 1, 3):
        assert "part of a batch which had one more more invalid records" in str(errors[i]), errors[i]
    assert watermarks(broker.bootstrap, topic) == (0, 0)


def test_confluent_kafka_tells_the_named_records_from_their_neighbours(broker):
    """A librdkafka batch of three records, the last two an hour ahead: librdkafka fails each
    named record with INVALID_RECORD (more than one record error) and the first, valid one with
    _INVALID_DIFFERENT_RECORD ("an invalid record in the same batch caused the failure")."""
    # librdkafka decides the batching: on a loaded machine it may send the first record alone
    # (then it is simply accepted). The broker's answer to one batch of all three is what is
    # tested, so a split send is tried again on a fresh topic (a few times at most).
    for _attempt in range(5):
        topic = unique("kip467-ck")
        create_topic(broker.bootstrap, topic, config={"message.timestamp.after.max.ms": "60000"})
        now = int(time.time() * 1000)
        p = producer(broker.bootstrap, linger_ms=500, retries=0, compression_type="zstd")
        d = produce_all(p, topic, [{"value": b"v%d" % i, "partition": 0,
                                    "timestamp": now + (3_600_000 if i > 0 else 0)} for i in range(3)])
        if not d.ok:
            break
    assert not d.ok, d.ok
    codes = {m.value(): e.code() for e, m in d.errors}
    assert codes == {b"v0": KafkaError._INVALID_DIFFERENT_RECORD, b"v1": KafkaError.INVALID_RECORD,
                     b"v2": KafkaError.INVALID_RECORD}, d.errors
    assert watermarks(broker.bootstrap, topic) == (0, 0)
