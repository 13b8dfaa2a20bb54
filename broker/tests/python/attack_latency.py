"""Measures a well-behaved producer's acks=all latency (p50/p99) and the broker's peak RSS while
`--conns` connections each send one `--frame-mib` frame that never completes (issue 19, defect 9).
Not a test (pytest does not collect it); run it by hand against any fjord-broker binary:

    FJORD_BROKER_BIN=target/debug/fjord-broker .venv/bin/python broker/tests/python/attack_latency.py

The broker runs with its default configuration on free loopback ports, once without and once
with the attack. Attackers reconnect when the broker closes them, so the pressure stays on.
"""

from __future__ import annotations

import argparse
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

from conftest import Broker
from helpers import create_topic, producer, unique


def rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) >> 10
    return 0


def attack(port: int, conns: int, frame: int, stop: threading.Event, sent: list[int]) -> None:
    chunk = memoryview(b"\x07" * (1 << 20))

    def dial():
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(struct.pack(">i", frame))
        s.setblocking(False)
        return [s, frame - 1]  # one byte short: the frame never completes

    socks = [dial() for _ in range(conns)]
    while not stop.is_set():
        progressed = False
        for i, entry in enumerate(socks):
            s, left = entry
            if left <= 0:
                continue
            try:
                n = s.send(chunk[:min(len(chunk), left)])
            except BlockingIOError:
                continue
            except OSError:
                s.close()
                socks[i] = dial()
                continue
            entry[1] -= n
            sent[0] += n
            progressed = True
        if not progressed:
            time.sleep(0.01)
    for s, _ in socks:
        s.close()


def measure(b: Broker, seconds: float, under_attack: bool, conns: int, frame_mib: int) -> None:
    topic = unique("latency")
    create_topic(b.bootstrap, topic)
    p = producer(b.bootstrap, acks="all", linger_ms=0)
    p.produce(topic, b"warm-up")
    p.flush(10)
    stop, sent, peak = threading.Event(), [0], [rss_mib(b.proc.pid)]
    threads = []
    if under_attack:
        threads.append(threading.Thread(target=attack, args=(b.port, conns, frame_mib << 20, stop, sent)))

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib(b.proc.pid))
            time.sleep(0.1)

    threads.append(threading.Thread(target=sample))
    for t in threads:
        t.start()
    time.sleep(2.0 if under_attack else 0)  # let the attack build up
    lat, errors = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        box = []
        p.produce(topic, b"x" * 1000, on_delivery=lambda err, msg: box.append(err))
        p.flush(30)
        if box and box[0] is None:
            lat.append((time.monotonic() - t0) * 1000)
        else:
            errors += 1
    stop.set()
    for t in threads:
        t.join()
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    label = f"{conns}x{frame_mib}MiB attack" if under_attack else "no attack"
    print(f"{label:>20}: acks=all n={len(lat)} errors={errors} p50={pct(0.5):.1f}ms p99={pct(0.99):.1f}ms "
          f"max={lat[-1] if lat else float('nan'):.1f}ms; broker peak RSS {peak[0]} MiB; "
          f"attackers sent {sent[0] >> 20} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--frame-mib", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fjord-attack-latency-"))
    for under_attack in (False, True):
        b = Broker(root / ("attack" if under_attack else "quiet"))
        b.start()
        try:
            measure(b, args.seconds, under_attack, args.conns, args.frame_mib)
        finally:
            b.stop()


if __name__ == "__main__":
    main()
