"""Idempotent producers against the real broker.

- confluent-kafka (librdkafka) and kafka-python with idempotence on, through a TCP proxy written
  here that cuts the connection instead of delivering every few Produce responses (the broker
  appended the batch, the client never heard and retries): every record lands exactly once and
  in order per partition, and the broker's duplicate counter shows the retries were caught;
- kill -9 of the broker while an idempotent producer is sending, then restart on the same data
  dir: the same producer carries on, nothing is lost or duplicated;
- the wire contract, byte by byte: InitProducerId ids stay unique across a kill -9, a
  transactional id gets its own id whose epoch the next call bumps, a retried batch gets its original offset, a gap gets OUT_OF_ORDER_SEQUENCE_NUMBER (45)
  and a stale epoch INVALID_PRODUCER_EPOCH (47).
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

import wire
from helpers import consume, create_topic, unique, wait_until, watermarks

# ---------------------------------------------------------------------------------------------
# A Kafka-aware TCP proxy that loses Produce responses


def _read_frame(sock: socket.socket) -> bytes | None:
    """One size-prefixed Kafka frame (prefix included), or None when the peer closed."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (size,) = struct.unpack(">i", head)
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(1 << 16, size - len(body)))
        if not chunk:
            return None
        body += chunk
    return head + bytes(body)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class ChaosProxy:
    """Forwards whole frames between clients and the broker. While `chaos` is set, every
    `drop_every`-th Produce response is not delivered: the proxy closes both sides instead, so
    the batch is in the log but the client sees a dropped connection with requests in flight.
    While `hold` is set, Produce responses are swallowed (the connection stays up)."""

    def __init__(self, drop_every: int = 4):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.target: tuple[str, int] | None = None
        self.drop_every = drop_every
        self.chaos = True
        self.hold = False
        self.produce_responses = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, upstream]
            pending: dict[int, int] = {}
            threading.Thread(target=self._requests, args=(client, upstream, pending), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, pending), daemon=True).start()

    def _requests(self, src, dst, pending) -> None:
        try:
            while (frame := _read_frame(src)) is not None:
                api_key, _version, correlation_id = struct.unpack_from(">hhi", frame, 4)
                pending[correlation_id] = api_key
                dst.sendall(frame)
        except OSError:
            pass
        _close(src, dst)

    def _responses(self, src, dst, pending) -> None:
        try:
            while (frame := _read_frame(src)) is not None:
                (correlation_id,) = struct.unpack_from(">i", frame, 4)
                if pending.pop(correlation_id, None) == 0:  # a Produce response
                    if self.hold:
                        continue
                    with self.lock:
                        self.produce_responses += 1
                        drop = self.chaos and self.produce_responses % self.drop_every == 0
                        self.dropped += drop
                    if drop:
                        break
                dst.sendall(frame)
        except OSError:
            pass
        _close(src, dst)

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            _close(*self.socks)


@pytest.fixture(scope="module")
def proxied(broker_factory):
    """(broker, proxy): a broker that advertises the proxy's address, so every client
    connection after the bootstrap goes through the proxy."""
    proxy = ChaosProxy()
    b = broker_factory(extra_args=["--advertised-listener", proxy.address], name="proxied")
    proxy.target = ("127.0.0.1", b.port)
    yield b, proxy
    proxy.close()


def duplicate_batches(broker) -> float:
    status, _, body = broker.http_get("/metrics")
    assert status == 200
    m = re.search(r"^fjord_produce_duplicate_batches_total (\S+)$", body, re.M)
    assert m, "duplicate-batch counter missing from /metrics"
    return float(m.group(1))


def assert_exactly_once_in_order(bootstrap: str, topic: str, partitions: int, total: int) -> None:
    """Each partition holds exactly the values sent to it, once each, in send order."""
    got = consume(bootstrap, topic, range(partitions), total, timeout=60)
    by_partition: dict[int, list[int]] = {p: [] for p in range(partitions)}
    for m in got:
        by_partition[m.partition()].append(int(m.value()))
    for p in range(partitions):
        expected = [i for i in range(total) if i % partitions == p]
        assert by_partition[p] == expected, (
            f"partition {p}: {len(by_partition[p])} records, first difference at "
            f"{next((k for k, (a, b) in enumerate(zip(by_partition[p], expected)) if a != b), None)}")
        low, high = watermarks(bootstrap, topic, p)
        assert (low, high) == (0, len(expected)), f"partition {p} watermarks {(low, high)}"


# ---------------------------------------------------------------------------------------------
# Third-party clients through the proxy


@pytest.mark.timeout(240)
def test_confluent_kafka_idempotent_producer_through_dropped_connections(proxied):
    broker, proxy = proxied
    topic = unique("idem-ck")
    partitions, total = 4, 4000
    create_topic(broker.bootstrap, topic, partitions=partitions)
    dups_before = duplicate_batches(broker)
    dropped_before = proxy.dropped
    errors: list[str] = []
    acked = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err.str())
        else:
            acked[0] += 1

    p = Producer({
        "bootstrap.servers": proxy.address,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 40,
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 120000,
        "retry.backoff.ms": 20,
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 100,
    })
    for i in range(total):
        while True:
            try:
                p.produce(topic, value=str(i).encode(), partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(180) == 0, "records left undelivered"
    assert errors == [], f"delivery errors: {errors[:5]}"
    assert acked[0] == total
    dropped, dups = proxy.dropped - dropped_before, duplicate_batches(broker) - dups_before
    print(f"confluent-kafka: {dropped} produce responses dropped, {dups:.0f} duplicate batches caught")
    assert dropped >= 5, "the proxy should have cut connections mid-request"
    assert dups > 0, "retried batches should have been recognised"
    proxy.chaos = False
    try:
        assert_exactly_once_in_order(broker.bootstrap, topic, partitions, total)
    finally:
        proxy.chaos = True


@pytest.mark.timeout(240)
def test_kafka_python_idempotent_producer_through_dropped_connections(proxied):
    broker, proxy = proxied
    topic = unique("idem-kpy")
    partitions, total = 2, 800
    create_topic(broker.bootstrap, topic, partitions=partitions)
    dups_before = duplicate_batches(broker)
    dropped_before = proxy.dropped
    # Small batches, so the records travel in many requests (and many responses get lost).
    producer = KafkaProducer(bootstrap_servers=proxy.address, enable_idempotence=True, acks="all",
                             linger_ms=0, batch_size=100, max_in_flight_requests_per_connection=5,
                             retries=1_000_000, retry_backoff_ms=20, reconnect_backoff_ms=10,
                             reconnect_backoff_max_ms=100, request_timeout_ms=15000,
                             delivery_timeout_ms=120000)
    try:
        futures = [producer.send(topic, value=str(i).encode(), partition=i % partitions)
                   for i in range(total)]
        producer.flush(timeout=180)
        metas = [f.get(timeout=60) for f in futures]
    finally:
        producer.close(timeout=10)
    assert len(metas) == total
    dropped, dups = proxy.dropped - dropped_before, duplicate_batches(broker) - dups_before
    print(f"kafka-python: {dropped} produce responses dropped, {dups:.0f} duplicate batches caught")
    assert dropped >= 5, "the proxy should have cut connections mid-request"
    assert dups > 0, "retried batches should have been recognised"
    proxy.chaos = False
    try:
        assert_exactly_once_in_order(broker.bootstrap, topic, partitions, total)
    finally:
        proxy.chaos = True
    # The offsets the client was told match the log: a retried batch got its original offsets.
    for i, m in enumerate(metas):
        assert (m.partition, m.offset) == (i % partitions, i // partitions), i


# ---------------------------------------------------------------------------------------------
# kill -9 while an idempotent producer is sending


@pytest.mark.timeout(300)
def test_idempotent_producer_carries_on_across_broker_kill9(broker_factory):
    # Through a proxy that holds back Produce responses just before the kill: those batches
    # are in the log but unacknowledged, so the producer must retry them against the restarted
    # broker, whose producer state was rebuilt from the log.
    proxy = ChaosProxy()
    proxy.chaos = False
    broker = broker_factory(extra_args=["--advertised-listener", proxy.address], name="kill9")
    proxy.target = ("127.0.0.1", broker.port)
    topic = unique("idem-kill9")
    partitions, total, kill_after = 3, 12000, 3000
    create_topic(broker.bootstrap, topic, partitions=partitions)
    errors: list[str] = []
    acked = [0]
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is not None:
                errors.append(err.str())
            else:
                acked[0] += 1

    p = Producer({
        "bootstrap.servers": proxy.address,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 100,
        "message.timeout.ms": 120000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    })
    killed = False
    for i in range(total):
        while True:
            try:
                p.produce(topic, value=str(i).encode(), partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if not killed and i >= kill_after and acked[0] >= kill_after // 2:
            # Requests are in flight right now: kill the broker under them, then bring it back.
            proxy.hold = True
            for _ in range(30):
                p.poll(0.01)
            in_flight_at_kill = len(p)
            broker.kill9()
            proxy.hold = False
            killed = True
            time.sleep(0.5)
            broker.start()
        while len(p) > 1500:
            p.poll(0.01)
    assert killed, "the broker was never killed"
    print(f"kill -9 with {in_flight_at_kill} records not yet acknowledged")
    assert p.flush(180) == 0, "records left undelivered"
    assert errors == [], f"delivery errors: {errors[:5]}"
    assert acked[0] == total
    assert "rebuilt producer state" in broker.log_text()
    dups = duplicate_batches(broker)
    print(f"duplicate batches caught after the restart: {dups:.0f}")
    assert dups > 0, "batches appended before the kill should have been retried and recognised"
    assert_exactly_once_in_order(broker.bootstrap, topic, partitions, total)
    proxy.close()


# ---------------------------------------------------------------------------------------------
# The wire contract


def init_producer_id_v1(addr: str, transactional_id: str | None) -> tuple[int, int, int]:
    """InitProducerId v1 (non-flexible): (error_code, producer_id, producer_epoch)."""
    body = wire.string(transactional_id) + wire.i32(60000)
    _, resp = wire.roundtrip(addr, wire.frame(wire.request_header_v1(22, 1, 7) + body))
    r = wire.Reader(resp)
    r.i32()  # throttle_time_ms
    out = (r.i16(), r.i64(), r.i16())
    assert r.remaining() == 0
    return out


def idempotent_batch(pid: int, epoch: int, seq: int, values: list[bytes], ts: int) -> bytes:
    """An uncompressed batch from producer pid/epoch whose first record has sequence `seq`."""
    recs = b"".join(wire.record(i, 0, None, v) for i, v in enumerate(values))
    n = len(values)
    after_crc = (wire.i16(0) + wire.i32(n - 1) + wire.i64(ts) + wire.i64(ts) + wire.i64(pid)
                 + wire.i16(epoch) + wire.i32(seq) + wire.i32(n) + recs)
    crc = wire.crc32c(after_crc)
    after_length = wire.i32(-1) + wire.i8(2) + struct.pack(">I", crc) + after_crc
    return wire.i64(0) + wire.i32(len(after_length)) + after_length


def produce(addr: str, topic: str, batch: bytes) -> tuple[int, int]:
    _, resp = wire.roundtrip(addr, wire.produce_v3_request(9, topic, 0, batch))
    error, base_offset, _ = wire.parse_produce_v3(resp)[(topic, 0)]
    return error, base_offset


def test_init_producer_id_is_unique_across_kill9_and_serves_transactional_ids(broker_factory):
    broker = broker_factory(name="wire")
    first = [init_producer_id_v1(broker.bootstrap, None) for _ in range(3)]
    assert all(err == 0 and epoch == 0 for err, _, epoch in first), first
    ids = [pid for _, pid, _ in first]
    assert len(set(ids)) == 3 and min(ids) >= 0
    broker.restart(kill9=True)
    (err, after, epoch) = init_producer_id_v1(broker.bootstrap, None)
    assert (err, epoch) == (0, 0)
    assert after > max(ids), "a restarted broker must not hand out an id again"

    # A transactional id gets a producer id from the transaction coordinator, and the same id
    # again bumps its epoch (test_transactions.py); an empty one is INVALID_REQUEST (42) as in
    # Kafka. The broker keeps serving idempotent producers.
    err, txn_pid, txn_epoch = wait_until(
        lambda: (r := init_producer_id_v1(broker.bootstrap, "my-txn"))[0] != 14 and r, 10,
        "transaction coordinator loaded")
    assert (err, txn_epoch) == (0, 0) and txn_pid > after
    assert init_producer_id_v1(broker.bootstrap, "my-txn") == (0, txn_pid, 1)
    assert init_producer_id_v1(broker.bootstrap, "") == (42, -1, -1)
    assert init_producer_id_v1(broker.bootstrap, None)[0] == 0


def test_duplicates_gaps_and_stale_epochs_on_the_wire(broker_factory):
    broker = broker_factory(name="wire-produce")
    addr = broker.bootstrap
    topic = unique("idem-wire")
    create_topic(addr, topic)
    _, pid, _ = init_producer_id_v1(addr, None)
    ts = int(time.time() * 1000)
    values = [b"a", b"b", b"c"]

    assert produce(addr, topic, idempotent_batch(pid, 0, 0, values, ts)) == (0, 0)
    assert produce(addr, topic, idempotent_batch(pid, 0, 3, values, ts)) == (0, 3)
    # A retry of either of them: no error, the original base offset, nothing appended.
    assert produce(addr, topic, idempotent_batch(pid, 0, 0, values, ts)) == (0, 0)
    assert produce(addr, topic, idempotent_batch(pid, 0, 3, values, ts)) == (0, 3)
    assert watermarks(addr, topic) == (0, 6)
    # A gap: OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert produce(addr, topic, idempotent_batch(pid, 0, 7, values, ts)) == (45, -1)
    # A bumped epoch starts at 0; afterwards the old epoch is fenced: INVALID_PRODUCER_EPOCH.
    assert produce(addr, topic, idempotent_batch(pid, 1, 0, values, ts)) == (0, 6)
    assert produce(addr, topic, idempotent_batch(pid, 0, 6, values, ts)) == (47, -1)
    # A producer id with a negative sequence is an invalid record (87).
    assert produce(addr, topic, idempotent_batch(pid, 1, -1, values, ts)) == (87, -1)
    assert watermarks(addr, topic) == (0, 9)

    # After kill -9 the state is rebuilt from the log: the retry is still a duplicate.
    broker.restart(kill9=True)
    assert produce(addr, topic, idempotent_batch(pid, 1, 0, values, ts)) == (0, 6)
    assert produce(addr, topic, idempotent_batch(pid, 1, 3, values, ts)) == (0, 9)
    assert watermarks(addr, topic) == (0, 12)
    wait_until(lambda: duplicate_batches(broker) >= 1, 5, "duplicate counter")
