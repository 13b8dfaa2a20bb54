"""Hardening of record handling (issue 19, defects 4, 5 and the ListOffsets half of 10), against
the real broker process: decompression bombs (hand-made gzip frames and a real confluent-kafka
zstd producer) are refused with MESSAGE_TOO_LARGE while the broker's peak RSS (VmHWM in
/proc/<pid>/status) stays bounded; produce validation as Kafka's LogValidator (a gzip stream that
is corrupt under a valid CRC is CORRUPT_MESSAGE; a record count, last offset delta or offset
deltas that disagree with the records, and control batches from clients, are INVALID_RECORD;
timestamps outside message.timestamp.before/after.max.ms are INVALID_TIMESTAMP);
and ListOffsets by timestamp over a malformed stored batch (a corrupt stream or a bomb, planted in
the segment file while the broker is stopped) answers CORRUPT_MESSAGE with bounded memory."""

from __future__ import annotations

import struct
import time
import zlib

import pytest
from confluent_kafka import KafkaError

import wire
from helpers import create_topic, produce_ok, producer, produce_all, unique, watermarks

CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
INVALID_RECORD = 87
# A bomb decompresses to this; the broker's cap at the default max.message.bytes is 64 MiB.
BOMB_BYTES = 256 << 20
# Peak RSS the broker may gain while refusing a bomb (it streams through a 64 KiB window).
RSS_SLACK = 100 << 20


def vm_hwm(broker) -> int:
    """Peak resident set size of the broker process, in bytes."""
    for line in open(f"/proc/{broker.proc.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def gzip_member(raw: bytes, comment: int = 0) -> bytes:
    """One gzip member of `raw` (deflate level 9), its header padded by a `comment`-byte
    FCOMMENT field."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(raw) + c.flush()
    head = b"\x1f\x8b\x08" + bytes([0x10 if comment else 0]) + b"\x00\x00\x00\x00\x00\xff"
    if comment:
        head += b"c" * (comment - 1) + b"\x00"
    return head + body + struct.pack("<II", zlib.crc32(raw) & 0xFFFFFFFF, len(raw) & 0xFFFFFFFF)


def gzip_stream(raw: bytes, length: int | None = None) -> bytes:
    """A gzip stream of `raw`. With `length`, padded to exactly that many bytes with empty
    members (20 bytes each; gzip readers, Kafka's too, read concatenated members), so a valid
    batch can be made the same size as a bomb."""
    out = gzip_member(raw)
    if length is None:
        return out
    pad = length - len(out)
    assert pad >= 0
    if pad < 20:
        out = gzip_member(raw, pad)
    else:
        out += gzip_member(b"", pad % 20) + gzip_member(b"") * (pad // 20 - 1)
    assert len(out) == length, (len(out), length)
    return out


def gzip_bomb_body(n: int) -> bytes:
    """Raw record bytes of one record with an `n`-byte value of zeros, gzip-compressed without
    ever holding the n bytes in memory."""
    value_len = wire.varint(n)
    body = b"\x00" + wire.varint(0) + wire.varint(0) + wire.varint(1) + b"k" + value_len
    total = len(body) + n + 1  # + header count
    prefix = wire.varint(total) + body
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = zlib.crc32(prefix)
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", c.compress(prefix)]
    chunk = bytes(1 << 20)
    for _ in range(n >> 20):
        out.append(c.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    tail = wire.varint(0)
    out.append(c.compress(tail))
    crc = zlib.crc32(tail, crc)
    out.append(c.flush())
    size = len(prefix) + n + len(tail)
    out.append(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    return b"".join(out)


def batch(records_section: bytes, count: int, last_offset_delta: int, ts: int, attributes: int = 0) -> bytes:
    """A v2 batch around an already encoded (and maybe compressed) records section; its max
    timestamp is that of records() (record i at ts + i)."""
    after_crc = (wire.i16(attributes) + wire.i32(last_offset_delta) + wire.i64(ts)
                 + wire.i64(ts + max(0, min(last_offset_delta, count - 1)))
                 + wire.i64(-1) + wire.i16(-1) + wire.i32(-1) + wire.i32(count) + records_section)
    crc = wire.crc32c(after_crc)
    after_length = wire.i32(-1) + wire.i8(2) + struct.pack(">I", crc) + after_crc
    return wire.i64(0) + wire.i32(len(after_length)) + after_length


def records(n: int, key_prefix: bytes = b"k", offset_deltas=None) -> bytes:
    deltas = offset_deltas if offset_deltas is not None else range(n)
    return b"".join(wire.record(d, i, key_prefix + str(i).encode(), b"v" * 20) for i, d in enumerate(deltas))


def produce_raw(broker, topic: str, payload: bytes, corr: int = 1) -> int:
    c, body = wire.roundtrip(broker.bootstrap, wire.produce_v3_request(corr, topic, 0, payload), timeout=60)
    assert c == corr
    return wire.parse_produce_v3(body)[(topic, 0)][0]


def list_offsets(broker, topic: str, ts: int) -> tuple[int, int, int]:
    c, body = wire.roundtrip(broker.bootstrap, wire.list_offsets_v1_request(5, topic, 0, ts), timeout=60)
    assert c == 5
    return wire.parse_list_offsets_v1(body)[(topic, 0)]


@pytest.fixture(scope="module")
def broker(broker_factory):
    return broker_factory(name="records-broker")


def assert_still_serving(broker, topic_prefix="alive"):
    assert broker.alive()
    topic = unique(topic_prefix)
    d = produce_ok(broker.bootstrap, topic, [{"value": b"still here"}])
    assert d[0].offset() == 0


# -- defect 5: produce validation as Kafka's LogValidator --------------------------------------


def test_gzip_stream_corrupt_under_valid_crc_is_corrupt_message(broker):
    topic = unique("gz-corrupt")
    create_topic(broker.bootstrap, topic)
    ts = int(time.time() * 1000)
    good = gzip_stream(records(10))
    bad = bytearray(good)
    mid = len(bad) // 2
    bad[mid:mid + 6] = bytes(b ^ 0x5A for b in bad[mid:mid + 6])
    assert produce_raw(broker, topic, batch(bytes(bad), 10, 9, ts, attributes=1)) == CORRUPT_MESSAGE
    assert watermarks(broker.bootstrap, topic) == (0, 0), "a poison batch must not be appended"
    # The same batch with its stream intact is accepted and readable by a real consumer.
    assert produce_raw(broker, topic, batch(good, 10, 9, ts, attributes=1)) == 0
    assert watermarks(broker.bootstrap, topic) == (0, 10)


def test_record_count_that_disagrees_with_the_records_is_invalid_record(broker):
    topic = unique("count-lie")
    create_topic(broker.bootstrap, topic)
    ts = int(time.time() * 1000)
    # Two records under a header claiming 2^31 - 1 of them: would move the log end by 2^31.
    lie = batch(records(2), 2**31 - 1, 2**31 - 2, ts)
    assert len(lie) < 200
    assert produce_raw(broker, topic, lie) == INVALID_RECORD
    gz_lie = batch(gzip_stream(records(3)), 2, 1, ts, attributes=1)
    assert produce_raw(broker, topic, gz_lie) == INVALID_RECORD
    skipping = batch(records(3, offset_deltas=[0, 1, 7]), 3, 2, ts)
    assert produce_raw(broker, topic, skipping) == INVALID_RECORD
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    assert produce_raw(broker, topic, batch(records(3), 3, 2, ts)) == 0
    assert watermarks(broker.bootstrap, topic) == (0, 3)


def test_control_batch_from_a_client_is_invalid_record(broker):
    topic = unique("control")
    create_topic(broker.bootstrap, topic)
    ts = int(time.time() * 1000)
    # A fake transaction commit marker (key: version 0, type 1 = COMMIT), control bit 5, with
    # and without the transactional bit 4.
    marker = wire.record(0, 0, wire.i16(0) + wire.i16(1), wire.i16(0) + wire.i32(0))
    for attributes in (0x20, 0x20 | 0x10):
        assert produce_raw(broker, topic, batch(marker, 1, 0, ts, attributes)) == INVALID_RECORD
    assert watermarks(broker.bootstrap, topic) == (0, 0)


def test_timestamps_outside_message_timestamp_bounds_are_invalid_timestamp(broker):
    topic = unique("ts-bounds")
    create_topic(broker.bootstrap, topic, config={"message.timestamp.after.max.ms": "60000",
                                                  "message.timestamp.before.max.ms": "86400000"})
    now = int(time.time() * 1000)
    p = producer(broker.bootstrap, compression_type="lz4", retries=0)
    # One bad record per batch: the batch's only record error carries the partition's code.
    for ts in (now + 3_600_000, now - 2 * 86_400_000):
        d = produce_all(p, topic, [{"value": b"bad", "timestamp": ts}])
        assert [e.code() for e, _ in d.errors] == [KafkaError.INVALID_TIMESTAMP], d.errors
    # Two in one batch: the partition answers INVALID_TIMESTAMP with two record errors, and
    # librdkafka (as the Java client) reports each as INVALID_RECORD.
    d = produce_all(p, topic, [{"value": b"future", "timestamp": now + 3_600_000},
                               {"value": b"ancient", "timestamp": now - 2 * 86_400_000}])
    assert [e.code() for e, _ in d.errors] == [KafkaError.INVALID_RECORD] * 2, d.errors
    d = produce_all(p, topic, [{"value": b"now", "timestamp": now}])
    assert not d.errors and watermarks(broker.bootstrap, topic) == (0, 1)


# -- defect 4: decompression bombs --------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb_body() -> bytes:
    body = gzip_bomb_body(BOMB_BYTES)
    assert len(body) < 400_000, len(body)
    return body


def test_gzip_bomb_to_a_compacted_topic_is_refused_with_bounded_memory(broker, bomb_body):
    topic = unique("bomb-compact")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    before = vm_hwm(broker)
    err = produce_raw(broker, topic, batch(bomb_body, 1, 0, int(time.time() * 1000), attributes=1))
    grown = vm_hwm(broker) - before
    assert err == MESSAGE_TOO_LARGE, err
    assert grown < RSS_SLACK, f"peak RSS grew by {grown >> 20} MiB"
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    assert_still_serving(broker)


def test_zstd_bomb_from_a_real_client_is_refused(broker):
    """confluent-kafka compresses one 96 MiB record of zeros to a few KiB of zstd: the batch is
    far below max.message.bytes but decompresses past the 64 MiB cap."""
    topic = unique("bomb-client")
    create_topic(broker.bootstrap, topic)
    before = vm_hwm(broker)
    p = producer(broker.bootstrap, compression_type="zstd", message_max_bytes=200_000_000,
                 message_timeout_ms=60000, retries=0)
    d = produce_all(p, topic, [{"value": bytes(96 << 20)}], timeout=90)
    grown = vm_hwm(broker) - before
    assert not d.ok, "the bomb was accepted"
    assert [e.code() for e, _ in d.errors] == [KafkaError.MSG_SIZE_TOO_LARGE], d.errors
    assert grown < RSS_SLACK, f"peak RSS grew by {grown >> 20} MiB"
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    assert_still_serving(broker)


# -- defects 4 and 10: stored batches that cannot be read ------------------------------------------


def plant(broker, topic: str, good: bytes, bad: bytes) -> None:
    """Stops the broker, swaps the stored bytes of `good` (same length) for `bad` in the
    partition's first segment, and starts it again."""
    assert len(good) == len(bad)
    broker.stop()
    seg = broker.data_dir / f"{topic}-0" / "00000000000000000000.log"
    data = seg.read_bytes()
    # Stored batches differ from the produced ones in base offset and leader epoch only (bytes
    # 0-15, outside the CRC): keep those, take the CRC and the rest from `bad`.
    at = data.find(good[21:])
    assert at == 21, f"batch not found at the start of {seg} ({at})"
    seg.write_bytes(data[:17] + bad[17:] + data[len(bad):])
    broker.start()


def test_list_offsets_over_a_corrupt_stored_batch_is_corrupt_message(broker_factory):
    b = broker_factory(name="records-stored-corrupt")
    topic = unique("stored-corrupt")
    create_topic(b.bootstrap, topic)
    ts = int(time.time() * 1000)
    body = gzip_stream(records(10))
    good = batch(body, 10, 9, ts, attributes=1)
    assert produce_raw(b, topic, good) == 0
    assert list_offsets(b, topic, ts + 5)[0] == 0
    bad_body = bytearray(body)
    bad_body[12:18] = bytes(x ^ 0x5A for x in bad_body[12:18])
    plant(b, topic, good, batch(bytes(bad_body), 10, 9, ts, attributes=1))
    err, _, _ = list_offsets(b, topic, ts + 9)
    assert err == CORRUPT_MESSAGE, err
    assert b.alive()


def test_list_offsets_over_a_stored_bomb_is_corrupt_message_with_bounded_memory(broker_factory, bomb_body):
    b = broker_factory(name="records-stored-bomb")
    topic = unique("stored-bomb")
    create_topic(b.bootstrap, topic, config={"max.message.bytes": str(4 << 20)})
    ts = int(time.time() * 1000)
    # A valid batch of exactly the bomb's length.
    body = gzip_stream(records(3), length=len(bomb_body))
    good = batch(body, 3, 2, ts, attributes=1)
    assert produce_raw(b, topic, good) == 0
    plant(b, topic, good, batch(bomb_body, 3, 2, ts, attributes=1))
    before = vm_hwm(b)
    err, _, _ = list_offsets(b, topic, ts)
    grown = vm_hwm(b) - before
    assert err == CORRUPT_MESSAGE, err
    assert grown < RSS_SLACK, f"peak RSS grew by {grown >> 20} MiB"
    assert b.alive()
