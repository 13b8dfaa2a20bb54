"""Shared client-side helpers for the integration tests: deadlines, unique names, and thin
wrappers around confluent-kafka (produce with delivery reports, consume by manual assignment)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    """Polls pred() until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    a = admin(bootstrap)  # keep a reference: the futures fail if the client is destroyed
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10, request_timeout=15)
    fs[name].result(timeout=20)
    wait_until(lambda: _has_leaders(bootstrap, name, partitions), 10, f"metadata for {name}")


def _has_leaders(bootstrap: str, name: str, partitions: int) -> bool:
    md = admin(bootstrap).list_topics(timeout=10)
    t = md.topics.get(name)
    return (t is not None and t.error is None and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values()))


def producer(bootstrap: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 30000}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


class Delivery:
    """Collects delivery reports: .ok is a list of Message, .errors a list of (KafkaError, Message)."""

    def __init__(self):
        self.ok = []
        self.errors = []

    def __call__(self, err, msg):
        if err is None:
            self.ok.append(msg)
        else:
            self.errors.append((err, msg))


def produce_all(p: Producer, topic: str, records: list[dict], timeout: float = 30.0) -> Delivery:
    """records: dicts of produce() kwargs (key, value, headers, partition, timestamp).
    Flushes and asserts every record got a delivery report."""
    d = Delivery()
    for r in records:
        while True:
            try:
                p.produce(topic, on_delivery=d, **r)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert len(d.ok) + len(d.errors) == len(records)
    return d


def produce_ok(bootstrap: str, topic: str, records: list[dict], **conf) -> list:
    """Produces and asserts no delivery error; returns the delivered Messages in send order."""
    d = produce_all(producer(bootstrap, **conf), topic, records)
    assert not d.errors, f"delivery errors: {[(e.str(), m.partition()) for e, m in d.errors[:5]]}"
    return d.ok


def consumer(bootstrap: str, **conf) -> Consumer:
    base = {
        "bootstrap.servers": bootstrap,
        # librdkafka requires a group.id even for manual assign(); nothing is committed.
        "group.id": unique("fjord-test"),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
        "check.crcs": True,  # librdkafka verifies every fetched batch CRC
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(base)


def consume(bootstrap: str, topic: str, partitions, count: int, timeout: float = 30.0,
            start=None, **conf) -> list:
    """Assigns `partitions` (ints) from `start` (default OFFSET_BEGINNING) and returns exactly
    `count` messages (asserts that no more than count arrive within a short grace period is NOT
    done; callers compare with watermarks when they need that)."""
    from confluent_kafka import OFFSET_BEGINNING

    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING if start is None else start)
                  for p in partitions])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"consumed {len(out)} of {count} from {topic} within {timeout}s")
            for m in c.consume(num_messages=min(1000, count - len(out)), timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                out.append(m)
        return out
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def kafka_error_code(exc: BaseException) -> int:
    """The KafkaError code inside a KafkaException raised by an admin future."""
    assert isinstance(exc, KafkaException), f"expected KafkaException, got {exc!r}"
    err = exc.args[0]
    assert isinstance(err, KafkaError), f"expected KafkaError inside, got {err!r}"
    return err.code()


def future_codes(futures: dict) -> dict:
    """Kafka error code per key of a dict of admin futures (0 for success)."""
    out = {}
    for key, f in futures.items():
        try:
            f.result(timeout=20)
            out[key] = 0
        except Exception as e:  # noqa: BLE001 - the code is what callers assert
            out[key] = kafka_error_code(e)
    return out
