"""Bad input written byte by byte over a raw socket (no Kafka library: see wire.py), each answered
as specified and the broker still serving afterwards: a garbage frame and a frame over
network.max_request_size (connection closed), an unknown API key and too-new versions
(ApiVersions v99 -> UNSUPPORTED_VERSION encoded as v0; Metadata v99 -> closed or an error), and a
Produce v3 whose record batch has a wrong CRC (CORRUPT_MESSAGE) next to the same batch intact
(accepted and readable, which proves the hand-made encoding is right)."""

import random
import time

import pytest

import wire
from helpers import admin, consume, create_topic, produce_ok, unique, watermarks


@pytest.fixture(scope="module")
def broker(broker_factory):
    return broker_factory(["--set", "network.max_request_size=1MiB"], name="badinput-broker")


def assert_serving(broker):
    """A fresh raw ApiVersions v0 and a real client round trip both still work."""
    corr, body = wire.roundtrip(broker.bootstrap, wire.api_versions_v0_request(4242))
    assert corr == 4242
    err, keys = wire.parse_api_versions_v0(body)
    assert err == 0 and 18 in keys
    topic = unique("still-serving")
    d = produce_ok(broker.bootstrap, topic, [{"value": b"alive"}])
    assert d[0].offset() == 0
    assert broker.alive()


def test_api_versions_v0(broker):
    corr, body = wire.roundtrip(broker.bootstrap, wire.api_versions_v0_request(7))
    assert corr == 7
    err, keys = wire.parse_api_versions_v0(body)
    assert err == 0
    assert keys[18] == (0, 4)
    for key in (0, 1, 2, 3, 19, 20, 21, 32, 33, 37, 44, 60):
        assert key in keys, f"api key {key} not advertised"
        lo, hi = keys[key]
        assert 0 <= lo <= hi, (key, lo, hi)
    # Versions the raw tests below rely on.
    assert keys[0][0] <= 3 <= keys[0][1], f"Produce v3 not advertised: {keys[0]}"
    assert keys[1][0] <= 4 <= keys[1][1], f"Fetch v4 not advertised: {keys[1]}"


def test_api_versions_too_new_answers_v0_unsupported(broker):
    req = wire.frame(wire.request_header_v2(18, 99, 31)
                     + wire.string("fjord-test") + wire.string("1.0") + wire.uvarint(0))
    with wire.connect(broker.bootstrap) as s:
        s.sendall(req)
        corr, body = wire.read_response(s)
        assert corr == 31
        err, keys = wire.parse_api_versions_v0(body)
        assert err == 35, f"expected UNSUPPORTED_VERSION (35), got {err}"
        assert keys.get(18) == (0, 4), f"ApiVersions range must be in the fallback reply: {keys}"
        # The client then retries on the same connection at a version it shares.
        s.sendall(wire.api_versions_v0_request(32))
        corr, body = wire.read_response(s)
        assert corr == 32 and wire.parse_api_versions_v0(body)[0] == 0
    assert_serving(broker)


def _closed_or_answered(broker, request: bytes, corr: int) -> str:
    with wire.connect(broker.bootstrap) as s:
        s.sendall(request)
        s.settimeout(10)
        try:
            got_corr, _body = wire.read_response(s)
        except wire.ConnectionClosed:
            return "closed"
        except TimeoutError:
            raise AssertionError("no response and connection not closed within 10 s")
        assert got_corr == corr, f"response with correlation id {got_corr}, sent {corr}"
        return "answered"


def test_unknown_api_key(broker):
    how = _closed_or_answered(broker, wire.frame(wire.request_header_v1(9999, 0, 41)), 41)
    assert how in ("closed", "answered")
    assert_serving(broker)


def test_metadata_too_new_version(broker):
    req = wire.frame(wire.request_header_v2(3, 99, 51) + wire.i32(-1) + wire.uvarint(0))
    how = _closed_or_answered(broker, req, 51)
    assert how in ("closed", "answered")
    assert_serving(broker)


def test_garbage_frame_closes_connection(broker):
    rng = random.Random(1234)
    junk = b"\xde\xad\xbe\xef" + bytes(rng.randrange(256) for _ in range(96))
    with wire.connect(broker.bootstrap) as s:
        s.sendall(wire.frame(junk))
        wire.wait_closed(s, 10)
    assert_serving(broker)


def test_truncated_header_closes_connection(broker):
    """A frame too short to hold a request header (3 bytes)."""
    with wire.connect(broker.bootstrap) as s:
        s.sendall(wire.i32(3) + b"\x00\x12\x00")
        wire.wait_closed(s, 10)
    assert_serving(broker)


def test_negative_size_closes_connection(broker):
    with wire.connect(broker.bootstrap) as s:
        s.sendall(wire.i32(-5) + b"\x00" * 16)
        wire.wait_closed(s, 10)
    assert_serving(broker)


def test_oversized_frame_closes_connection(broker):
    """network.max_request_size=1MiB: a 2 MiB size prefix is refused before the body arrives."""
    with wire.connect(broker.bootstrap) as s:
        s.sendall(wire.i32(2 * 1024 * 1024) + wire.request_header_v1(18, 0, 61) + b"\x00" * 1024)
        t0 = time.monotonic()
        wire.wait_closed(s, 10)
        assert time.monotonic() - t0 < 10
    assert_serving(broker)


def test_frame_just_under_limit_is_processed(broker):
    """Control for the test above: a valid request (ApiVersions v0 padded with trailing bytes is
    not valid, so use a ~900 KiB Produce) below the limit is answered."""
    topic = unique("underlimit")
    create_topic(broker.bootstrap, topic)
    batch = wire.record_batch([(None, b"x" * 900_000)], int(time.time() * 1000))
    corr, body = wire.roundtrip(broker.bootstrap, wire.produce_v3_request(71, topic, 0, batch), timeout=30)
    assert corr == 71
    err, base, _ = wire.parse_produce_v3(body)[(topic, 0)]
    assert (err, base) == (0, 0)


def test_produce_wrong_crc_is_corrupt_message(broker):
    topic = unique("crc")
    create_topic(broker.bootstrap, topic)
    ts = int(time.time() * 1000)
    records = [(b"key-0", b"value-0"), (None, b"value-1"), (b"key-2", None)]
    good = wire.record_batch(records, ts)
    bad = bytearray(good)
    bad[-3] ^= 0x01  # inside the last record, covered by the CRC
    bad = bytes(bad)

    corr, body = wire.roundtrip(broker.bootstrap, wire.produce_v3_request(81, topic, 0, bad))
    assert corr == 81
    err, _base, _ = wire.parse_produce_v3(body)[(topic, 0)]
    assert err == 2, f"expected CORRUPT_MESSAGE (2), got {err}"
    assert watermarks(broker.bootstrap, topic) == (0, 0), "a corrupt batch must not be appended"

    # Same connection semantics aside, the same batch with its CRC intact is accepted.
    corr, body = wire.roundtrip(broker.bootstrap, wire.produce_v3_request(82, topic, 0, good))
    err, base, log_append_time = wire.parse_produce_v3(body)[(topic, 0)]
    assert (corr, err, base, log_append_time) == (82, 0, 0, -1)
    assert watermarks(broker.bootstrap, topic) == (0, 3)
    msgs = consume(broker.bootstrap, topic, [0], 3)
    assert [(m.offset(), m.key(), m.value(), m.timestamp()[1]) for m in msgs] == \
        [(0, b"key-0", b"value-0", ts), (1, None, b"value-1", ts + 1), (2, b"key-2", None, ts + 2)]
    assert_serving(broker)


def test_produce_bad_batch_framing(broker):
    """Batches that are malformed rather than mis-checksummed: magic 1, and a batch length that
    runs past the end of the records field. Either CORRUPT_MESSAGE (2) or INVALID_RECORD (87),
    nothing appended."""
    topic = unique("badbatch")
    create_topic(broker.bootstrap, topic)
    good = wire.record_batch([(b"k", b"v")], int(time.time() * 1000))
    magic1 = bytearray(good)
    magic1[16] = 1
    too_long = bytearray(good)
    too_long[8:12] = wire.i32(len(good) + 100)
    for i, batch in enumerate((bytes(magic1), bytes(too_long))):
        corr, body = wire.roundtrip(broker.bootstrap, wire.produce_v3_request(90 + i, topic, 0, batch))
        err, _base, _ = wire.parse_produce_v3(body)[(topic, 0)]
        assert err in (2, 87), f"batch {i}: error {err}"
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    assert_serving(broker)


def test_pipelined_requests_answered_in_order(broker):
    """Many requests written at once on one connection are answered in request order, and the
    produces among them are appended in request order."""
    topic = unique("pipeline")
    create_topic(broker.bootstrap, topic)
    ts = int(time.time() * 1000)
    reqs = []
    n = 40
    for i in range(n):
        if i % 4 == 3:
            reqs.append(wire.api_versions_v0_request(100 + i))
        else:
            value = b"%04d" % i + b"q" * 3000
            reqs.append(wire.produce_v3_request(100 + i, topic, 0, wire.record_batch([(None, value)], ts)))
    produce_idx = [i for i in range(n) if i % 4 != 3]
    with wire.connect(broker.bootstrap) as s:
        s.sendall(b"".join(reqs))
        corrs = []
        bases = {}
        for _ in range(n):
            corr, body = wire.read_response(s)
            corrs.append(corr)
            i = corr - 100
            if i % 4 != 3:
                err, base, _ = wire.parse_produce_v3(body)[(topic, 0)]
                assert err == 0
                bases[i] = base
    assert corrs == [100 + i for i in range(n)], "responses out of request order"
    assert [bases[i] for i in produce_idx] == list(range(len(produce_idx))), \
        f"produce requests appended out of request order: {[(i, bases[i]) for i in produce_idx]}"
    msgs = consume(broker.bootstrap, topic, [0], len(produce_idx))
    assert [int(m.value()[:4]) for m in msgs] == produce_idx
