"""Hardening (issue 19, defects 8 and 9): the listener's resource limits against the real broker
process, driven by raw sockets (wire.py) and a real client.

- Slowloris: thousands of half-sent frames (a partial size prefix, or a prefix and part of the
  body) are closed within network.request_read_timeout; a slow but complete request is served.
- Request memory: dozens of connections sending huge frames slowly keep the broker's RSS within
  network.queued_max_request_bytes (plus slack) while a confluent-kafka producer's acks=all keeps
  succeeding.
- Connection limits: max_connections_per_ip closes the connection over it (with a per-address
  override), max_connections stops accepting until a connection closes (Kafka's semantics).
- Fetch: the broker's fetch_max_bytes caps a Fetch asking for much more.
- In-flight: Fetch long-polls pipelined on one connection are bounded by max_in_flight_requests.
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import socket
import struct
import threading
import time

import pytest

import wire
from helpers import create_topic, producer, unique, wait_until

READ_TIMEOUT_S = 2.0
POOL_MIB = 64
MAX_IN_FLIGHT = 4

GUARDED_ARGS = [
    "--set", "network.idle_timeout=60s",
    "--set", "network.max_in_flight_requests=4",
    "--set", "network.max_request_size=32MiB",
    # The keys below are the ones this module tests.
    "--set", f"network.request_read_timeout={int(READ_TIMEOUT_S)}s",
    "--set", f"network.queued_max_request_bytes={POOL_MIB}MiB",
    "--set", "network.fetch_max_bytes=1MiB",
]


@pytest.fixture(scope="module")
def broker(broker_factory):
    return broker_factory(GUARDED_ARGS, name="guarded")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def metric(broker, name: str) -> float:
    status, _, text = broker.http_get("/metrics")
    assert status == 200
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def api_versions_ok(sock: socket.socket, corr: int) -> None:
    sock.sendall(wire.api_versions_v0_request(corr))
    got, body = wire.read_response(sock)
    assert got == corr
    assert wire.parse_api_versions_v0(body)[0] == 0


def connect_from(addr: str, source_ip: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10, source_address=(source_ip, 0))


def test_half_sent_frames_are_closed_within_request_read_timeout(broker):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    count = min(2000, soft - 500)
    assert count >= 200, f"open-file limit {soft} too low for this test"
    socks = []
    sel = selectors.DefaultSelector()
    try:
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
            # Half of them stop inside the size prefix, half inside the body.
            s.sendall(struct.pack(">i", 1000)[:2] if i % 2 else struct.pack(">i", 1000) + b"\0" * 100)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
        sent = time.monotonic()
        # A slow but complete request within the deadline is served, even among them.
        with wire.connect(broker.bootstrap) as ok:
            req = wire.api_versions_v0_request(5)
            ok.sendall(req[:3])
            time.sleep(READ_TIMEOUT_S / 4)
            ok.sendall(req[3:])
            assert wire.read_response(ok)[0] == 5
        closed_at = {}
        deadline = sent + READ_TIMEOUT_S + 4.0
        while len(closed_at) < count and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                except BlockingIOError:
                    continue
                assert not data, f"the broker answered a half-sent frame: {data[:32]!r}"
                closed_at[s] = time.monotonic() - sent
                sel.unregister(s)
        assert len(closed_at) == count, (
            f"{count - len(closed_at)} of {count} half-sent frames still open "
            f"{deadline - sent:.1f}s after sending (request_read_timeout {READ_TIMEOUT_S}s)")
        assert broker.alive()
        assert metric(broker, "fjord_network_request_read_timeouts_total") >= count
    finally:
        for s in socks:
            s.close()
        sel.close()


class Attack:
    """`conns` connections that each send one `frame_mib` frame of junk at about `rate_mib`
    MiB/s, from one thread with non-blocking sockets (a connection the broker does not read
    simply stays blocked)."""

    def __init__(self, port: int, conns: int, frame_mib: int, rate_mib: float):
        self.port, self.conns, self.size = port, conns, frame_mib << 20
        self.chunk = int(rate_mib * (1 << 20) / 20)  # per 50 ms round
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        junk = memoryview(b"\x07" * self.chunk)
        socks = []
        for _ in range(self.conns):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(struct.pack(">i", self.size))
            s.setblocking(False)
            socks.append([s, self.size])
        try:
            while not self.stop.is_set():
                for entry in socks:
                    s, left = entry
                    if left <= 0:
                        continue
                    try:
                        n = s.send(junk[:min(self.chunk, left)])
                    except BlockingIOError:
                        continue
                    except OSError:  # closed by the broker (deadline or bad frame)
                        entry[1] = 0
                        continue
                    entry[1] -= n
                    self.sent += n
                time.sleep(0.05)
        finally:
            for s, _ in socks:
                s.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def test_huge_frames_wait_for_request_memory_and_acks_all_keeps_working(broker):
    topic = unique("memory-bound")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, acks="all", linger_ms=0)
    p.produce(topic, b"warm-up")
    assert p.flush(10) == 0
    pid = broker.proc.pid
    baseline = rss_bytes(pid)
    peak = [baseline]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    latencies, errors = [], []
    # 40 x 30 MiB at 5 MiB/s each: 1 GiB would arrive in 5 s if the broker read it all.
    with Attack(broker.port, conns=40, frame_mib=30, rate_mib=5.0) as attack:
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 6.0:
            t0 = time.monotonic()

            def report(err, msg):
                (errors if err else latencies).append(err or time.monotonic() - t0)

            p.produce(topic, f"acks-all-{i}".encode() * 20, on_delivery=report)
            p.flush(15)
            i += 1
        sent = attack.sent
    sampling.set()
    sampler.join()
    grown = (peak[0] - baseline) >> 20
    assert not errors, errors[:3]
    assert len(latencies) >= 10, f"only {len(latencies)} acks=all produces in 6 s"
    latencies.sort()
    print(f"attack sent {sent >> 20} MiB; RSS {baseline >> 20} -> peak {peak[0] >> 20} MiB; "
          f"acks=all n={len(latencies)} p50={latencies[len(latencies) // 2] * 1000:.1f}ms "
          f"max={latencies[-1] * 1000:.1f}ms")
    # Request memory is bounded by the pool; allow for allocator slack and the producer.
    assert grown < POOL_MIB + 96, (
        f"RSS grew by {grown} MiB under the attack (pool {POOL_MIB} MiB, attackers sent {sent >> 20} MiB)")
    assert metric(broker, "fjord_network_request_memory_waits_total") > 0
    assert broker.alive()


def test_connection_limits_per_ip_closes_and_max_connections_waits(broker_factory):
    limited = broker_factory([
        "--set", "network.max_connections=7",
        "--set", "network.max_connections_per_ip=3",
        "--set", 'network.max_connections_per_ip_overrides={"127.0.0.2"=5}',
    ], name="limited")
    socks = []
    try:
        for i in range(3):
            s = connect_from(limited.bootstrap, "127.0.0.1")
            api_versions_ok(s, i)
            socks.append(s)
        # The fourth from 127.0.0.1 is over max_connections_per_ip: closed at once.
        over = connect_from(limited.bootstrap, "127.0.0.1")
        try:
            over.sendall(wire.api_versions_v0_request(99))
        except OSError:
            pass
        wire.wait_closed(over, timeout=5)
        over.close()
        # 127.0.0.2 has an override of 5; four fill max_connections=7.
        for i in range(4):
            s = connect_from(limited.bootstrap, "127.0.0.2")
            api_versions_ok(s, 10 + i)
            socks.append(s)
        # The eighth is not accepted (it waits in the backlog) until a connection closes.
        waiting = connect_from(limited.bootstrap, "127.0.0.2")
        waiting.sendall(wire.api_versions_v0_request(77))
        waiting.settimeout(1.5)
        with pytest.raises(socket.timeout):
            waiting.recv(1)
        socks.pop(0).close()
        waiting.settimeout(5)
        corr, body = wire.read_response(waiting)
        assert corr == 77 and wire.parse_api_versions_v0(body)[0] == 0
        socks.append(waiting)
        assert metric(limited, "fjord_network_connections_rejected_total") == 1
    finally:
        for s in socks:
            s.close()


def produce_batches(addr: str, topic: str, count: int, value_size: int) -> None:
    with wire.connect(addr) as s:
        for i in range(count):
            batch = wire.record_batch([(None, bytes([i % 256]) * value_size)], int(time.time() * 1000))
            s.sendall(wire.produce_v3_request(i, topic, 0, batch))
            corr, body = wire.read_response(s)
            assert corr == i
            assert wire.parse_produce_v3(body)[(topic, 0)][0] == 0


def test_fetch_response_is_capped_by_fetch_max_bytes(broker):
    topic = unique("fetch-cap")
    create_topic(broker.bootstrap, topic)
    produce_batches(broker.bootstrap, topic, 24, 128 * 1024)  # 3 MiB in 128 KiB batches
    asked = 64 << 20
    with wire.connect(broker.bootstrap) as s:
        s.sendall(wire.fetch_v4_request(1, topic, 0, 0, max_wait_ms=0, max_bytes=asked))
        corr, body = wire.read_response(s)
        part = wire.parse_fetch_v4(body)[(topic, 0)]
        assert part["error_code"] == 0 and part["high_watermark"] == 24
        got = len(part["records"])
        assert (1 << 20) - 132 * 1024 < got <= 1 << 20, f"{got} bytes for max_bytes={asked}, fetch_max_bytes=1MiB"
        batches = wire.parse_record_batches(part["records"])
        # The next fetch continues where the capped one stopped.
        s.sendall(wire.fetch_v4_request(2, topic, 0, len(batches), max_wait_ms=0, max_bytes=asked))
        nxt = wire.parse_fetch_v4(wire.read_response(s)[1])[(topic, 0)]
        assert wire.parse_record_batches(nxt["records"])[0]["offset"] == len(batches)


def test_pipelined_fetch_long_polls_are_bounded_per_connection(broker):
    topic = unique("long-polls")
    create_topic(broker.bootstrap, topic)
    polls, wait_ms = 12, 1000
    with wire.connect(broker.bootstrap, timeout=20) as s:
        started = time.monotonic()
        s.sendall(b"".join(wire.fetch_v4_request(i, topic, 0, 0, max_wait_ms=wait_ms) for i in range(polls)))
        # Wait until the connection's slots fill (12 polls sent, 4 slots), then read the gauge.
        wait_until(lambda: metric(broker, "fjord_network_requests_in_flight") >= MAX_IN_FLIGHT, 5,
                   "the connection's in-flight slots to fill")
        in_flight = metric(broker, "fjord_network_requests_in_flight")
        arrived = []
        for i in range(polls):
            corr, _ = wire.read_response(s)
            assert corr == i
            arrived.append(time.monotonic() - started)
    assert in_flight <= MAX_IN_FLIGHT, f"{in_flight} requests in flight on one connection"
    # Four at a time: the polls end in three waves of max_wait_ms.
    waves = polls // MAX_IN_FLIGHT
    assert arrived[-1] >= (waves - 0.5) * wait_ms / 1000, (
        f"{polls} long-polls of {wait_ms} ms all answered by {arrived[-1]:.2f}s: not bounded at {MAX_IN_FLIGHT}")
    assert arrived[MAX_IN_FLIGHT - 1] < 1.8 * wait_ms / 1000, arrived
