#!/usr/bin/env bash
# End to end on a kind cluster: build the images, create the cluster, load the images, then
# the steps shared with tests/e2e/node/run.sh (tests/e2e/steps.sh: helm install with the
# bundled Redis, examples/shop, orders from outside and from a Job, scaling, a worker pod and
# the operator pod deleted, helm upgrade and uninstall), and tear the cluster down.
#
# Needs a Docker engine, kind, kubectl, helm and Python with kubenenc[redis] installed
# (python -m pip install -e ".[redis]"). Run from anywhere:
#
#   tests/e2e/kind/run.sh
#
# Environment:
#   CLUSTER=kubenenc-e2e   kind cluster name (created, then deleted)
#   KEEP_CLUSTER=1         keep the cluster at the end (to look around)
#   ORDERS=200             orders submitted (each: 1 checkout, 2 prices, 1 charge, 1 ship)
#   TIMEOUT=600            seconds allowed for the orders to finish
#   KIND_IMAGE=...         node image passed to `kind create cluster --image`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CLUSTER="${CLUSTER:-kubenenc-e2e}"
ORDERS="${ORDERS:-200}"
TIMEOUT="${TIMEOUT:-600}"
VERSION="$(python -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
TAG="e2e"
CONTEXT="kind-$CLUSTER"
WORK="$(mktemp -d)"

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local code=$?
  if [[ "${KEEP_CLUSTER:-}" == "1" ]]; then
    echo "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$code"
}

for tool in docker kind kubectl helm python; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
docker info >/dev/null 2>&1 || fail "no Docker engine answers (docker info failed)"
python -c 'import kubenenc_redis' 2>/dev/null \
  || fail "the steps need the Redis plugin: python -m pip install -e \".[redis]\""

say "build images (kubenenc $VERSION)"
docker build -f "$ROOT/docker/Dockerfile" --target operator -t "kubenenc-operator:$TAG" "$ROOT"
docker build -f "$ROOT/docker/Dockerfile" --target worker -t "kubenenc-worker:$TAG" "$ROOT"
# Tagged as examples/shop/k8s/workerpool.yaml names it.
SHOP_IMAGE="$(awk '$1 == "image:" {print $2; exit}' "$ROOT/examples/shop/k8s/workerpool.yaml")"
docker build --build-arg "WORKER_IMAGE=kubenenc-worker:$TAG" -t "$SHOP_IMAGE" "$ROOT/examples/shop"

say "create kind cluster $CLUSTER"
trap cleanup EXIT
kind create cluster --name "$CLUSTER" --wait 180s ${KIND_IMAGE:+--image "$KIND_IMAGE"}
for image in "kubenenc-operator:$TAG" "$SHOP_IMAGE"; do
  kind load docker-image --name "$CLUSTER" "$image"
done

say "the shared steps (tests/e2e/steps.sh)"
KUBE_CONTEXT="$CONTEXT" OPERATOR_IMAGE="kubenenc-operator:$TAG" ORDERS="$ORDERS" TIMEOUT="$TIMEOUT" \
  bash "$ROOT/tests/e2e/steps.sh"
say "PASSED"
