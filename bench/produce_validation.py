"""Produce-path cost of record validation: a confluent-kafka producer sends N records (200-byte
JSON-ish values, acks=1, linger.ms=5) per codec to a fresh topic on a broker binary started
here, RUNS times; prints the median wall time (records/s) and the broker's CPU seconds per run
(utime+stime from /proc/<pid>/stat), which is where validation shows.

    .venv/bin/python bench/produce_validation.py target/release/fjord-broker [N] [RUNS]

Every record's delivery report is checked (all delivered, no error).
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Producer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    port, http = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="fjord-produce-bench-")
    proc = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                             "--http-listen", f"127.0.0.1:{http}", "--set", "admin.listen=127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        values = [(f'{{"id":{i},"user":"user-{i % 977}","event":"click","ts":{1_700_000_000_000 + i},'
                   f'"path":"/items/{i % 131}/view","pad":"{"x" * 90}"}}').encode() for i in range(n)]
        for codec in ["none", "lz4", "zstd", "gzip"]:
            walls, cpus = [], []
            for run in range(runs):
                p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "compression.type": codec,
                              "linger.ms": 5, "acks": 1, "queue.buffering.max.messages": 1_000_000})
                topic = f"bench-{codec}-{run}"
                p.produce(topic, b"warm-up")
                p.flush(30)
                outcome = {"ok": 0, "err": 0}

                def report(err, _msg):
                    outcome["err" if err else "ok"] += 1

                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                for v in values:
                    while True:
                        try:
                            p.produce(topic, v, on_delivery=report)
                            break
                        except BufferError:
                            p.poll(0.01)
                assert p.flush(300) == 0
                assert outcome == {"ok": n, "err": 0}, outcome
                walls.append(time.monotonic() - t0)
                cpus.append(cpu_seconds(proc.pid) - cpu0)
            wall = statistics.median(walls)
            print(f"{codec:5} {n} records: median {wall:.2f} s ({n / wall:,.0f} rec/s), "
                  f"broker cpu median {statistics.median(cpus):.2f} s  runs {['%.2f' % w for w in walls]}",
                  flush=True)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
