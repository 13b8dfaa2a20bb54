"""Retention really deletes: with small segments and a 1 s retention check interval, retention.ms
and retention.bytes remove whole closed segments from disk (<data-dir>/<topic>-<partition>/*.log),
advance the log start offset (low watermark), and the remaining records are still readable."""

import time
from pathlib import Path

import pytest

from helpers import consume, create_topic, produce_ok, unique, wait_until, watermarks

SEGMENT_BYTES = 16384


@pytest.fixture(scope="module")
def broker(broker_factory):
    return broker_factory(["--set", "storage.retention_check_interval=1s"], name="retention-broker")


def partition_dir(broker, topic: str, partition: int = 0) -> Path:
    d = broker.data_dir / f"{topic}-{partition}"
    if d.is_dir():
        return d
    found = [p for p in broker.data_dir.rglob(f"{topic}-{partition}") if p.is_dir()]
    assert found, (f"no directory {topic}-{partition} under {broker.data_dir}; contents: "
                   f"{sorted(str(p.relative_to(broker.data_dir)) for p in broker.data_dir.rglob('*'))[:50]}")
    return found[0]


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.log"))


def _produce_segments(broker, topic, n_records=240, value_size=1000):
    # Small producer batches so that segments roll by size: ~4 records per batch. One request in
    # flight so that offsets follow send order regardless of pipelining (tested elsewhere).
    for start in range(0, n_records, 40):
        produce_ok(broker.bootstrap, topic,
                   [{"partition": 0, "value": (f"{i:06d}".encode() + b"r" * value_size)}
                    for i in range(start, start + 40)],
                   linger_ms=0, batch_size=4096, max_in_flight=1)


def _check_readable_from_start(broker, topic, low, high):
    msgs = consume(broker.bootstrap, topic, [0], high - low)
    assert [m.offset() for m in msgs] == list(range(low, high))
    assert [int(m.value()[:6]) for m in msgs] == list(range(low, high))


def test_retention_ms_deletes_old_segments(broker):
    topic = unique("ret-ms")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": str(SEGMENT_BYTES),
                                                  "retention.ms": "1000"})
    _produce_segments(broker, topic)
    d = partition_dir(broker, topic)
    first_segment = d / f"{0:020d}.log"
    # Rolls by size happened (some segments may already be gone again, retention is 1 s).
    def state():
        low, high = watermarks(broker.bootstrap, topic)
        return low > 0 and not first_segment.exists() and (low, high)
    low, high = wait_until(state, 30, f"log start offset > 0 and {first_segment.name} deleted")
    assert high == 240
    remaining = segments(d)
    assert remaining, "the active segment must stay"
    bases = [int(p.stem) for p in remaining]
    assert min(bases) == low, f"log start offset {low} != base of oldest remaining segment {bases}"
    # Everything expired except the active segment: at most 2 segment files left (one may be
    # rolling), and far fewer than the ~15 that 240 KB in 16 KB segments makes.
    wait_until(lambda: len(segments(d)) <= 2, 30, f"old segments deleted, left: {segments(d)}")
    low, high = watermarks(broker.bootstrap, topic)
    _check_readable_from_start(broker, topic, low, high)

    # Producing continues at the end.
    d2 = produce_ok(broker.bootstrap, topic, [{"partition": 0, "value": b"999999-after"}])
    assert d2[0].offset() == 240


def test_retention_bytes_deletes_oldest_segments(broker):
    topic = unique("ret-bytes")
    retention_bytes = 3 * SEGMENT_BYTES
    create_topic(broker.bootstrap, topic, config={"segment.bytes": str(SEGMENT_BYTES),
                                                  "retention.bytes": str(retention_bytes)})
    _produce_segments(broker, topic)
    d = partition_dir(broker, topic)

    def state():
        low, high = watermarks(broker.bootstrap, topic)
        total = sum(p.stat().st_size for p in segments(d))
        return low > 0 and total <= retention_bytes + 2 * SEGMENT_BYTES and (low, high, total)
    low, high, total = wait_until(state, 30, "retention.bytes enforced")
    assert high == 240
    # Kafka's rule: a segment is deleted only while the log stays >= retention.bytes without it,
    # so what is left is still at least retention.bytes minus one segment's worth of records.
    assert total >= retention_bytes - SEGMENT_BYTES - 4096, f"deleted too much: {total} bytes left"
    assert (d / f"{0:020d}.log").exists() is False
    assert min(int(p.stem) for p in segments(d)) == low
    _check_readable_from_start(broker, topic, low, high)


def test_no_retention_keeps_everything(broker):
    """Control: the same load with default retention (7 days) deletes nothing."""
    topic = unique("ret-none")
    create_topic(broker.bootstrap, topic, config={"segment.bytes": str(SEGMENT_BYTES)})
    _produce_segments(broker, topic)
    d = partition_dir(broker, topic)
    n_segments = len(segments(d))
    assert n_segments >= 5, f"expected several {SEGMENT_BYTES}-byte segments, found {n_segments}"
    time.sleep(2.5)  # two and a half retention check intervals: nothing may change
    assert len(segments(d)) == n_segments
    assert watermarks(broker.bootstrap, topic) == (0, 240)
    assert (d / f"{0:020d}.log").exists()
