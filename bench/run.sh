#!/usr/bin/env bash
# Fjord broker benchmark: one command, `bash bench/run.sh`.
#
# Builds fjord-broker and fjord-bench (release), then RUNS times, for each target in TARGETS:
# starts the broker fresh, waits for its port, runs the workloads below with fjord-bench (a real
# librdkafka client), stops the broker by PID. Prints per-phase results as they come, then a
# summary table with medians over runs and fjord/nisshi ratios.
#
# Workloads (one topic, 1 KiB values, one producer: acks=all, linger.ms 5, batch.size 128 KiB,
# no compression; then one consumer reads everything from the beginning):
#   a  16 partitions, max rate, DURATION s
#   b  16 partitions, offered RATE_MIBS MiB/s (paced), DURATION s  (the p99-ack-latency target)
#   c  1000 partitions, max rate, DURATION s (librdkafka's default sticky partitioner)
#   d  1000 partitions, max rate, messages spread over every partition (--spread)
#   g  16 partitions, max rate for GROUP_DURATION s, then a 3-consumer group drains the topic
#      (committing after every batch: msgs/s, MiB/s, commit p99), then 3 member processes join
#      another group and one is killed -9 (seconds until its partitions are taken over).
#      Not in the default set: WORKLOADS=g bash bench/run.sh
#
# Environment overrides:
#   RUNS=3  DURATION=20  TARGETS="fjord nisshi"  WORKLOADS="a b c d"  RATE_MIBS=50
#   FJORD_PORT=19092  FJORD_HTTP_PORT=19093  NISSHI_PORT=19192
#   NISSHI_BIN=/tmp/peers/bin/nisshi  NISSHI_STORAGE=memory://nisshi/
#   DATA_PARENT=/tmp   (fjord's data directory is a fresh mktemp -d under it for every run)
#   SETTLE=5   (seconds to pause, after a `sync`, between workloads: each workload ends by deleting
#              its topic, i.e. GBs of segment files, and on this ext4 `discard` mount that delete
#              stalls fsync for ~3 s; without the pause the stall lands in the next workload)
#   BENCH_ARGS="--timeline"   (extra fjord-bench flags for every workload; see fjord-bench --help)
#
# The peer, nisshi (crates.io; the renamed tansu), is not built here. Install it once with
#   cargo install --locked --ignore-rust-version --root /tmp/peers nisshi   # ~20 min on 2 cores
# If $NISSHI_BIN is missing, the nisshi target is skipped with a note.
# NISSHI_STORAGE=memory://nisshi/ keeps every record in RAM with no durability; fjord acks=all
# waits for fsync. See BENCHMARKS.md.
#
# Raw output (every RESULT line, human lines, client warnings) goes to
# target/bench/results-<timestamp>.txt, broker logs to target/bench/logs-<timestamp>/.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

RUNS=${RUNS:-3}
DURATION=${DURATION:-20}
TARGETS=${TARGETS:-fjord nisshi}
WORKLOADS=${WORKLOADS:-a b c d}
RATE_MIBS=${RATE_MIBS:-50}
GROUP_DURATION=${GROUP_DURATION:-10}
FJORD_PORT=${FJORD_PORT:-19092}
FJORD_HTTP_PORT=${FJORD_HTTP_PORT:-19093}
NISSHI_PORT=${NISSHI_PORT:-19192}
NISSHI_BIN=${NISSHI_BIN:-/tmp/peers/bin/nisshi}
NISSHI_STORAGE=${NISSHI_STORAGE:-memory://nisshi/}
DATA_PARENT=${DATA_PARENT:-/tmp}
BENCH_ARGS=${BENCH_ARGS:-}
SETTLE=${SETTLE:-5}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR="$ROOT/target/bench"
RAW="$OUT_DIR/results-$STAMP.txt"
LOG_DIR="$OUT_DIR/logs-$STAMP"
BENCH_BIN="$ROOT/target/release/fjord-bench"
FJORD_BIN="$ROOT/target/release/fjord-broker"

say() { printf '%s\n' "$*" | tee -a "$RAW"; }

# ---------------------------------------------------------------------------------------------
# 1. Build prerequisites. rdkafka's `cmake-build` compiles the bundled librdkafka: it needs cmake,
#    a C/C++ toolchain, zlib headers, and curl's header (librdkafka 2.12.1's rdkafka_conf.c
#    includes <curl/curl.h> even when built without curl; nothing links against libcurl).
# ---------------------------------------------------------------------------------------------
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null && command -v make >/dev/null || missing+=(build-essential)
[[ -e /usr/include/zlib.h ]] || missing+=(zlib1g-dev)
compgen -G "/usr/include/*curl/curl.h" >/dev/null || compgen -G "/usr/include/*/curl/curl.h" >/dev/null ||
  missing+=(libcurl4-openssl-dev)
if ((${#missing[@]})); then
  echo "installing build prerequisites with apt: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------------------------------------
# 2. Build (bench is not a default workspace member: it is only ever built here).
# ---------------------------------------------------------------------------------------------
packages=(-p fjord-bench)
[[ " $TARGETS " == *" fjord "* ]] && packages+=(-p fjord-broker)
echo "building: cargo build --release ${packages[*]}"
cargo build --release "${packages[@]}"

mkdir -p "$OUT_DIR" "$LOG_DIR"
: >"$RAW"

# ---------------------------------------------------------------------------------------------
# 3. Broker lifecycle helpers.
# ---------------------------------------------------------------------------------------------
BROKER_PID=""
DATA_DIR=""

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_broker() {
  if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "broker $BROKER_PID did not exit within 15 s of SIGTERM: SIGKILL" | tee -a "$RAW"
      kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
  fi
  [[ -n $BROKER_PID ]] && wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
  if [[ -n $DATA_DIR ]]; then
    rm -rf "$DATA_DIR"
    DATA_DIR=""
  fi
}
trap stop_broker EXIT
trap 'exit 130' INT TERM

# start_broker TARGET RUN: sets BROKER_PID and PORT; returns non-zero if it did not come up.
start_broker() {
  local target=$1 run=$2 log="$LOG_DIR/$1-run$2.log"
  case $target in
    fjord)
      PORT=$FJORD_PORT
      DATA_DIR=$(mktemp -d "$DATA_PARENT/fjord-bench-data.XXXXXX")
      port_open "$PORT" && { say "port $PORT is already in use: cannot start $target"; return 1; }
      "$FJORD_BIN" --listen "127.0.0.1:$PORT" --data-dir "$DATA_DIR" \
        --http-listen "127.0.0.1:$FJORD_HTTP_PORT" >"$log" 2>&1 &
      BROKER_PID=$!
      ;;
    nisshi)
      PORT=$NISSHI_PORT
      port_open "$PORT" && { say "port $PORT is already in use: cannot start $target"; return 1; }
      "$NISSHI_BIN" broker --listener-url "tcp://127.0.0.1:$PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$PORT" \
        --storage-engine "$NISSHI_STORAGE" >"$log" 2>&1 &
      BROKER_PID=$!
      ;;
    *)
      say "unknown target $target"
      return 1
      ;;
  esac
  local deadline=$((SECONDS + 30))
  until port_open "$PORT"; do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      say "$target exited during start-up; last lines of $log:"
      tail -n 20 "$log" | tee -a "$RAW"
      BROKER_PID=""
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "$target did not open port $PORT within 30 s (log: $log)"
      return 1
    fi
    sleep 0.1
  done
  sleep 1 # let start-up settle before the idle RSS sample
}

workload_args() {
  case $1 in
    a) echo "--partitions 16" ;;
    b) echo "--partitions 16 --rate-mibs $RATE_MIBS" ;;
    c) echo "--partitions 1000" ;;
    d) echo "--partitions 1000 --spread" ;;
    g) echo "--partitions 16 --duration $GROUP_DURATION --group-members 3" ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# 4. Header: what ran where.
# ---------------------------------------------------------------------------------------------
say "# fjord benchmark $STAMP"
say "# machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), \
$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
say "# fjord: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(
  git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (+ uncommitted changes)')"
say "# load average at start (other work on the machine skews results): $(cut -d' ' -f1-3 /proc/loadavg)"
say "# settings: RUNS=$RUNS DURATION=$DURATION TARGETS='$TARGETS' WORKLOADS='$WORKLOADS' RATE_MIBS=$RATE_MIBS SETTLE=$SETTLE BENCH_ARGS='$BENCH_ARGS'"

active_targets=()
for target in $TARGETS; do
  case $target in
    fjord)
      if [[ -x $FJORD_BIN ]]; then active_targets+=(fjord); else say "NOTE: $FJORD_BIN missing: skipping fjord"; fi
      ;;
    nisshi)
      if [[ -x $NISSHI_BIN ]]; then
        active_targets+=(nisshi)
        say "# nisshi: $("$NISSHI_BIN" --version 2>/dev/null | head -n1), storage engine $NISSHI_STORAGE"
      else
        say "NOTE: nisshi not found at $NISSHI_BIN: skipping it. Install it with"
        say "NOTE:   cargo install --locked --ignore-rust-version --root /tmp/peers nisshi"
      fi
      ;;
    *) say "NOTE: unknown target '$target' skipped" ;;
  esac
done
((${#active_targets[@]})) || { say "no target to run"; exit 1; }

# ---------------------------------------------------------------------------------------------
# 5. Runs.
# ---------------------------------------------------------------------------------------------
failures=0
for run in $(seq 1 "$RUNS"); do
  for target in "${active_targets[@]}"; do
    say ""
    say "=== run $run/$RUNS: $target ==="
    if ! start_broker "$target" "$run"; then
      failures=$((failures + 1))
      stop_broker
      continue
    fi
    say "# $target pid $BROKER_PID on 127.0.0.1:$PORT"
    for w in $WORKLOADS; do
      wargs=$(workload_args "$w") || { say "unknown workload $w"; continue; }
      if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        say "$target is no longer running: skipping workload $w"
        failures=$((failures + 1))
        continue
      fi
      # shellcheck disable=SC2086 # wargs and BENCH_ARGS are lists of flags
      if ! timeout $((DURATION * 4 + 300)) "$BENCH_BIN" --bootstrap "127.0.0.1:$PORT" \
        --broker-pid "$BROKER_PID" --label "$target" --workload "$w" --run "$run" \
        --duration "$DURATION" --topic "bench-$w" $wargs $BENCH_ARGS 2>&1 | tee -a "$RAW"; then
        say "fjord-bench failed: $target workload $w run $run"
        failures=$((failures + 1))
      fi
      # Let the previous workload's topic deletion and dirty pages settle (see SETTLE above).
      sync
      sleep "$SETTLE"
    done
    stop_broker
  done
done

# ---------------------------------------------------------------------------------------------
# 6. Summary (bench/summary.py): medians over runs, fjord/nisshi ratios, the issue's targets.
#    Re-print it for any raw file with: python3 bench/summary.py target/bench/results-<ts>.txt
# ---------------------------------------------------------------------------------------------
python3 bench/summary.py "$RAW" "$RATE_MIBS" | tee -a "$RAW"

say ""
say "raw results: $RAW"
say "broker logs: $LOG_DIR"
((failures == 0)) || { say "$failures run(s) or workload(s) failed: see above"; exit 1; }
