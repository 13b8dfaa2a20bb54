"""Tiered-storage benchmark (driven by bench/tiering.sh): against moto's S3 server on loopback.

1. Produce throughput with tiering off vs on vs on with an upload cap (UPLOAD_CAP/s), same run,
   alternating, RUNS times: fjord-bench (librdkafka, acks=all, 1 KiB values) produces DURATION s
   into a 4-partition topic; "on" = the broker uploads closed segments (segment.bytes 16 MiB,
   local.retention.bytes 64 MiB) while it produces. Medians are reported.
2. Local disk footprint: produce 2 GiB (one partition, 64 KiB values) with
   local.retention.bytes=64MiB, wait until every closed segment is uploaded and local retention ran,
   then measure the partition directory (du).
3. Cold-cache catch-up read: restart the broker (the read cache is emptied at start), then one
   confluent-kafka consumer reads the 2 GiB from offset 0; reports MiB/s and the time from
   assign() to the first record (first-byte latency). RUNS times, medians.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
BROKER = os.environ.get("FJORD_BIN", str(ROOT / "target/release/fjord-broker"))
BENCH = os.environ.get("BENCH_BIN", str(ROOT / "target/release/fjord-bench"))
RUNS = int(os.environ.get("RUNS", "3"))
DURATION = int(os.environ.get("DURATION", "15"))
TOTAL_BYTES = int(os.environ.get("TOTAL_MIB", "2048")) << 20
WORK = Path(os.environ.get("WORK_DIR", "/tmp/fjord-tiering-bench"))
PORT, HTTP_PORT, S3_PORT = 19292, 19293, 19294
# moto (Python S3 server, on this machine: it shares the 2 vCPUs), s3s (s3s-fs 0.14.1, a Rust S3
# server on a local folder; S3S_BIN, install with `cargo install s3s-fs --version 0.14.1 --locked
# --features binary`) or file (object_store's local filesystem: no HTTP server in the way).
STORE = os.environ.get("STORE", "moto")
UPLOAD_CAP = os.environ.get("UPLOAD_CAP", "32MiB")
S3S_BIN = os.environ.get("S3S_BIN", "/tmp/s3s-root/bin/s3s-fs")
BOOT = f"127.0.0.1:{PORT}"


def log(msg: str) -> None:
    print(msg, flush=True)


def wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Proc:
    def __init__(self, args: list[str], logfile: Path, port: int):
        self.log = open(logfile, "ab")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait(lambda: port_open(port), 60, f"{args[0]} on :{port}")

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


def start_broker(data: Path, tiering: bool, prefix: str, cap: str | None = None) -> Proc:
    args = [BROKER, "--listen", BOOT, "--data-dir", str(data), "--http-listen", f"127.0.0.1:{HTTP_PORT}",
            "--set", "storage.retention_check_interval=1s"]
    if tiering:
        if STORE == "file":
            store = [f"tiering.url=file://{WORK}/bucket/{prefix}"]
        else:
            store = [f"tiering.url=s3://bench/{prefix}", f"tiering.endpoint=http://127.0.0.1:{S3_PORT}",
                     "tiering.region=us-east-1", "tiering.access_key_id=k", "tiering.secret_access_key=s",
                     "tiering.allow_http=true"]
        for kv in ["tiering.enabled=true", "tiering.cache_max_bytes=1GiB", *store]:
            args += ["--set", kv]
        if cap:
            args += ["--set", f"tiering.upload_bytes_per_second={cap}"]
    return Proc(args, WORK / "broker.log", PORT)


def create_topic(name: str, partitions: int, config: dict) -> None:
    a = AdminClient({"bootstrap.servers": BOOT})
    a.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result(timeout=30)

    def led():
        t = a.list_topics(name, timeout=10).topics.get(name)
        return t is not None and len(t.partitions) == partitions and all(p.leader >= 0 for p in t.partitions.values())

    wait(led, 30, f"leaders for {name}")


def tiering_state(topic: str) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/tiering", timeout=10) as r:
        return [s for s in json.loads(r.read()) if s["topic"] == topic]


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def produce_throughput() -> dict[str, list[float]]:
    modes = ("off", "on", "capped")
    results: dict[str, list[float]] = {m: [] for m in modes}
    for run in range(1, RUNS + 1):
        for mode in modes:
            data = WORK / f"produce-{mode}-{run}"
            b = start_broker(data, mode != "off", f"produce-{mode}-{run}", UPLOAD_CAP if mode == "capped" else None)
            try:
                topic = f"bench-{mode}"
                conf = {"segment.bytes": str(16 << 20)}
                if mode != "off":
                    conf.update({"remote.storage.enable": "true", "local.retention.bytes": str(64 << 20)})
                create_topic(topic, 4, conf)
                out = subprocess.run([BENCH, "--bootstrap", BOOT, "--topic", topic, "--no-create-topic", "--keep-topic",
                                      "--no-consume", "--duration", str(DURATION), "--label", mode, "--run", str(run)],
                                     capture_output=True, text=True, timeout=DURATION + 300)
                line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT") and "phase=produce" in l)
                kv = dict(f.split("=", 1) for f in line.split()[1:])
                mib = float(kv["mib_s"])
                results[mode].append(mib)
                extra = ""
                if mode != "off":
                    st = tiering_state(topic)
                    extra = f" (uploaded during the run: {sum(s['remote_bytes'] for s in st) / 2**20:.0f} MiB)"
                log(f"run {run} tiering {mode:6}: produce {mib:.1f} MiB/s, ack p99 {kv['ack_p99_ms']} ms{extra}")
            finally:
                b.stop()
                # Free the disk and the S3 server's memory (moto keeps objects in RAM).
                shutil.rmtree(data, ignore_errors=True)
                clear_bucket(f"produce-{mode}-{run}")
    return results


def clear_bucket(prefix: str) -> None:
    if STORE == "file":
        shutil.rmtree(WORK / "bucket" / prefix, ignore_errors=True)
        return
    if STORE == "s3s":
        shutil.rmtree(WORK / "s3s" / "bench" / prefix, ignore_errors=True)
        return
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{S3_PORT}", region_name="us-east-1",
                      aws_access_key_id="k", aws_secret_access_key="s")
    while True:
        r = s3.list_objects_v2(Bucket="bench", Prefix=prefix + "/")
        keys = [{"Key": o["Key"]} for o in r.get("Contents", [])]
        if not keys:
            return
        s3.delete_objects(Bucket="bench", Delete={"Objects": keys})


def footprint_and_catch_up() -> None:
    data = WORK / "catchup"
    b = start_broker(data, True, "catchup")
    topic = "bench-catchup"
    create_topic(topic, 1, {"remote.storage.enable": "true", "local.retention.bytes": str(64 << 20),
                            "segment.bytes": str(16 << 20), "retention.ms": "-1"})
    value = os.urandom(32 << 10) + bytes(32 << 10)
    n = TOTAL_BYTES // len(value)
    p = Producer({"bootstrap.servers": BOOT, "linger.ms": 5, "batch.size": 1 << 20, "acks": "all",
                  "message.max.bytes": 2 << 20, "queue.buffering.max.kbytes": 256 << 10})
    t0 = time.monotonic()
    for i in range(n):
        while True:
            try:
                p.produce(topic, value, partition=0)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(300) == 0
    log(f"produced {n * len(value) / 2**30:.2f} GiB in {time.monotonic() - t0:.1f} s")
    t1 = time.monotonic()
    st = wait(lambda: (s := tiering_state(topic)) and s[0]["upload_lag_segments"] == 0
              and s[0]["local_bytes"] <= (64 + 16) << 20 and s, 900, "uploads and local retention")[0]
    part = data / f"{topic}-0"
    # Deleted segment files are truncated away in the background: wait for them to go.
    deadline = time.monotonic() + 60
    while du(part) > (64 + 2 * 16) << 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    log(f"uploads caught up {time.monotonic() - t1:.1f} s after the last ack; remote {st['remote_bytes'] / 2**20:.0f} MiB "
        f"in {st['remote_segments']} segments, local log start {st['local_log_start_offset']} of {st['high_watermark']}")
    log(f"local disk footprint after {n * len(value) / 2**30:.2f} GiB with local.retention.bytes=64MiB: "
        f"{du(part) / 2**20:.1f} MiB in {part.name} ({len(list(part.glob('*.log')))} segment files)")
    total = n
    b.stop()
    rates, firsts = [], []
    for run in range(1, RUNS + 1):
        b = start_broker(data, True, "catchup")  # read cache emptied at start: cold
        try:
            c = Consumer({"bootstrap.servers": BOOT, "group.id": "bench", "enable.auto.commit": False,
                          "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 16 << 20,
                          "receive.message.max.bytes": 100 << 20, "queued.max.messages.kbytes": 256 << 10})
            c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            start = time.monotonic()
            first = None
            got = nbytes = 0
            while got < total:
                for m in c.consume(num_messages=1000, timeout=1.0):
                    if m.error():
                        raise SystemExit(f"consume error {m.error()}")
                    if first is None:
                        first = time.monotonic() - start
                    got += 1
                    nbytes += len(m.value())
                if time.monotonic() - start > 900:
                    raise SystemExit(f"catch-up read stalled at {got} of {total}")
            secs = time.monotonic() - start
            c.close()
            rate = nbytes / 2**20 / secs
            rates.append(rate)
            firsts.append(first * 1000)
            log(f"run {run} cold-cache catch-up: {nbytes / 2**30:.2f} GiB in {secs:.1f} s = {rate:.1f} MiB/s, "
                f"first record after {first * 1000:.0f} ms")
        finally:
            b.stop()
    shutil.rmtree(data, ignore_errors=True)
    clear_bucket("catchup")
    log(f"MEDIAN ({STORE}) catch-up read {statistics.median(rates):.1f} MiB/s, first-byte latency "
        f"{statistics.median(firsts):.0f} ms over {RUNS} runs")
    # Baseline: the same client's time to first record on local (untiered) data.
    b = start_broker(WORK / "baseline", False, "baseline")
    try:
        p = Producer({"bootstrap.servers": BOOT})
        for _ in range(1000):
            p.produce("bench-local", b"x" * 1000, partition=0)
        assert p.flush(30) == 0
        local = []
        for _ in range(RUNS):
            c = Consumer({"bootstrap.servers": BOOT, "group.id": "bench", "enable.auto.commit": False})
            c.assign([TopicPartition("bench-local", 0, OFFSET_BEGINNING)])
            start = time.monotonic()
            while not c.consume(num_messages=10, timeout=1.0):
                pass
            local.append((time.monotonic() - start) * 1000)
            c.close()
        log(f"baseline: first record from local data after {statistics.median(local):.0f} ms (median of {RUNS})")
    finally:
        b.stop()
        shutil.rmtree(WORK / "baseline", ignore_errors=True)


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    if STORE == "s3s":
        (WORK / "s3s" / "bench").mkdir(parents=True, exist_ok=True)
        s3 = Proc([S3S_BIN, "--host", "127.0.0.1", "--port", str(S3_PORT), "--access-key", "k", "--secret-key", "s",
                   str(WORK / "s3s")], WORK / "s3s.log", S3_PORT)
    else:
        s3 = Proc([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(S3_PORT)],
                  WORK / "moto.log", S3_PORT)
    try:
        if STORE != "s3s":
            boto3.client("s3", endpoint_url=f"http://127.0.0.1:{S3_PORT}", region_name="us-east-1",
                         aws_access_key_id="k", aws_secret_access_key="s").create_bucket(Bucket="bench")
        phases = os.environ.get("PHASES", "produce catchup").split()
        if "produce" in phases:
            r = produce_throughput()
            off, on, capped = (statistics.median(r[m]) for m in ("off", "on", "capped"))
            log(f"MEDIAN produce ({STORE}) tiering off {off:.1f} MiB/s, on {on:.1f} MiB/s ({(on / off - 1) * 100:+.1f} %), "
                f"on with upload cap {UPLOAD_CAP}/s {capped:.1f} MiB/s ({(capped / off - 1) * 100:+.1f} %)")
        if "catchup" in phases:
            footprint_and_catch_up()
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
