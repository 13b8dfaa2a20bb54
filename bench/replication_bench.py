"""Replication benchmark (issue 12): on 3 broker processes on loopback, produce throughput and
ack latency with acks=all for RF=1 and RF=3 topics, in both durability modes
(`storage.fsync_on_acks_all` true: every ISR member fsyncs before the ack; false: Kafka's classic
in-memory replication); and the time from kill -9 of a partition leader to the first
acknowledged record on its successor (median of N). Not a CI test.

    FJORD_BROKER_BIN=target/release/fjord-broker .venv/bin/python bench/replication_bench.py \\
        --runs 3 --seconds 8 --kills 10

The client is confluent-kafka (librdkafka) in this process: one producer, 1 KiB values, 6
partitions, linger.ms=5. Throughput runs send as fast as the client can; latency runs send at a
fixed rate (--rate messages/s) so the ack latency is the broker's, not the client's queue.
Configurations are interleaved within each run; the table shows medians over runs."""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "broker" / "tests" / "python"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

from conftest import Cluster  # noqa: E402
from helpers import wait_until  # noqa: E402
from test_cluster import RACKS, admin, live_nodes, topic_layout  # noqa: E402

PARTITIONS = 6
VALUE = os.urandom(1024)


def start_cluster(root: Path, durable: bool, session_timeout: str | None = None) -> Cluster:
    extra = ["--set", f"storage.fsync_on_acks_all={'true' if durable else 'false'}"]
    if session_timeout:
        extra += ["--set", f"cluster.broker_session_timeout={session_timeout}",
                  "--set", "cluster.broker_heartbeat_interval=500ms"]
    c = Cluster(root, 3, ["a", "b", "c"], 3, extra).start()
    for b in c.brokers:
        wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=60, what=f"{b.name} ready", interval=0.2)
    return c


def create(c: Cluster, name: str, rf: int, partitions: int = PARTITIONS) -> None:
    a = admin(c.node(1).bootstrap)
    a.create_topics([NewTopic(name, partitions, rf, config={"min.insync.replicas": str(min(rf, 2))})],
                    request_timeout=15)[name].result(timeout=30)
    wait_until(lambda: (l := topic_layout(c.node(1), name)) and all(p[0] >= 0 for p in l.values()),
               timeout=30, what=f"{name} leaders")


def produce(bootstrap: str, topic: str, seconds: float, rate: float | None) -> dict:
    """Sends for `seconds` (at `rate` msg/s, or as fast as possible); per-message ack latency."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": True,
                  "queue.buffering.max.kbytes": 262144, "message.timeout.ms": 60000})
    latencies: list[float] = []
    acked = 0
    errors = 0
    start = time.perf_counter()

    def report(err, msg, sent=None):
        nonlocal errors, acked
        if err is not None:
            errors += 1
            return
        acked += 1
        # The first second (connections, metadata, producer id) is warm-up: not in the latencies.
        if sent - start >= 1.0:
            latencies.append(time.perf_counter() - sent)

    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        if rate is not None and sent >= (now - start) * rate:
            p.poll(0.0005)
            continue
        try:
            p.produce(topic, value=VALUE, partition=sent % PARTITIONS,
                      on_delivery=lambda err, msg, t=now: report(err, msg, t))
            sent += 1
        except BufferError:
            p.poll(0.001)
        if sent % 256 == 0:
            p.poll(0)
    p.flush(60)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def q(x: float) -> float:
        return latencies[min(len(latencies) - 1, int(x * len(latencies)))] * 1000 if latencies else float("nan")
    return {"mib_s": acked * len(VALUE) / elapsed / (1 << 20), "acked": acked, "errors": errors,
            "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": latencies[-1] * 1000 if latencies else float("nan")}


def failover(c: Cluster, kills: int) -> list[float]:
    """kill -9 the leader of a 1-partition RF=3 topic while a producer sends every 5 ms; the time
    from the kill to the first ack of a record sent after it. The broker restarts in between."""
    topic = "failover"
    create(c, topic, 3, partitions=1)
    out = []
    for _ in range(kills):
        for b in c.brokers:
            wait_until(lambda b=b: live_nodes(b) == RACKS, timeout=90, what="all live", interval=0.2)
        wait_until(lambda: len(topic_layout(c.node(1), topic)[0][2]) == 3, timeout=90, what="full isr", interval=0.2)
        leader_id = topic_layout(c.node(1), topic)[0][0]
        leader = c.node(leader_id)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 0, "enable.idempotence": True,
                      "message.timeout.ms": 120000, "retry.backoff.ms": 20, "retry.backoff.max.ms": 100,
                      "topic.metadata.refresh.interval.ms": 1000})
        first_ack: list[float] = []
        killed_at = None

        def report(err, msg, sent=None):
            if err is None and killed_at is not None and sent > killed_at and not first_ack:
                first_ack.append(time.perf_counter())
        t0 = time.perf_counter()
        while True:
            now = time.perf_counter()
            if killed_at is None and now - t0 > 1.0:
                leader.proc.send_signal(signal.SIGKILL)
                killed_at = time.perf_counter()
            p.produce(topic, value=b"x", on_delivery=lambda err, msg, t=now: report(err, msg, t))
            p.poll(0.005)
            if first_ack or (killed_at is not None and now - killed_at > 90):
                break
        p.flush(30)
        leader.exit_codes.append(leader.proc.wait(timeout=30))
        if first_ack:
            out.append((first_ack[0] - killed_at) * 1000)
            print(f"  failover after kill -9 of broker {leader_id}: {out[-1]:.0f} ms", flush=True)
        leader.start()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rate", type=float, default=2000, help="messages/s of the latency runs")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--session-timeout", default=None,
                    help="cluster.broker_session_timeout of the failover cluster (default: the broker's, 9 s)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fjord-replication-bench-"))
    results: dict[tuple, list[dict]] = {}
    clusters = {}
    try:
        for durable in (True, False):
            c = start_cluster(root / ("durable" if durable else "inmemory"), durable)
            clusters[durable] = c
            for rf in (1, 3):
                create(c, f"rf{rf}", rf)
        for run in range(args.runs):
            for durable in (True, False):
                c = clusters[durable]
                for rf in (1, 3):
                    for mode, rate in (("max", None), ("rate", args.rate)):
                        r = produce(c.bootstrap, f"rf{rf}", args.seconds, rate)
                        results.setdefault((durable, rf, mode), []).append(r)
                        print(f"run {run} durable={durable} rf={rf} {mode}: {r}", flush=True)
        for c in clusters.values():
            for b in c.brokers:
                b.stop()
        print("\n| durability | RF | throughput MiB/s (max) | p50 / p99 / max ack ms at "
              f"{args.rate:.0f} msg/s |")
        print("|---|---|---|---|")
        for durable in (True, False):
            for rf in (1, 3):
                mx = statistics.median(r["mib_s"] for r in results[(durable, rf, "max")])
                lat = results[(durable, rf, "rate")]
                p50 = statistics.median(r["p50_ms"] for r in lat)
                p99 = statistics.median(r["p99_ms"] for r in lat)
                worst = statistics.median(r["max_ms"] for r in lat)
                name = "fsync on every ISR member" if durable else "in-memory (classic Kafka)"
                print(f"| {name} | {rf} | {mx:.1f} | {p50:.1f} / {p99:.1f} / {worst:.1f} |")
        if args.kills:
            c = start_cluster(root / "failover", True, args.session_timeout)
            try:
                times = failover(c, args.kills)
            finally:
                for b in c.brokers:
                    if b.alive():
                        b.stop()
            if times:
                print(f"\nfailover (kill -9 leader -> first ack on the new leader), {len(times)} kills: median "
                      f"{statistics.median(times):.0f} ms, min {min(times):.0f}, max {max(times):.0f}")
    finally:
        for c in clusters.values():
            for b in c.brokers:
                if b.alive():
                    b.stop()


if __name__ == "__main__":
    main()
