#!/usr/bin/env bash
# End to end on a kind cluster: build the images, create the cluster, load the images,
# `helm install` the chart with its bundled Redis, apply examples/shop, submit orders, wait
# for every result, check that the pool scaled out and back in, tear everything down.
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
SYSTEM_NS="kubenenc-system"
SHOP_NS="shop"
CONTEXT="kind-$CLUSTER"
WORK="$(mktemp -d)"
PF_PID=""

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "$CONTEXT" "$@"; }

cleanup() {
  local code=$?
  if [[ -n "$PF_PID" ]]; then kill "$PF_PID" 2>/dev/null || true; fi
  if [[ $code -ne 0 ]]; then
    echo "--- diagnostics (exit $code)" >&2
    k get pods -A -o wide >&2 || true
    k -n "$SHOP_NS" get kwp,kcp,ktd -o wide >&2 || true
    k -n "$SYSTEM_NS" logs deploy/kubenenc-operator --tail=100 >&2 || true
  fi
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
  || fail "the submit script needs the Redis plugin: python -m pip install -e \".[redis]\""

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

say "helm install (bundled Redis on)"
helm --kube-context "$CONTEXT" install kubenenc "$ROOT/charts/kubenenc" \
  --namespace "$SYSTEM_NS" --create-namespace \
  --set image.repository=kubenenc-operator --set image.tag="$TAG" \
  --set image.pullPolicy=Never --set redis.enabled=true \
  --wait --timeout 180s
for crd in workerpools taskdefinitions concurrencypolicies; do
  k wait --for=condition=Established "crd/$crd.kubenenc.io" --timeout=60s
done

say "apply examples/shop"
k create namespace "$SHOP_NS"
URL="$(k -n "$SYSTEM_NS" get secret kubenenc-redis -o jsonpath='{.data.url}' | base64 -d)"
k -n "$SHOP_NS" create secret generic kubenenc-backend --from-literal=url="$URL"
k -n "$SHOP_NS" create secret generic shop-gateway --from-literal=api-key=sk-test-e2e1
k -n "$SHOP_NS" apply -f "$ROOT/examples/shop/k8s/"
for _ in $(seq 60); do
  k -n "$SHOP_NS" get deployment shop-workers >/dev/null 2>&1 && break
  sleep 2
done
k -n "$SHOP_NS" rollout status deployment/shop-workers --timeout=180s
for td in price charge checkout ship; do
  k -n "$SHOP_NS" wait --for=condition=Ready "ktd/$td" --timeout=120s
done
for cp in one-charge-per-customer one-checkout-per-order; do
  k -n "$SHOP_NS" wait --for=condition=Ready "kcp/$cp" --timeout=120s
done

say "submit $ORDERS orders through a port-forward to Redis"
PORT="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
k -n "$SYSTEM_NS" port-forward svc/kubenenc-redis "$PORT:6379" >"$WORK/port-forward.log" 2>&1 &
PF_PID=$!
PASSWORD="$(k -n "$SYSTEM_NS" get secret kubenenc-redis -o jsonpath='{.data.password}' | base64 -d)"
for _ in $(seq 50); do
  python -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null && break
  sleep 0.2
done
# Watch the pool's replica count while the orders run.
( for _ in $(seq "$TIMEOUT"); do
    k -n "$SHOP_NS" get deployment shop-workers -o jsonpath='{.spec.replicas}{"\n"}' 2>/dev/null
    sleep 1
  done ) >"$WORK/replicas.log" &
WATCH_PID=$!
# KUBENENC_NAMESPACE: the calls go to the queues of the workers' namespace (kubenenc.scope).
(cd "$ROOT/examples/shop" && KUBENENC_NAMESPACE="$SHOP_NS" \
  KUBENENC_BACKEND="redis://:$PASSWORD@127.0.0.1:$PORT/0" \
  python submit.py --orders "$ORDERS" --timeout "$TIMEOUT") | tee "$WORK/submit.log"
kill "$WATCH_PID" 2>/dev/null || true
grep -q "^$ORDERS/$ORDERS orders shipped" "$WORK/submit.log" || fail "not every order shipped"

say "check scaling"
MAX="$(sort -n "$WORK/replicas.log" | tail -1)"
echo "most replicas seen while working: $MAX"
[[ "${MAX:-0}" -gt 1 ]] || fail "the pool never scaled out (max replicas $MAX)"
MIN_REPLICAS="$(k -n "$SHOP_NS" get kwp shop-workers -o jsonpath='{.spec.autoscaling.minReplicas}')"
for _ in $(seq 150); do
  NOW="$(k -n "$SHOP_NS" get deployment shop-workers -o jsonpath='{.spec.replicas}')"
  [[ "$NOW" == "$MIN_REPLICAS" ]] && break
  sleep 2
done
[[ "$NOW" == "$MIN_REPLICAS" ]] || fail "the pool did not scale back in to $MIN_REPLICAS (at $NOW)"
echo "scaled back in to $NOW after the cooldown"

say "check TaskDefinition status"
k -n "$SHOP_NS" get ktd
SHIPPED="$(k -n "$SHOP_NS" get ktd ship -o jsonpath='{.status.invocations.SUCCESS}')"
for _ in $(seq 30); do
  [[ "${SHIPPED:-0}" -ge "$ORDERS" ]] && break
  sleep 2
  SHIPPED="$(k -n "$SHOP_NS" get ktd ship -o jsonpath='{.status.invocations.SUCCESS}')"
done
[[ "${SHIPPED:-0}" -ge "$ORDERS" ]] || fail "ktd/ship counts ${SHIPPED:-0} successes, want $ORDERS"

say "uninstall"
k -n "$SHOP_NS" delete -f "$ROOT/examples/shop/k8s/" --timeout=120s
helm --kube-context "$CONTEXT" uninstall kubenenc --namespace "$SYSTEM_NS" --wait --timeout 120s
say "PASSED"
