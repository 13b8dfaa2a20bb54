"""Cluster-mode benchmark (issue 11): time to elect a new active controller after kill -9 of
the old one (median of N), time to create many topics on a 3-broker cluster, and the metadata
snapshot size and broker restart time at that size. Not a CI test.

    FJORD_BROKER_BIN=target/release/fjord-broker .venv/bin/python bench/cluster_bench.py \
        --kills 10 --topics 1000 --partitions 10

Prints one line per measurement; BENCHMARKS.md records the results."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "broker" / "tests" / "python"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from conftest import Cluster  # noqa: E402
from helpers import wait_until  # noqa: E402
from test_cluster import RACKS, describe_quorum_v1, live_nodes  # noqa: E402


def wait(pred, timeout: float, what: str, interval: float = 0.01):
    return wait_until(pred, timeout=timeout, what=what, interval=interval)


def leader_via(broker) -> int | None:
    try:
        q = describe_quorum_v1(broker.bootstrap)
    except Exception:  # noqa: BLE001 - broker busy or starting
        return None
    return q["leader"] if q["error"] == 0 and q["leader"] >= 0 else None


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--rf", type=int, default=3, help="replication factor of the created topics")
    args = ap.parse_args()
    # The production default timings: election 1 s (randomised to 2 s), sessions 9 s.
    # The per-broker partition cap (topics.max_partitions) defaults to what the open-file limit
    # allows; the benchmark asks for more partitions than that on purpose.
    extra: list[str] = ["--set", f"topics.max_partitions={max(10_000, args.topics * args.partitions + 1000)}"]
    root = Path(tempfile.mkdtemp(prefix="fjord-cluster-bench-"))
    cluster = Cluster(root, 3, ["a", "b", "c"], 3, extra).start()
    try:
        for b in cluster.brokers:
            wait(lambda b=b: live_nodes(b) == RACKS, 60, f"{b.name} ready", 0.2)
        elections = []
        for _ in range(args.kills):  # --kills 0 skips the election measurement
            old = wait(lambda: leader_via(cluster.node(1)) or leader_via(cluster.node(2)), 30, "a leader")
            survivor = next(b for b in cluster.brokers if b is not cluster.node(old))
            cluster.node(old).kill9()
            t0 = time.monotonic()
            wait(lambda: (leader := leader_via(survivor)) is not None and leader != old, 30, "a new leader")
            elections.append(time.monotonic() - t0)
            unfenced_before = cluster.node(old).log_text().count("broker unfenced")
            cluster.node(old).start()
            # Its old registration stays unfenced until its session expires (Kafka's rule), so
            # wait for the new incarnation's own unfencing, not only for the broker list.
            wait(lambda: cluster.node(old).log_text().count("broker unfenced") > unfenced_before
                 and live_nodes(survivor) == RACKS, 60, "the killed broker back", 0.2)
        print(flush=True)
        if elections:
            print(f"controller election after kill -9: median {statistics.median(elections) * 1000:.0f} ms, "
                  f"min {min(elections) * 1000:.0f} ms, max {max(elections) * 1000:.0f} ms over {len(elections)} kills "
                  f"(election_timeout 1 s, randomised to 2 s)")

        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        t0 = time.monotonic()
        for start in range(0, args.topics, 50):
            names = [f"bench-{i}" for i in range(start, min(start + 50, args.topics))]
            futures = admin.create_topics([NewTopic(n, args.partitions, args.rf) for n in names], request_timeout=120)
            for f in futures.values():
                f.result(timeout=180)
        took = time.monotonic() - t0
        total = args.topics * args.partitions
        print(f"created {args.topics} topics x {args.partitions} partitions (RF {args.rf}, {total} partitions) "
              f"in {took:.1f} s ({args.topics / took:.0f} topics/s)")

        node = cluster.node(3)
        raft_dir = node.data_dir / "metadata" / "raft"
        print(f"metadata raft dir on node 3 at {total} partitions: {dir_size(raft_dir) / 1e6:.1f} MB")
        assert node.stop() == 0
        t0 = time.monotonic()
        node.start()
        wait(lambda: live_nodes(cluster.node(1)) == RACKS, 120, "node 3 back", 0.05)
        print(f"restart of node 3 to registered and unfenced with {total} partitions: {time.monotonic() - t0:.1f} s")
    finally:
        for b in cluster.brokers:
            b.stop()
        print(f"dirs: {root}")


if __name__ == "__main__":
    main()
