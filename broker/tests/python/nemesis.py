"""A Jepsen-style history checker for replicated partitions, and the nemesis that disturbs a
cluster while producers write. The checker gets what producers were told (acknowledged records
with their partition and offset), what consumers saw while the faults happened, and the final
log read after the cluster healed, and names every violation:

- an acknowledged record missing from the final log (lost);
- a record in the final log more than once (duplicated);
- an acknowledged record at another offset than it was acknowledged at;
- a producer's records out of send order within a partition;
- a consumer that saw a record at an offset that the final log holds differently (it read a
  record that was later truncated), or saw a partition's offsets go backwards.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field


@dataclass
class History:
    # value -> (partition, offset) as acknowledged
    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    # producer -> [value] in send order
    sent: dict[str, list[bytes]] = field(default_factory=dict)
    # partition -> [(offset, value)] in the order one consumer saw them (per consumer session)
    consumed: list[dict[int, list[tuple[int, bytes]]]] = field(default_factory=list)


def check(history: History, final: dict[int, list[tuple[int, bytes]]]) -> list[str]:
    """Every violation of the replication guarantees in `history` given the `final` log
    (partition -> [(offset, value)] in log order). Empty means the history is correct."""
    problems: list[str] = []
    where: dict[bytes, list[tuple[int, int]]] = {}
    by_offset: dict[tuple[int, int], bytes] = {}
    for p, records in final.items():
        for off, value in records:
            where.setdefault(value, []).append((p, off))
            by_offset[(p, off)] = value
    for value, places in where.items():
        if len(places) > 1:
            problems.append(f"duplicated: {value!r} at {places}")
    for value, (p, off) in history.acked.items():
        found = where.get(value)
        if not found:
            problems.append(f"lost: {value!r} acknowledged at {p}/{off} is not in the log")
        elif (p, off) not in found:
            problems.append(f"moved: {value!r} acknowledged at {p}/{off} is at {found}")
    for producer, values in history.sent.items():
        order = {v: i for i, v in enumerate(values)}
        for p, records in final.items():
            seqs = [order[v] for _, v in records if v in order]
            if seqs != sorted(seqs):
                problems.append(f"reordered: producer {producer} in partition {p}")
    for session in history.consumed:
        for p, seen in session.items():
            offsets = [o for o, _ in seen]
            if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
                problems.append(f"consumer went backwards in partition {p}")
            for off, value in seen:
                if by_offset.get((p, off)) != value:
                    problems.append(f"consumer saw {value!r} at {p}/{off}, which the log holds as "
                                    f"{by_offset.get((p, off))!r} (a truncated record was read)")
    return problems


class Nemesis:
    """Disturbs one broker at a time: kill -9 and restart, SIGSTOP and SIGCONT, cut its links to
    the other brokers (controller RPC and replica fetches both ways; clients still reach it) and
    heal them. Logs what it did."""

    def __init__(self, cluster, seed: int, pause_s: float = 4.0):
        self.cluster = cluster
        self.random = random.Random(seed)
        self.pause_s = pause_s
        self.log: list[str] = []

    def step(self) -> None:
        b = self.random.choice(self.cluster.brokers)
        node = self.cluster.brokers.index(b) + 1
        kinds = ["kill", "pause"] + (["isolate"] if self.cluster.links is not None else [])
        kind = self.random.choice(kinds)
        self.log.append(f"{time.strftime('%H:%M:%S')} {kind} node{node}")
        if kind == "kill":
            b.kill9()
            time.sleep(self.pause_s / 2)
            b.start()
        elif kind == "pause":
            b.proc.send_signal(signal.SIGSTOP)
            try:
                time.sleep(self.pause_s)
            finally:
                b.proc.send_signal(signal.SIGCONT)
        else:
            self.cluster.links.isolate(node)
            try:
                time.sleep(self.pause_s)
            finally:
                self.cluster.links.heal_all()
