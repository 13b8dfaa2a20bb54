"""kcat smoke test (Debian's kcat, linked against its own, older librdkafka): metadata listing
(-L), producing lines with keys (-P -K:), and consuming them back exactly (-C -e)."""

import shutil
import subprocess

import pytest

from helpers import create_topic, unique, watermarks


def kcat(*args, stdin: str | None = None, timeout: float = 60) -> str:
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs it with apt-get)", pytrace=False)
    r = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"kcat {' '.join(args)} exited {r.returncode}\nstderr: {r.stderr}"
    return r.stdout


def test_kcat_metadata_produce_consume(broker):
    topic = unique("kcat")
    create_topic(broker.bootstrap, topic, partitions=2)

    listing = kcat("-b", broker.bootstrap, "-L")
    assert f'topic "{topic}" with 2 partitions:' in listing, listing
    assert f"broker 0 at 127.0.0.1:{broker.port}" in listing, listing
    only = kcat("-b", broker.bootstrap, "-L", "-t", topic)
    assert f'topic "{topic}" with 2 partitions:' in only
    assert "partition 0, leader 0" in only and "partition 1, leader 0" in only, only

    lines = [f"key{i}:line {i} with some text" for i in range(25)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", "1", "-K:", stdin="\n".join(lines) + "\n")
    assert watermarks(broker.bootstrap, topic, 1) == (0, 25)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)

    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q",
               "-f", "%p|%o|%k|%s\n")
    expected = [f"1|{i}|key{i}|line {i} with some text" for i in range(25)]
    assert out.splitlines() == expected

    # Keyless produce with the default partitioner into partition 0 and a plain consume.
    plain = [f"plain-{i}" for i in range(5)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", stdin="\n".join(plain) + "\n")
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-e", "-o", "beginning", "-q")
    assert out.splitlines() == plain
