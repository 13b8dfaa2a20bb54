"""Fixtures that run the real fjord-broker binary as a separate process.

`FJORD_BROKER_BIN` names the binary (scripts/test.sh sets it). Each test module gets its own
broker (fixture `broker`), started on free loopback ports with a fresh data directory; modules
that need special flags use `broker_factory`. The broker's stdout/stderr go to a log file in its
data directory's parent, and the tail of every broker log of the module is attached to each
failing test's report.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from helpers import wait_until
from netfault import Links

LOG_TAIL_LINES = 60
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

_live_brokers: list["Broker"] = []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_bin() -> str:
    path = os.environ.get("FJORD_BROKER_BIN")
    if not path:
        pytest.fail("FJORD_BROKER_BIN is not set: point it at the fjord-broker binary "
                    "(scripts/test.sh does: FJORD_BROKER_BIN=$PWD/target/debug/fjord-broker)",
                    pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"FJORD_BROKER_BIN={path} is not an executable file "
                    "(build it: cargo build -p fjord-broker --bins)", pytrace=False)
    return path


class Broker:
    """One fjord-broker process. Ports and data dir stay the same across restart()."""

    def __init__(self, workdir: Path, extra_args: list[str] | None = None, name: str = "broker",
                 preexec_fn=None, data_dir: Path | None = None, env: dict | None = None):
        """`preexec_fn` runs in the child before exec (e.g. resource.setrlimit for a low
        `ulimit -n`); `data_dir` puts the data elsewhere (e.g. on a small tmpfs)."""
        self.name = name
        self.preexec_fn = preexec_fn
        self.env = dict(env or {})
        self.workdir = workdir
        self.data_dir = data_dir or workdir / "data"
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.port = _free_port()
        self.http_port = _free_port()
        self.admin_port = _free_port()
        self.admin = f"127.0.0.1:{self.admin_port}"
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []
        self.starts = 0
        self.port_retries = 0

    # -- lifecycle ------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [broker_bin(), "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
                "--http-listen", f"127.0.0.1:{self.http_port}",
                "--set", f"admin.listen={self.admin}", *self.extra_args]

    def start(self) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        # After a stop the listen port must be bindable again; wait for that, not a fixed time.
        wait_until(lambda: _port_bindable(self.port), timeout=30, what=f"port {self.port} free")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            env = dict(os.environ, NO_COLOR="1", **self.env)  # plain log lines in the log file
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                                         preexec_fn=self.preexec_fn)
        if self not in _live_brokers:
            _live_brokers.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None and self._port_taken_by_another_process():
                # Ports come from the OS and are free when chosen, but another process (a
                # concurrent test run) may bind one before the broker does: choose new ones.
                return self.start()
            if rc is not None:
                raise AssertionError(f"{self.name} exited with {rc} during startup\n{self.log_tail()}")
            if self.health_status() == 200:
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: /health not 200 within {START_TIMEOUT}s\n"
                                     f"{self.log_tail()}")
            time.sleep(0.05)

    def _port_taken_by_another_process(self) -> bool:
        """After a failed start: was it an http or admin port that someone else took? Those are
        re-chosen (at most 3 times); the Kafka and controller ports stay fixed."""
        tail = self.log_tail()
        if "Address already in use" not in tail or self.port_retries >= 3:
            return False
        if "binding the http listener" in tail:
            self.http_port = _free_port()
            self.http = f"http://127.0.0.1:{self.http_port}"
        elif "binding the admin grpc listener" in tail:
            self.admin_port = _free_port()
            self.admin = f"127.0.0.1:{self.admin_port}"
        else:
            return False
        self.port_retries += 1
        self.starts -= 1
        return True

    def health_status(self) -> int | None:
        try:
            with urllib.request.urlopen(self.http + "/health", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def http_get(self, path: str) -> tuple[int, str, str]:
        """(status, content-type, body text)"""
        try:
            with urllib.request.urlopen(self.http + path, timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.proc.wait(timeout=STOP_TIMEOUT))

    def stop(self) -> int:
        """SIGTERM, wait for exit; returns the exit code (SIGKILL after STOP_TIMEOUT: then the
        return value is -9, which callers that expect a clean shutdown assert against)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== test harness: no exit {STOP_TIMEOUT}s after SIGTERM, killed\n".encode())
        self.exit_codes.append(rc)
        return rc

    def restart(self, kill9: bool = False) -> int | None:
        """Stops (SIGTERM, or SIGKILL if kill9) and starts again on the same ports and data dir.
        Returns the exit code of the stopped process."""
        if kill9:
            self.kill9()
            rc = self.exit_codes[-1]
        else:
            rc = self.stop()
        self.start()
        return rc

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"({self.log_path} missing)"
        return f"--- last {min(n, len(lines))} lines of {self.log_path} ---\n" + "\n".join(lines[-n:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _port_bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def broker_factory(request):
    """Module-scoped factory: broker_factory(extra_args=[...], name=..., preexec_fn=...,
    data_dir=...) -> started Broker (keyword arguments go to `Broker`).
    Every broker it made is stopped (SIGTERM) at the end of the module and its tmp dir removed
    unless a test of the module failed (then the path is printed)."""
    made: list[Broker] = []
    root = Path(tempfile.mkdtemp(prefix=f"fjord-{request.module.__name__}-"))

    def make(extra_args: list[str] | None = None, name: str | None = None, **kwargs) -> Broker:
        name = name or f"broker{len(made)}"
        b = Broker(root / name, extra_args, name, **kwargs)
        made.append(b)
        b.start()
        return b

    yield make
    failed = False
    for b in made:
        rc = b.stop()
        if rc not in (0, None):
            print(f"\n{b.name}: exit code {rc} after SIGTERM\n{b.log_tail()}")
            failed = True
        if b in _live_brokers:
            _live_brokers.remove(b)
    if failed or request.session.testsfailed or os.environ.get("FJORD_KEEP_TMP"):
        print(f"\nbroker dirs kept at {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(broker_factory) -> Broker:
    """The module's default broker: auto-create on, default settings."""
    return broker_factory(name="broker")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in list(_live_brokers):
            report.sections.append((f"{b.name} log ({'alive' if b.alive() else 'not running'})",
                                    b.log_tail()))


class Cluster:
    """N fjord-broker processes on loopback forming one cluster: the first `voters` brokers are
    the controller quorum, the rest learners; broker i is node i+1 in rack racks[i % len]."""

    def __init__(self, root: Path, size: int, racks: list[str], voters: int, extra_args: list[str],
                 proxied: bool = False):
        """`proxied`: every broker reaches every other broker's controller listener through its
        own `netfault.LinkProxy`, and its inter-broker Kafka listener (`REPLICATION`, for replica
        fetches) through a `netfault.KafkaRouteProxy` (self.links), so a test can cut links
        between brokers; clients use the direct `PLAINTEXT` listener."""
        self.cluster_id = "fjordtestcluster" + uuid.uuid4().hex[:6]
        self.controller_ports = [_free_port() for _ in range(size)]
        self.replication_ports = [_free_port() for _ in range(size)]
        self.links = Links({i + 1: port for i, port in enumerate(self.controller_ports)},
                           {i + 1: port for i, port in enumerate(self.replication_ports)}) if proxied else None
        self.brokers: list[Broker] = []
        for i in range(size):
            def addr(j: int, i: int = i) -> str:
                if self.links is None or i == j:
                    return f"127.0.0.1:{self.controller_ports[j]}"
                return self.links.address(i + 1, j + 1)
            voter_list = ",".join(f"{j + 1}@{addr(j)}" for j in range(voters))
            args = ["--node-id", str(i + 1), "--rack", racks[i % len(racks)],
                    "--controller-voters", voter_list,
                    "--controller-listen", f"127.0.0.1:{self.controller_ports[i]}",
                    "--set", f"cluster.id={self.cluster_id}", *extra_args]
            if self.links is not None:
                args += ["--set", f"network.listeners=REPLICATION://127.0.0.1:{self.replication_ports[i]}",
                         "--set", f"network.advertised_listeners=REPLICATION://{self.links.route(i + 1)}",
                         "--set", "network.listener_security_protocol_map=REPLICATION:PLAINTEXT",
                         "--set", "network.inter_broker_listener_name=REPLICATION"]
            self.brokers.append(Broker(root / f"node{i + 1}", args, f"node{i + 1}"))

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers if b.alive())

    def node(self, node_id: int) -> Broker:
        return self.brokers[node_id - 1]

    def start(self) -> "Cluster":
        for b in self.brokers:
            b.start()
        return self


@pytest.fixture(scope="module")
def cluster_factory(request):
    """Module-scoped factory: cluster_factory(size=3, racks=["a","b","c"], voters=3,
    extra_args=[...]) -> a started Cluster (wait for registration with helpers.wait_registered).
    Every broker is stopped at the end of the module; dirs are kept when a test failed."""
    made: list[Cluster] = []
    root = Path(tempfile.mkdtemp(prefix=f"fjord-{request.module.__name__}-"))

    def make(size: int = 3, racks: list[str] | None = None, voters: int = 3,
             extra_args: list[str] | None = None, proxied: bool = False) -> Cluster:
        c = Cluster(root / f"cluster{len(made)}", size, racks or ["a", "b", "c"], voters, extra_args or [],
                    proxied=proxied)
        made.append(c)
        c.start()
        return c

    yield make
    for c in made:
        if c.links is not None:
            c.links.heal_all()  # so controlled shutdowns can reach the controller
        for b in c.brokers:
            if b.proc is not None and b.proc.poll() is None:
                try:
                    b.proc.send_signal(signal.SIGCONT)
                except OSError:
                    pass
            b.stop()
            if b in _live_brokers:
                _live_brokers.remove(b)
        if c.links is not None:
            c.links.close()
    if request.session.testsfailed or os.environ.get("FJORD_KEEP_TMP"):
        print(f"\ncluster dirs kept at {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
