#!/usr/bin/env python3
"""Summarise fjord-bench RESULT lines: medians over runs, fjord/nisshi ratios, issue 3's targets.

Usage: python3 bench/summary.py target/bench/results-<timestamp>.txt [RATE_MIBS]
(bench/run.sh calls it at the end of every run and appends the output to the same file.)
"""
import statistics, sys
from collections import defaultdict

raw = sys.argv[1]
rate_mibs = sys.argv[2] if len(sys.argv) > 2 else "50"
vals = defaultdict(list)  # (label, workload, phase, key) -> [float]
for line in open(raw):
    if not line.startswith("RESULT "):
        continue
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    for k, v in kv.items():
        if v in ("true", "false"):
            v = 1.0 if v == "true" else 0.0
        try:
            vals[(kv["label"], kv["workload"], kv["phase"], k)].append(float(v))
        except ValueError:
            pass
    # Efficiency: client MiB/s per broker core busy (the client shares the 2 vCPUs, so raw
    # throughput can be client-bound while this still tells the brokers apart).
    try:
        cpu = float(kv["broker_cpu_pct"])
        if cpu > 0:
            vals[(kv["label"], kv["workload"], kv["phase"], "mib_s_per_core")].append(
                float(kv["mib_s"]) / (cpu / 100))
    except (KeyError, ValueError):
        pass

def med(label, w, phase, key):
    xs = [x for x in vals.get((label, w, phase, key), []) if x == x]  # drop NaN
    return statistics.median(xs) if xs else None

def runs(label, w, phase, key):
    return vals.get((label, w, phase, key), [])

labels = [l for l in ("fjord", "nisshi") if any(k[0] == l for k in vals)]
labels += sorted({k[0] for k in vals} - set(labels))
workloads = sorted({k[1] for k in vals})
desc = {"a": "16 partitions, max rate", "b": f"16 partitions, offered {rate_mibs} MiB/s",
        "c": "1000 partitions, max rate", "d": "1000 partitions, max rate, spread",
        "g": "16 partitions, 3-member consumer group drain, then a member killed -9"}
rows = [
    ("produce", "mib_s", "produce MiB/s"),
    ("produce", "msgs_s", "produce msgs/s"),
    ("produce", "ack_p50_ms", "ack p50 ms"),
    ("produce", "ack_p99_ms", "ack p99 ms"),
    ("produce", "ack_p999_ms", "ack p99.9 ms"),
    ("produce", "errors", "produce errors"),
    ("produce", "broker_cpu_pct", "broker CPU % (produce)"),
    ("produce", "mib_s_per_core", "produce MiB/s per broker core"),
    ("produce", "broker_rss_peak_mib", "broker RSS peak MiB (produce)"),
    ("produce", "client_cpu_pct", "client CPU % (produce)"),
    ("consume", "mib_s", "consume MiB/s"),
    ("consume", "msgs_s", "consume msgs/s"),
    ("consume", "broker_cpu_pct", "broker CPU % (consume)"),
    ("consume", "mib_s_per_core", "consume MiB/s per broker core"),
    ("consume", "broker_rss_peak_mib", "broker RSS peak MiB (consume)"),
    ("consume", "client_cpu_pct", "client CPU % (consume)"),
    ("consume", "count_ok", "count check (1 = ok)"),
    ("group", "mib_s", "group drain MiB/s (3 members)"),
    ("group", "msgs_s", "group drain msgs/s"),
    ("group", "join_s", "group: s until all partitions assigned"),
    ("group", "commit_p50_ms", "group commit p50 ms"),
    ("group", "commit_p99_ms", "group commit p99 ms"),
    ("group", "kill_rebalance_s", "group: s until a killed member's partitions move"),
    ("group", "broker_cpu_pct", "broker CPU % (group drain)"),
    ("group", "count_ok", "group count check (1 = ok)"),
]

def fmt(x, integer=False):
    if x is None:
        return "-"
    if integer:
        return f"{x:.0f}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"

both = {"fjord", "nisshi"} <= set(labels)
print()
print("=== summary: medians over runs [per-run values] ===")
for w in workloads:
    print(f"\nworkload {w}: {desc.get(w, w)}")
    table = [["metric"] + labels + (["fjord/nisshi"] if both else [])]
    for phase, key, name in rows:
        cells = []
        for l in labels:
            m = med(l, w, phase, key)
            integer = key in ("errors", "count_ok")
            per = ", ".join(fmt(x, integer) for x in runs(l, w, phase, key))
            cells.append(f"{fmt(m, integer)} [{per}]" if m is not None else "-")
        if all(c == "-" for c in cells):
            continue
        if both:
            f, n = med("fjord", w, phase, key), med("nisshi", w, phase, key)
            cells.append(f"{f / n:.2f}x" if f is not None and n else "-")
        table.append([name] + cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  " + r[0].ljust(widths[0]) + "".join("  " + c.rjust(wd) for c, wd in zip(r[1:], widths[1:])))

idle = {l: med(l, "a", "produce", "broker_rss_idle_mib") for l in labels}
print("\nbroker idle RSS MiB (fresh broker, before workload a): " +
      ", ".join(f"{l} {fmt(v)}" for l, v in idle.items()))

if "fjord" in labels:
    print("\n=== fjord vs the issue's targets (medians) ===")
    def check(name, value, ok):
        state = "n/a " if value is None or ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{state}] {name}: {'-' if value is None else value}")
    pa = med("fjord", "a", "produce", "mib_s")
    check("produce >= 150 MiB/s (a)", fmt(pa), None if pa is None else pa >= 150)
    na = med("nisshi", "a", "produce", "mib_s")
    check("produce >= 2x nisshi's (a)",
          None if pa is None or not na else f"{pa / na:.2f}x",
          None if pa is None or not na else pa >= 2 * na)
    ea, eb = med("fjord", "a", "produce", "mib_s_per_core"), med("nisshi", "a", "produce", "mib_s_per_core")
    print(f"         (produce MiB/s per broker core, fjord/nisshi: "
          f"{'-' if ea is None or not eb else f'{ea / eb:.2f}x'}; when client CPU + broker CPU is near "
          f"200 %, the client, not the broker, sets the throughput)")
    ca = med("fjord", "a", "consume", "mib_s")
    check("consume >= 400 MiB/s (a)", fmt(ca), None if ca is None else ca >= 400)
    p99 = med("fjord", "b", "produce", "ack_p99_ms")
    check(f"p99 ack <= 10 ms at {rate_mibs} MiB/s offered (b)", fmt(p99), None if p99 is None else p99 <= 10)
    pc = med("fjord", "c", "produce", "mib_s")
    check("1000 partitions keep >= 80 % of 16-partition produce (c/a)",
          None if pc is None or not pa else f"{pc / pa * 100:.0f} %",
          None if pc is None or not pa else pc >= 0.8 * pa)
    pd = med("fjord", "d", "produce", "mib_s")
    check("1000 partitions, spread, keep >= 80 % of 16-partition produce (d/a)",
          None if pd is None or not pa else f"{pd / pa * 100:.0f} %",
          None if pd is None or not pa else pd >= 0.8 * pa)
    check("idle RSS < 64 MiB", fmt(idle.get("fjord")), None if idle.get("fjord") is None else idle["fjord"] < 64)
