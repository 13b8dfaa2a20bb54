#!/usr/bin/env bash
# Tiered-storage benchmark: `bash bench/tiering.sh` (method in bench/tiering.py, results in
# BENCHMARKS.md). Needs the release broker and fjord-bench (built here if missing; fjord-bench
# builds librdkafka) and moto's S3 server from the test venv (.venv, made by scripts/test.sh).
# Environment: RUNS=3 DURATION=15 TOTAL_MIB=2048 PHASES="produce catchup" STORE=moto|s3s|file UPLOAD_CAP=32MiB
#              WORK_DIR=/tmp/fjord-tiering-bench
#              FJORD_BIN, BENCH_BIN (default target/release/...), VENV=.venv
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${VENV:-.venv}
FJORD_BIN=${FJORD_BIN:-target/release/fjord-broker}
BENCH_BIN=${BENCH_BIN:-target/release/fjord-bench}
if [[ ! -x $FJORD_BIN || ! -x $BENCH_BIN ]]; then
    cargo build --release -p fjord-broker -p fjord-bench
fi
if [[ ! -x $VENV/bin/moto_server ]]; then
    echo "no $VENV/bin/moto_server: run scripts/test.sh once (it installs broker/tests/python/requirements.txt)" >&2
    exit 1
fi
WORK_DIR=${WORK_DIR:-/tmp/fjord-tiering-bench}
rm -rf "$WORK_DIR"
export FJORD_BIN=$(realpath "$FJORD_BIN") BENCH_BIN=$(realpath "$BENCH_BIN") WORK_DIR
exec "$VENV/bin/python" bench/tiering.py
