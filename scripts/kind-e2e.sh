#!/usr/bin/env bash
# Runs the Kubernetes e2e suite (e2e/tests/kubernetes.rs: chart install, Cluster and Topic
# lifecycle, produce/consume, scale, pause, delete) against a kind cluster, with the images this
# checkout builds.
#
# NOT RUN IN CI: it needs a Docker daemon, kind, kubectl and a container registry for the build
# and kcat images, none of which exist on the CI machines (CI runs the image smoke test,
# images/test_images.py, instead). Run it on a laptop or a runner that has them:
#
#   scripts/kind-e2e.sh            # create (or reuse) kind cluster "fjord-e2e", build, load, test
#   KEEP=1 scripts/kind-e2e.sh     # keep the cluster afterwards (default: delete it if we made it)
#   PREBUILT=target/release scripts/kind-e2e.sh   # use binaries built outside the images
#
# Steps (the same ones README.md's quickstart documents):
#   1. scripts/images.sh --engine docker broker operator    -> ghcr.io/fjord-streaming/fjord-{broker,operator}:<version>
#   2. kind load docker-image <both> --name fjord-e2e       (pullPolicy IfNotPresent uses the loaded ones)
#   3. KUBECONFIG=<kind kubeconfig> FJORD_E2E_OPERATOR_IMAGE=... FJORD_E2E_BROKER_IMAGE=...
#      cargo test -p e2e --test kubernetes -- --nocapture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
CLUSTER="${KIND_CLUSTER:-fjord-e2e}"

for tool in docker kind kubectl cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "kind-e2e.sh: $tool is not installed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind-e2e.sh: the Docker daemon does not answer" >&2; exit 1; }

registry="${FJORD_IMAGE_REGISTRY:-ghcr.io/fjord-streaming}"
version="$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "fjord-broker"))')"
broker="$registry/fjord-broker:$version" operator="$registry/fjord-operator:$version"

build=(--engine docker --registry "$registry" --tag "$version")
[[ -n "${PREBUILT:-}" ]] && build+=(--prebuilt "$PREBUILT")
bash scripts/images.sh "${build[@]}" broker operator

made=0
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 120s
    made=1
fi
kubeconfig="$(mktemp)"
cleanup() {
    rm -f "$kubeconfig"
    if ((made)) && [[ -z "${KEEP:-}" ]]; then kind delete cluster --name "$CLUSTER"; fi
}
trap cleanup EXIT
kind get kubeconfig --name "$CLUSTER" >"$kubeconfig"

kind load docker-image --name "$CLUSTER" "$broker" "$operator"
# The suite's client pods run kcat; load it too so the test does not depend on the nodes' pulls.
docker pull -q edenhill/kcat:1.7.1 >/dev/null && kind load docker-image --name "$CLUSTER" edenhill/kcat:1.7.1

KUBECONFIG="$kubeconfig" FJORD_E2E_OPERATOR_IMAGE="$operator" FJORD_E2E_BROKER_IMAGE="$broker" \
    cargo test --locked -p e2e --test kubernetes -- --nocapture --test-threads 1
