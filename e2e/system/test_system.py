"""System tests without Kubernetes: each Fjord broker is started the way the operator's
StatefulSet starts it (same command and arguments, no shell, same env, same broker.toml, rendered by the
operator's builders through fjord-e2e-render), with a real S3 server (moto) and third-party
clients (confluent-kafka / librdkafka).

Scenarios: produce/consume; a consumer group whose member is killed (-9) hands its partitions
to the survivor; tiering round trip through S3 with local copies deleted; broker kill -9 and
restart under load with no acknowledged record lost."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from conftest import BUCKET
from helpers import consume, create_topic, produce_ok, unique, wait_until


def test_rendered_pod_is_the_operators(cluster_factory):
    """The broker runs from the operator-rendered config and the StatefulSet's command."""
    c = cluster_factory(name="render")
    pod = c.pods[0]
    config = f"{pod.launch['config_dir']}/broker.toml"
    assert pod.launch["command"] == ["fjord-broker", "--config", config,
                                     "--node-id-base", "0", "--pod-name", "render-broker-0"]
    assert pod.launch["config_files"]["broker.toml"].startswith("# Rendered by fjord-operator")
    assert pod.launch["env"]["POD_NAME"] == "render-broker-0"


def test_produce_consume(cluster_factory):
    c = cluster_factory(name="pc")
    topic = unique("e2e-pc")
    create_topic(c.bootstrap, topic, partitions=3)
    recs = [{"partition": i % 3, "key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(3000)]
    delivered = produce_ok(c.bootstrap, topic, recs, acks="all")
    assert len(delivered) == 3000
    got = consume(c.bootstrap, topic, [0, 1, 2], 3000)
    assert sorted(m.value() for m in got) == sorted(r["value"] for r in recs)


MEMBER = r"""
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe([sys.argv[3]], on_assign=lambda c, ps: print("assigned", len(ps), flush=True))
while True:
    c.poll(0.2)
"""


def test_group_member_killed(cluster_factory):
    """Two members share a 4-partition topic; one is killed with SIGKILL (no LeaveGroup); after
    its session times out the survivor owns all 4 partitions and reads every record."""
    c = cluster_factory(name="grp")
    topic, group = unique("e2e-grp"), unique("g")
    create_topic(c.bootstrap, topic, partitions=4)
    recs = [{"partition": i % 4, "value": f"r{i}".encode()} for i in range(400)]
    produce_ok(c.bootstrap, topic, recs)
    victim = subprocess.Popen([sys.executable, "-c", MEMBER, c.bootstrap, group, topic],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout.readline().startswith("assigned"), "the first member never joined"
        survivor = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        assignment: list = []
        survivor.subscribe([topic], on_assign=lambda _c, ps: assignment.__setitem__(slice(None), ps))
        seen: dict[int, set] = {}

        def poll_until(pred, timeout, what):
            deadline = time.monotonic() + timeout
            while not pred():
                assert time.monotonic() < deadline, f"timed out waiting for {what}; assignment {assignment}"
                m = survivor.poll(0.2)
                if m is not None and not m.error():
                    seen.setdefault(m.partition(), set()).add(m.value())
        poll_until(lambda: 0 < len(assignment) < 4, 60, "the group to be shared by two members")
        victim.kill()  # SIGKILL: no LeaveGroup, the broker must expire the session
        victim.wait(timeout=10)
        poll_until(lambda: len(assignment) == 4, 60, "the survivor to own all 4 partitions")
        poll_until(lambda: sum(len(v) for v in seen.values()) >= 400, 60, "every record")
        assert set().union(*seen.values()) == {r["value"] for r in recs}
        survivor.close()
    finally:
        if victim.poll() is None:
            victim.kill()


def test_tiering_round_trip(cluster_factory, s3):
    """Cluster.spec.objectStore (credentials from a Secret) makes the brokers tier to S3: closed
    segments land in the bucket, local copies are deleted, a consumer from offset 0 gets every
    record back byte-identical."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    c = cluster_factory(name="tier", secrets={"s3": {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}},
                        extra_spec=(f"  objectStore:\n    url: s3://{BUCKET}/{prefix}\n    endpoint: {s3.endpoint}\n"
                                    "    region: us-east-1\n    credentialsSecret: {name: s3}\n"
                                    "  config:\n    tiering.upload_interval: 200ms\n"
                                    "    storage.retention_check_interval: 500ms\n"))
    assert "[tiering]" in c.pods[0].launch["config_files"]["broker.toml"]
    topic = unique("e2e-tier")
    create_topic(c.bootstrap, topic, config={"remote.storage.enable": "true", "segment.bytes": "16384",
                                             "local.retention.bytes": "1", "retention.ms": "-1"})
    recs = [{"partition": 0, "key": f"k{i}".encode(), "value": f"{i:08d}".encode() + bytes(700)} for i in range(600)]
    for i in range(0, len(recs), 100):
        produce_ok(c.bootstrap, topic, recs[i:i + 100], linger_ms=0, batch_size=4096)
    http = c.pods[0].launch["config_files"]["broker.toml"].split("[http]")[1].split('listen = "0.0.0.0:')[1].split('"')[0]

    def state():
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/tiering", timeout=5) as r:
            return next((s for s in json.load(r) if s["topic"] == topic), None)
    st = wait_until(lambda: (s := state()) and s["remote_segments"] >= 10 and s["local_log_start_offset"] > 300 and s,
                    90, "segments uploaded and local copies deleted", interval=0.2)
    assert any(k.startswith(prefix + "/") and k.endswith(".seg") for k in s3.keys(prefix + "/"))
    got = consume(c.bootstrap, topic, [0], 600)
    assert [m.offset() for m in got] == list(range(600))
    assert all(m.key() == r["key"] and m.value() == r["value"] for m, r in zip(got, recs))
    assert st["remote_log_start_offset"] == 0


def test_kill9_restart_under_load_loses_no_acked_record(cluster_factory):
    """A producer (acks=all, idempotent) writes continuously; the broker pod is killed with
    SIGKILL and restarted on the same data dir (its PVC); every acknowledged record is then read
    back at its acknowledged offset."""
    c = cluster_factory(name="k9")
    pod = c.pods[0]
    topic = unique("e2e-k9")
    create_topic(c.bootstrap, topic, partitions=2)
    acked: dict[tuple[int, int], bytes] = {}
    failed = []
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            failed.append(err)

    def run():
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5, "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 500})
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, value=f"x{i}".encode(), partition=i % 2, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.001 if i % 50 else 0.01)
        assert p.flush(120) == 0
    t = threading.Thread(target=run)
    t.start()
    try:
        wait_until(lambda: len(acked) > 2000, 60, "records acknowledged before the kill")
        pod.kill9()
        before = len(acked)
        time.sleep(1)
        pod.start()
        wait_until(lambda: len(acked) > before + 2000, 90, "records acknowledged after the restart")
    finally:
        stop.set()
        t.join(timeout=150)
    assert not t.is_alive()
    assert not failed, failed[:5]
    for part in (0, 1):
        want = {o: v for (p, o), v in acked.items() if p == part}
        got = {}
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": unique("k9"), "enable.auto.commit": False})
        cons.assign([TopicPartition(topic, part, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 60
        while len(got) < len(want) and time.monotonic() < deadline:
            for m in cons.consume(1000, 0.5):
                if not m.error():
                    got[m.offset()] = m.value()
        cons.close()
        missing = [o for o, v in want.items() if got.get(o) != v]
        assert not missing, f"partition {part}: {len(missing)} acknowledged records lost or changed, e.g. {missing[:5]}"
