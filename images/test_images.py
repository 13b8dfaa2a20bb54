"""Smoke tests of the container images (images/*.Containerfile, built by scripts/images.sh).

No Docker daemon runs in CI and no registry is reachable, so the images are built daemonless with
buildah on a runtime base made offline from Debian packages (`--local-base`), from the debug
binaries the test script already built (`--prebuilt`, debug info stripped). `podman run` cannot
start containers on these machines (crun: cgroups in hybrid mode), so an image is run the way a
container runtime would run it, from its own root filesystem (`buildah mount`): in new mount and
PID namespaces (the program is PID 1), the root filesystem mounted read-only, volumes bind-mounted,
chrooted into the image, working directory, environment and user taken from the image config,
program and arguments resolved with Kubernetes' command/args-over-Entrypoint/Cmd rules. Only the
network namespace is the host's, so clients reach the broker on loopback.

Run as root with buildah installed (scripts/test.sh installs it and sets FJORD_REQUIRE_IMAGES=1, so
CI fails instead of skipping when either is missing)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "broker" / "tests" / "python"))

from helpers import wait_until  # noqa: E402

TARGET = Path(os.environ.get("FJORD_TARGET_DIR", ROOT / "target" / "debug"))
REGISTRY = "ghcr.io/fjord-streaming"
NONROOT = 65532


def workspace_version() -> str:
    meta = json.loads(subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
                                     cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    return next(p["version"] for p in meta["packages"] if p["name"] == "fjord-broker")


VERSION = workspace_version()
BROKER = f"{REGISTRY}/fjord-broker:{VERSION}"
OPERATOR = f"{REGISTRY}/fjord-operator:{VERSION}"


def _images_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (buildah, mount and PID namespaces)"
    if shutil.which("buildah") is None:
        return "buildah is not installed (apt-get install buildah)"
    return None


_why = _images_unavailable()
if _why and os.environ.get("FJORD_REQUIRE_IMAGES") == "1":
    raise RuntimeError(f"FJORD_REQUIRE_IMAGES=1 but the image tests cannot run: {_why}")
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")


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


class Container:
    """A working container of an image: its root filesystem mounted on the host and its config."""

    def __init__(self, image: str):
        self.image = image
        self.id = subprocess.run(["buildah", "from", "--pull-never", image], capture_output=True, text=True,
                                 check=True).stdout.strip()
        self.rootfs = Path(subprocess.run(["buildah", "mount", self.id], capture_output=True, text=True,
                                          check=True).stdout.strip())
        inspect = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", image],
                                            capture_output=True, text=True, check=True).stdout)
        self.config = inspect["OCIv1"]["config"]

    def remove(self):
        subprocess.run(["buildah", "umount", self.id], capture_output=True)
        subprocess.run(["buildah", "rm", self.id], capture_output=True)

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env", []))

    def resolve(self, program: str) -> str | None:
        """The absolute path of `program` inside the image, looked up on the image's PATH as
        execvp does (without following the last symlink)."""
        if "/" in program:
            return program if (self.rootfs / program.lstrip("/")).is_file() else None
        for d in self.env.get("PATH", "").split(":"):
            if d and os.access(self.rootfs / d.lstrip("/") / program, os.X_OK):
                return f"{d.rstrip('/')}/{program}"
        return None

    def start(self, *, command: list[str] | None = None, args: list[str] | None = None,
              env: dict[str, str] | None = None, volumes: dict[str, tuple[Path, bool]] | None = None,
              log: Path) -> subprocess.Popen:
        """Starts the container's process as a runtime would (see the module docstring).
        `volumes` maps a path in the container to (host directory, read_only)."""
        entry, cmd = self.config.get("Entrypoint") or [], self.config.get("Cmd") or []
        # Kubernetes: command replaces Entrypoint (and drops Cmd); args replace Cmd.
        argv = (command if command is not None else entry) + (args if args is not None else
                                                               ([] if command is not None else cmd))
        assert argv, f"{self.image}: nothing to run"
        uid, _, gid = self.config.get("User", "0").partition(":")
        full_env = {**self.env, **(env or {})}
        root = str(self.rootfs)
        lines = ["set -e", "mount --make-rprivate /", f"mount --bind '{root}' '{root}'"]
        for path, (host, read_only) in (volumes or {}).items():
            target = self.rootfs / path.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)  # the runtime makes mount points too
            lines.append(f"mount --bind '{host}' '{target}'")
            if read_only:
                lines.append(f"mount -o remount,bind,ro '{target}'")
        lines.append(f"mount -o remount,bind,ro '{root}'")  # readOnlyRootFilesystem
        setid = ["--setgid", gid or uid, "--setuid", uid] if uid not in ("", "0", "root") else []
        inner = (["env", "-i"] + [f"{k}={v}" for k, v in full_env.items()]
                 + ["/usr/bin/unshare", f"--root={root}", f"--wd={self.config.get('WorkingDir') or '/'}"]
                 + setid + ["--"] + argv)
        lines.append("exec " + " ".join(shlex.quote(a) for a in inner))
        script = log.with_suffix(".sh")
        script.write_text("\n".join(lines) + "\n")
        out = open(log, "ab")
        return subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--kill-child", "bash", str(script)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def image_process(parent: subprocess.Popen, program: str) -> int:
    """The host pid of `program` running under `parent` (unshare and its forked child)."""
    def ppid(pid: int) -> int:
        try:
            return int(re.search(r"^PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
        except (OSError, AttributeError):
            return 0

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and parent.poll() is None:
        for comm in Path("/proc").glob("[0-9]*/comm"):
            try:
                if comm.read_text().strip() != program[:15]:
                    continue
            except OSError:
                continue
            pid = p = int(comm.parent.name)
            while p > 1:
                if p == parent.pid:
                    return pid
                p = ppid(p)
        time.sleep(0.05)
    raise AssertionError(f"{program} did not start (exit {parent.poll()})")


@pytest.fixture(scope="module")
def built():
    """Builds the base, broker and operator images from the debug binaries; yields the timings."""
    for binary in ("fjord-broker", "fjord-operator", "fjord-e2e-render"):
        assert (TARGET / binary).exists(), f"build {binary} first (cargo build -p fjord-broker -p fjord-operator -p e2e)"
    start = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "images.sh"), "--engine", "buildah", "--local-base",
                         "--prebuilt", str(TARGET), "broker", "operator"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout, f"images built in {time.monotonic() - start:.1f}s")
    assert f"built {BROKER}" in out.stdout and f"built {OPERATOR}" in out.stdout, out.stdout
    return out.stdout


@pytest.fixture
def container(built):
    made: list[Container] = []

    def make(image: str) -> Container:
        c = Container(image)
        made.append(c)
        return c

    yield make
    for c in made:
        c.remove()


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.mark.parametrize("image,binary", [(BROKER, "fjord-broker"), (OPERATOR, "fjord-operator")])
def test_image_config(container, image, binary):
    """Non-root user, the binary as entrypoint, OCI labels with the workspace version, no shell,
    and a small image."""
    c = container(image)
    cfg = c.config
    assert cfg["User"] == f"{NONROOT}:{NONROOT}"
    assert cfg["Entrypoint"] == [f"/usr/local/bin/{binary}"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://github.com/fjord-streaming/")
    assert labels["org.opencontainers.image.title"] == binary
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    for shell in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash", "bin/busybox"):
        assert not (c.rootfs / shell).exists(), f"{image} has a shell: /{shell}"
    assert not (c.rootfs / "usr/bin/apt").exists() and not (c.rootfs / "usr/bin/dpkg").exists()
    passwd = (c.rootfs / "etc/passwd").read_text()
    assert f"nonroot:x:{NONROOT}:{NONROOT}:" in passwd
    assert (c.rootfs / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000  # for S3 over TLS
    binary_size = (c.rootfs / "usr/local/bin" / binary).stat().st_size
    rest = du(c.rootfs) - binary_size
    print(f"{image}: binary {binary_size / 1e6:.1f} MB (debug build, debug info stripped), "
          f"rest of the image {rest / 1e6:.1f} MB")
    assert rest < 20_000_000, f"the runtime base grew to {rest} bytes"
    assert binary_size < 150_000_000, "debug info was not stripped from the binary"
    if binary == "fjord-broker":
        assert cfg["Volumes"] == {"/var/lib/fjord": {}}
        assert cfg["WorkingDir"] == "/var/lib/fjord"
        st = (c.rootfs / "var/lib/fjord").stat()
        assert (st.st_uid, st.st_gid) == (NONROOT, NONROOT), "the data directory belongs to the broker's user"
        assert cfg["StopSignal"] == "SIGTERM"


def render(tmp_path: Path, spec: str, name: str) -> list[dict]:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(f"apiVersion: fjord.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n{spec}")
    out = subprocess.run([str(TARGET / "fjord-e2e-render"), str(manifest), str(tmp_path / name)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_broker_image_runs_the_operators_pod(container, tmp_path):
    """The broker pod exactly as the operator renders it (fjord-e2e-render: command, args, env,
    broker.toml; default image), run in the broker image: shell-less start as PID 1, non-root,
    read-only root filesystem, config and data volumes at the pod's paths. The second rack's pod
    must come up as node 1000 in rack b; a confluent-kafka round trip goes through it; SIGTERM
    from the runtime shuts it down cleanly (exit 0)."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    kafka, admin, http = free_port(), free_port(), free_port()
    pods = render(tmp_path, f"  brokers: 2\n  racks: [{{name: a}}, {{name: b}}]\n"
                            f"  listeners: {{kafka: {kafka}, admin: {admin}, http: {http}}}\n", "img")
    launch = next(p for p in pods if p["pod"] == "img-b-0")
    assert launch["image"] == BROKER, "the operator's default broker image is what scripts/images.sh builds"
    c = container(launch["image"])
    # Undo the renderer's only path substitution: the pod sees its volumes at the real mount paths.
    config_dir, data_dir = Path(launch["config_dir"]), Path(launch["data_dir"])
    unmap = lambda s: s.replace(str(config_dir), "/etc/fjord").replace(str(data_dir), "/var/lib/fjord")  # noqa: E731
    config_dir.mkdir(parents=True)
    data_dir.mkdir(parents=True)
    os.chown(data_dir, NONROOT, NONROOT)  # what fsGroup does for the PersistentVolume
    for fname, text in launch["config_files"].items():
        (config_dir / fname).write_text(unmap(text))
    command = [unmap(a) for a in launch["command"]]
    assert c.resolve(command[0]) == c.config["Entrypoint"][0], \
        f"the operator runs {command[0]!r}, which must be the image's entrypoint on its PATH"
    log = tmp_path / "broker.log"
    proc = c.start(command=command[:1], args=command[1:], env={**launch["env"], "RUST_LOG": "info"},
                   volumes={"/etc/fjord": (config_dir, True), "/var/lib/fjord": (data_dir, False)}, log=log)
    try:
        pid = image_process(proc, "fjord-broker")
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{NONROOT}\s+{NONROOT}\s+{NONROOT}\s+{NONROOT}$", status, re.M), status
        assert re.search(r"^NSpid:\s+\d+\s+1$", status, re.M), "the broker is PID 1 of its namespace"
        root_opts = next(line.split()[5] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                         if line.split()[4] == "/")
        assert "ro" in root_opts.split(","), f"root filesystem mounted {root_opts}"
        wait_until(lambda: proc.poll() is not None or port_open(kafka), 60, "broker listening")
        assert proc.poll() is None, log.read_text()[-3000:]
        bootstrap = f"127.0.0.1:{kafka}"
        admin_client = AdminClient({"bootstrap.servers": bootstrap})
        nodes = admin_client.describe_cluster(request_timeout=10).result(30).nodes
        assert [(n.id, n.rack) for n in nodes] == [(1000, "b")], "node id = rack b's base 1000 + ordinal 0"
        topic = f"img-{uuid.uuid4().hex[:8]}"
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        errors = []
        for i in range(100):
            p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, on_delivery=lambda e, m: e and errors.append(e))
        assert p.flush(30) == 0 and not errors, errors
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 100 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        consumer.close()
        assert sorted(got) == sorted(b"v%d" % i for i in range(100))
        assert any(data_dir.glob(f"data/{topic}-0/*.log")), "the data went to the data volume"
        os.kill(pid, signal.SIGTERM)  # what the runtime sends on pod deletion (STOPSIGNAL)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert "shutdown complete" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_images_run_their_binaries(container, tmp_path):
    """The operator image's binary runs (read-only root, non-root) and prints its help; the broker
    image's binary reports the version its labels and tag carry."""
    op = container(OPERATOR)
    log = tmp_path / "operator.log"
    proc = op.start(args=["--help"], log=log)
    assert proc.wait(timeout=30) == 0, log.read_text()
    assert "--lease" in log.read_text() and "--admin-endpoint" in log.read_text()
    broker = container(BROKER)
    log = tmp_path / "version.log"
    proc = broker.start(args=["--version"], log=log)
    assert proc.wait(timeout=30) == 0, log.read_text()
    assert log.read_text().strip() == f"fjord-broker {VERSION}"


def test_chart_and_operator_defaults_match_the_images():
    """`helm install` with default values and a Cluster without spec.image pull exactly the
    names and tags scripts/images.sh builds (the workspace version is the chart's appVersion)."""
    chart = (ROOT / "charts/fjord-operator/Chart.yaml").read_text()
    assert re.search(rf'^appVersion:\s*"?{re.escape(VERSION)}"?\s*$', chart, re.M), "appVersion != workspace version"
    values = (ROOT / "charts/fjord-operator/values.yaml").read_text()
    assert re.search(rf"^  repository: {re.escape(OPERATOR.rsplit(':', 1)[0])}$", values, re.M)
    assert re.search(r'^  tag: ""', values, re.M), "the chart's image tag defaults to appVersion"
    script = (ROOT / "scripts/images.sh").read_text()
    assert f"FJORD_IMAGE_REGISTRY:-{REGISTRY}" in script
