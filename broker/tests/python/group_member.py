"""A consumer-group member run as its own process by test_groups.py (so it can be killed -9).

Usage: group_member.py BOOTSTRAP GROUP TOPIC EVENTS_FILE [CONF_JSON]
Subscribes to TOPIC in GROUP with confluent-kafka (or, with "client": "kafka-python" in CONF_JSON,
with kafka-python's classic-protocol KafkaConsumer), and appends one JSON line per event to
EVENTS_FILE: {"ev": "assign"|"revoke"|"lost", "t": time, "partitions": [...]} on rebalance
callbacks, {"ev": "msg", "p": partition, "o": offset} per record processed (written before the
offset is committed: commit after processing, so at-least-once). Stops cleanly (close(), which
leaves the group) when EVENTS_FILE + ".stop" exists.
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException


def main() -> None:
    bootstrap, group, topic, events_path = sys.argv[1:5]
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    out = open(events_path, "a", buffering=1)

    def log(**ev):
        ev["t"] = time.time()
        out.write(json.dumps(ev) + "\n")

    if extra.pop("client", None) == "kafka-python":
        kafka_python_member(bootstrap, group, topic, events_path, log)
        return

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    conf.update(extra)
    c = Consumer(conf)

    def on_assign(consumer, partitions):
        log(ev="assign", partitions=sorted(p.partition for p in partitions))

    def on_revoke(consumer, partitions):
        log(ev="revoke", partitions=sorted(p.partition for p in partitions))

    def on_lost(consumer, partitions):
        log(ev="lost", partitions=sorted(p.partition for p in partitions))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    try:
        while not os.path.exists(events_path + ".stop"):
            msgs = c.consume(num_messages=100, timeout=0.2)
            good = [m for m in msgs if not m.error()]
            for m in good:
                log(ev="msg", p=m.partition(), o=m.offset())
            if good:
                try:
                    c.commit(asynchronous=False)
                except KafkaException as e:
                    log(ev="commit_error", error=str(e))
    finally:
        c.close()
        log(ev="closed")


def kafka_python_member(bootstrap, group, topic, events_path, log) -> None:
    """The same member with kafka-python (classic protocol, eager range assignor)."""
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=500,
                      fetch_max_wait_ms=100)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            log(ev="revoke", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            log(ev="assign", partitions=sorted(tp.partition for tp in assigned))

    c.subscribe([topic], listener=Listener())
    try:
        while not os.path.exists(events_path + ".stop"):
            batches = c.poll(timeout_ms=200, max_records=100)
            got = [m for msgs in batches.values() for m in msgs]
            for m in got:
                log(ev="msg", p=m.partition, o=m.offset)
            if got:
                try:
                    c.commit()
                except Exception as e:  # a rebalance in progress: the next owner reprocesses
                    log(ev="commit_error", error=str(e))
    finally:
        c.close()
        log(ev="closed")


if __name__ == "__main__":
    main()
