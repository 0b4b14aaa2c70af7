#!/usr/bin/env bash
# End to end with real worker pods on this host: build (or reuse) the images and binaries,
# start a one-node cluster (tests/e2e/node/cluster.sh), load the images into its containerd,
# run the shared steps (tests/e2e/steps.sh), take the cluster down. Prints each stage's time.
#
#   tests/e2e/node/run.sh              # as root, on Linux (what scripts/test.sh and CI run)
#   KEEP_CLUSTER=1 tests/e2e/node/run.sh   # leave the cluster up (cluster.sh down stops it)
#   PREPARE_ONLY=1 tests/e2e/node/run.sh   # install and build, start nothing
#
# Installs with apt-get what is missing (docker.io, containerd, runc, iptables, debootstrap,
# containernetworking-plugins); builds into ${KUBENENC_CACHE_DIR:-~/.cache/kubenenc} with
# docker/build-images.sh, tests/cluster/build-binaries.sh and tests/e2e/node/build.sh, each of
# which reuses what is current. Environment for the steps (ORDERS, TIMEOUT, STEPS...): see
# tests/e2e/steps.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CACHE_DIR="${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}"
BIN="$CACHE_DIR/bin"
PY="${PYTHON:-python3}"
command -v python >/dev/null && PY="${PYTHON:-python}"
VERSION="$("$PY" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$ROOT/pyproject.toml")"

T0=$(date +%s)
stage_t=$T0
stage() {
  local now
  now=$(date +%s)
  printf '\n=== %s (previous stage %d s, %d s in all)\n' "$*" $((now - stage_t)) $((now - T0))
  stage_t=$now
}

[[ "$(id -u)" == 0 ]] || { echo "needs root (containerd, kubelet, iptables)" >&2; exit 1; }

stage "packages"
need=()
for pair in dockerd:docker.io containerd:containerd runc:runc iptables:iptables \
  debootstrap:debootstrap /usr/lib/cni/bridge:containernetworking-plugins; do
  tool="${pair%%:*}"
  if [[ "$tool" == /* ]]; then [[ -x "$tool" ]] || need+=("${pair#*:}")
  else command -v "$tool" >/dev/null || need+=("${pair#*:}"); fi
done
if [[ ${#need[@]} -gt 0 ]]; then
  echo "apt-get install ${need[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi

stage "images (docker/build-images.sh)"
bash "$ROOT/docker/build-images.sh"
stage "control-plane binaries (tests/cluster/build-binaries.sh)"
bash "$ROOT/tests/cluster/build-binaries.sh" etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm
stage "node binaries and images (tests/e2e/node/build.sh)"
bash "$HERE/build.sh"
[[ -n "${PREPARE_ONLY:-}" ]] && { stage "prepared"; exit 0; }

stage "cluster up"
cleanup() {
  local code=$?
  if [[ $code -ne 0 ]]; then
    echo "--- node diagnostics (exit $code)" >&2
    bash "$HERE/cluster.sh" dump >&2 2>&1 || true
  fi
  if [[ -n "${KEEP_CLUSTER:-}" ]]; then
    echo "keeping the cluster: export KUBECONFIG=/run/kubenenc-e2e/admin.kubeconfig; $HERE/cluster.sh down"
  else
    bash "$HERE/cluster.sh" down || true
  fi
  exit "$code"
}
trap cleanup EXIT
bash "$HERE/cluster.sh" up
export KUBECONFIG=/run/kubenenc-e2e/admin.kubeconfig
stage "load images"
for image in kubenenc-operator kubenenc-shop kubenenc-redis; do
  bash "$HERE/cluster.sh" load "$CACHE_DIR/images/$image.tar"
done

stage "steps"
PATH="$BIN:$PATH" PYTHON="$PY" OPERATOR_IMAGE="kubenenc-operator:$VERSION" \
  KILL_CONTAINER="bash $HERE/cluster.sh kill-container" \
  REDIS_IMAGE="kubenenc-redis:$VERSION" PULL_POLICY=Never bash "$ROOT/tests/e2e/steps.sh"
stage "done"
