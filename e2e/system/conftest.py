"""Fixtures of the system suite: Fjord Clusters run as local processes, each broker pod started
exactly as the operator's StatefulSet would start it. The launch (command, env, rendered
broker.toml) comes from `fjord-e2e-render`, which calls the operator's own builders
(operator/src/cluster/build.rs); see e2e/src/lib.rs for the few Kubernetes-only substitutions."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "broker" / "tests" / "python"))  # reuse helpers.py and the moto fixture

from helpers import wait_until  # noqa: E402
from test_tiering import S3Server, BUCKET  # noqa: E402,F401

TARGET = Path(os.environ.get("FJORD_TARGET_DIR", ROOT / "target" / "debug"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Pod:
    """One broker pod as a process: start, kill -9, terminate; the data dir survives restarts
    (like the pod's PersistentVolumeClaim)."""

    def __init__(self, launch: dict, kafka_port: int):
        self.launch = launch
        self.name = launch["pod"]
        self.kafka_port = kafka_port
        self.proc: subprocess.Popen | None = None
        config_dir = Path(launch["config_dir"])
        config_dir.mkdir(parents=True, exist_ok=True)
        Path(launch["data_dir"]).mkdir(parents=True, exist_ok=True)
        for name, text in launch["config_files"].items():
            (config_dir / name).write_text(text)
        self.log_path = config_dir.parent / "broker.log"

    def start(self):
        env = {"PATH": f"{TARGET}:{os.environ['PATH']}", "RUST_LOG": "info", **self.launch["env"]}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.launch["command"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.proc.poll() is not None or port_open(self.kafka_port), 60,
                   f"{self.name} listening")
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LocalCluster:
    def __init__(self, pods: list[Pod]):
        self.pods = pods

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p.kafka_port}" for p in self.pods)

    def stop(self):
        for p in self.pods:
            p.stop()


@pytest.fixture
def cluster_factory(tmp_path):
    """cluster_factory(spec_yaml_lines, secrets) renders and starts a one-broker Cluster.
    Each Cluster gets free ports through spec.listeners (every pod of a Cluster uses the same
    ports in Kubernetes, so one process per Cluster here)."""
    started: list[LocalCluster] = []

    def make(extra_spec: str = "", secrets: dict | None = None, name: str = "e2e") -> LocalCluster:
        kafka, admin, http = free_port(), free_port(), free_port()
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(
            "apiVersion: fjord.dev/v1alpha1\nkind: Cluster\n"
            f"metadata:\n  name: {name}\nspec:\n  brokers: 1\n"
            f"  listeners: {{kafka: {kafka}, admin: {admin}, http: {http}}}\n" + extra_spec)
        secrets_path = tmp_path / f"{name}-secrets.json"
        secrets_path.write_text(json.dumps(secrets or {}))
        out = subprocess.run([str(TARGET / "fjord-e2e-render"), str(manifest), str(tmp_path / name),
                              str(secrets_path)], capture_output=True, text=True, check=True)
        pods = [Pod(launch, kafka) for launch in json.loads(out.stdout)]
        c = LocalCluster(pods)
        started.append(c)
        for p in pods:
            p.start()
        return c

    yield make
    for c in started:
        c.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()
