#!/usr/bin/env bash
# Idempotent-producer overhead: `bash bench/idempotence.sh`.
#
# Workload a of bench/run.sh (16 partitions, max rate, acks=all, 1 KiB values, produce phase
# only) against one release fjord-broker, RUNS times, alternating three producer settings:
#   off            librdkafka defaults (no idempotence, up to 1M requests in flight)
#   off-inflight5  no idempotence, max.in.flight.requests.per.connection=5
#   on             enable.idempotence=true (librdkafka then caps in-flight requests at 5)
# "on" vs "off-inflight5" isolates the broker's sequence checking; "off" vs "off-inflight5" is
# the client-side cost of idempotence. Prints fjord-bench's RESULT lines.
#
# Environment: RUNS=3 DURATION=15 PORT=19292 HTTP_PORT=19293 DATA_PARENT=/tmp
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-15}
PORT=${PORT:-19292}
HTTP_PORT=${HTTP_PORT:-19293}
cargo build --release -p fjord-broker -p fjord-bench
DATA=$(mktemp -d "${DATA_PARENT:-/tmp}/fjord-idempotence-bench-XXXX")
LOG="$DATA.log"
target/release/fjord-broker --listen "127.0.0.1:$PORT" --data-dir "$DATA" \
  --http-listen "127.0.0.1:$HTTP_PORT" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID; wait $PID || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
for run in $(seq "$RUNS"); do
  for mode in off off-inflight5 on; do
    args=()
    [[ $mode == on ]] && args=(--idempotence)
    [[ $mode == off-inflight5 ]] && args=(--max-in-flight 5)
    target/release/fjord-bench --bootstrap "127.0.0.1:$PORT" --partitions 16 --duration "$DURATION" \
      --label "$mode" --workload a --run "$run" --broker-pid "$PID" --no-consume "${args[@]}" 2>&1 |
      grep -E '^(RESULT|\[)' || true
    sync
    sleep 3
  done
done
