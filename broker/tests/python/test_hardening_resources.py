"""Hardening (issue 19, defects 6 and 7) against the real broker process: the broker-wide
partition limit (CreateTopics and CreatePartitions over `topics.max_partitions` get
POLICY_VIOLATION and create nothing); many partitions under a low open-file limit (the broker
creates them, restarts cleanly and after kill -9, serves them, and new clients still connect);
and a full disk on a small tmpfs (the broker restarts while the disk is full, DeleteTopics frees
space, produce works again; CreateTopics on a full disk answers KAFKA_STORAGE_ERROR and leaves no
half-created topic)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka.admin import NewPartitions, NewTopic

from helpers import admin, consume, kafka_error_code, produce_ok, unique, wait_until, watermarks

POLICY_VIOLATION = 44
KAFKA_STORAGE_ERROR = 56

# Many partitions under a low open-file limit: the old broker held three descriptors per
# partition for good, so it failed after ~80 partitions at 256 and could not start again.
NOFILE = 256
MANY_TOPICS = 3
PARTITIONS_PER_TOPIC = 500


def create(bootstrap: str, new_topics, validate_only: bool = False) -> dict:
    a = admin(bootstrap)
    fs = a.create_topics(new_topics, validate_only=validate_only, operation_timeout=60,
                         request_timeout=90)
    out = {}
    for name, f in fs.items():
        try:
            f.result(timeout=120)
            out[name] = 0
        except Exception as e:  # noqa: BLE001 - the code is what is asserted
            out[name] = kafka_error_code(e)
    return out


def partition_counts(bootstrap: str) -> dict:
    md = admin(bootstrap).list_topics(timeout=20)
    return {name: len(t.partitions) for name, t in md.topics.items()}


# -- defect 6: partition limit ------------------------------------------------------------------


def test_create_topics_and_partitions_over_the_partition_limit_are_refused(broker_factory):
    b = broker_factory(["--set", "topics.max_partitions=20", "--set", "topics.num_partitions=1"],
                       name="limit-broker")
    first, second = unique("limit-a"), unique("limit-b")
    assert create(b.bootstrap, [NewTopic(first, 15, 1)]) == {first: 0}
    # 15 + 10 > 20: refused, also when only validating, and nothing is created.
    assert create(b.bootstrap, [NewTopic(second, 10, 1)], validate_only=True) == {second: POLICY_VIOLATION}
    assert create(b.bootstrap, [NewTopic(second, 10, 1)]) == {second: POLICY_VIOLATION}
    counts = partition_counts(b.bootstrap)
    assert second not in counts and counts[first] == 15
    a = admin(b.bootstrap)  # keep a reference: the futures fail if the client is destroyed
    fs = a.create_partitions([NewPartitions(first, 30)], request_timeout=30)
    with pytest.raises(Exception) as refused:
        fs[first].result(timeout=30)
    assert kafka_error_code(refused.value) == POLICY_VIOLATION
    assert "topics.max_partitions" in str(refused.value)
    assert partition_counts(b.bootstrap)[first] == 15
    # Up to the limit is fine.
    assert create(b.bootstrap, [NewTopic(second, 5, 1)]) == {second: 0}
    assert sum(partition_counts(b.bootstrap).values()) == 20
    # Auto-creation is held to the limit too: the topic is not created.
    auto = unique("limit-auto")
    admin(b.bootstrap).list_topics(topic=auto, timeout=10)
    assert auto not in partition_counts(b.bootstrap)
    assert "over its limit of 20" in b.log_text()
    # The admin gRPC API goes through the same check.
    import grpc
    from test_admin_grpc import ReflectedAdmin

    with grpc.insecure_channel(b.admin) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            ReflectedAdmin(ch).call("CreateTopic", name=unique("limit-grpc"), partitions=1)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(info.value.trailing_metadata()).get("fjord-kafka-error") == "PolicyViolation"
    assert len(partition_counts(b.bootstrap)) == 2


# -- defect 6: file handles ---------------------------------------------------------------------


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_many_partitions_under_a_low_open_file_limit_create_restart_and_serve(broker_factory):
    b = broker_factory(["--set", "topics.max_partitions=5000"], name="nofile-broker",
                       preexec_fn=low_nofile)
    topics = [unique(f"many{i}") for i in range(MANY_TOPICS)]
    assert create(b.bootstrap, [NewTopic(t, PARTITIONS_PER_TOPIC, 1) for t in topics]) == {t: 0 for t in topics}
    # Data in partitions spread over every topic (and so over many segment files).
    sample = [0, 1, PARTITIONS_PER_TOPIC // 2, PARTITIONS_PER_TOPIC - 1]
    for t in topics:
        produce_ok(b.bootstrap, t, [{"value": f"{t}-{p}".encode(), "partition": p} for p in sample])
    for kill9 in (False, True):
        b.restart(kill9=kill9)
        counts = partition_counts(b.bootstrap)
        assert all(counts[t] == PARTITIONS_PER_TOPIC for t in topics)
        for t in topics:
            got = consume(b.bootstrap, t, sample, len(sample), timeout=30)
            assert sorted(m.value() for m in got) == sorted(f"{t}-{p}".encode() for p in sample)
    # New clients still connect and are served while every partition is open.
    with ThreadPoolExecutor(max_workers=16) as pool:
        sizes = list(pool.map(lambda _: len(partition_counts(b.bootstrap)), range(32)))
    assert all(n >= MANY_TOPICS for n in sizes)
    produce_ok(b.bootstrap, topics[0], [{"value": b"after", "partition": 7}])
    assert "Too many open files" not in b.log_text()
    # The file cache stays within its bound: half the open-file limit.
    status, _, text = b.http_get("/metrics")
    assert status == 200
    gauges = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("fjord_storage_open_files ", "fjord_storage_max_open_files "))}
    assert gauges["fjord_storage_max_open_files"] == NOFILE // 2
    assert 0 < gauges["fjord_storage_open_files"] <= NOFILE // 2


# -- defect 7: disk full ------------------------------------------------------------------------

TMPFS_SIZE = "32m"
RESERVE = "1MiB"


@pytest.fixture
def small_disk():
    """A 32 MiB tmpfs for a broker's data dir; unmounted afterwards (skips if mount is refused)."""
    mnt = Path(tempfile.mkdtemp(prefix="fjord-disk-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs for the disk-full tests (needs root): {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)
    mnt.rmdir()


def fill_disk(mnt: Path, leave: int = 0) -> None:
    """Writes `mnt/fill` until the file system is full, then frees `leave` bytes of it."""
    fd = os.open(mnt / "fill", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)


def pad_metadata_log(bootstrap: str, topic: str, metadata_log: Path) -> None:
    """Alters `topic`'s retention.ms (a value with leading zeros) so the metadata log ends just
    before a page boundary: the next metadata append needs a new block, as on a real disk."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    def alter(value: str) -> int:
        before = metadata_log.stat().st_size
        a = admin(bootstrap)
        fs = a.alter_configs([ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": value})])
        for f in fs.values():
            f.result(timeout=20)
        return metadata_log.stat().st_size - before

    base = "604800000"
    overhead = alter(base) - len(base)
    room = 4096 - 16 - metadata_log.stat().st_size % 4096 - overhead
    length = room % 4096
    if length < len(base) + 1:
        length += 4096
    alter("0" * (length - len(base)) + base)
    assert metadata_log.stat().st_size % 4096 >= 4096 - 16, metadata_log.stat().st_size


def test_disk_full_start_delete_topics_and_atomic_create(small_disk, request):
    import conftest

    data = small_disk / "data"
    workdir = Path(tempfile.mkdtemp(prefix="fjord-diskfull-"))
    b = conftest.Broker(workdir, [
        "--set", "topics.segment_bytes=1048576", "--set", f"storage.metadata_reserve_bytes={RESERVE}",
    ], "diskfull-broker", data_dir=data)

    def finish():
        b.stop()
        if b in conftest._live_brokers:
            conftest._live_brokers.remove(b)
        if not request.session.testsfailed:
            shutil.rmtree(workdir, ignore_errors=True)

    request.addfinalizer(finish)
    b.start()
    keep, filler, late = unique("keep"), unique("filler"), unique("late")
    assert create(b.bootstrap, [NewTopic(keep, 1, 1), NewTopic(filler, 1, 1)]) == {keep: 0, filler: 0}
    produce_ok(b.bootstrap, keep, [{"value": f"k{i}".encode()} for i in range(10)], acks="all")
    pad_metadata_log(b.bootstrap, filler, data / "metadata" / "metadata.log")
    # Fill the disk with records until produce fails, then the rest with a file.
    from helpers import produce_all, producer
    p = producer(b.bootstrap, acks="all", retries=0, message_timeout_ms=10000)
    acked = 0
    for _ in range(64):
        d = produce_all(p, filler, [{"value": os.urandom(1000)} for _ in range(1000)])
        acked += len(d.ok)
        if d.errors:
            assert d.errors[0][0].code() == KAFKA_STORAGE_ERROR
            break
    else:
        pytest.fail("the disk never filled")
    fill_disk(small_disk, leave=48 * 1024)
    # CreateTopics (and CreatePartitions) on a full disk: KAFKA_STORAGE_ERROR, nothing half made.
    assert create(b.bootstrap, [NewTopic(late, 16, 1)]) == {late: KAFKA_STORAGE_ERROR}
    a = admin(b.bootstrap)
    fs = a.create_partitions([NewPartitions(keep, 8)], request_timeout=30)
    with pytest.raises(Exception) as refused:
        fs[keep].result(timeout=30)
    assert kafka_error_code(refused.value) == KAFKA_STORAGE_ERROR
    counts = partition_counts(b.bootstrap)
    assert late not in counts and counts[keep] == 1
    assert not [d for d in os.listdir(data) if d.startswith(late) or d.startswith(f"{keep}-") and d != f"{keep}-0"]
    fill_disk(small_disk)
    # The broker restarts while the disk is full and serves what it has.
    b.restart()
    assert sorted(m.value() for m in consume(b.bootstrap, keep, [0], 10)) == sorted(f"k{i}".encode() for i in range(10))
    assert watermarks(b.bootstrap, filler) == (0, acked), "every acknowledged record is still there"
    # A metadata change larger than the reserve fails (KAFKA_STORAGE_ERROR) and is cut back out of
    # the metadata log: a partial entry before later ones would stop the next start.
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    metadata_log = data / "metadata" / "metadata.log"
    size = metadata_log.stat().st_size
    big = AdminClient({"bootstrap.servers": b.bootstrap, "message.max.bytes": 10_000_000})
    huge = "0" * (3 << 19) + "604800000"
    fs = big.alter_configs([ConfigResource(ResourceType.TOPIC, keep, set_config={"retention.ms": huge})])
    with pytest.raises(Exception) as failed:
        list(fs.values())[0].result(timeout=30)
    assert kafka_error_code(failed.value) == KAFKA_STORAGE_ERROR
    assert metadata_log.stat().st_size == size
    # DeleteTopics commits (the metadata reserve is released) and frees space; produce works again.
    a = admin(b.bootstrap)
    fs = a.delete_topics([filler], operation_timeout=20)
    fs[filler].result(timeout=30)
    assert "released the metadata disk reserve" in b.log_text()
    wait_until(lambda: filler not in partition_counts(b.bootstrap), 10, "topic deleted")
    p = producer(b.bootstrap, acks="all", retries=0, message_timeout_ms=5000)
    wait_until(lambda: not produce_all(p, keep, [{"value": b"again"}]).errors, 30, "produce after the delete")
    assert create(b.bootstrap, [NewTopic(late, 4, 1)]) == {late: 0}
    b.stop()
    # And after all that, the next start is clean and complete.
    b.start()
    counts = partition_counts(b.bootstrap)
    assert counts[keep] == 1 and counts[late] == 4 and filler not in counts
