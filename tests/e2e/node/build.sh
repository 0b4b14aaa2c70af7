#!/usr/bin/env bash
# Build what the e2e node needs beyond the control plane of tests/cluster/build-binaries.sh:
#
#   kubelet, kube-proxy   from k8s.io/kubernetes v1.37.2 (wrapper module go/kubernetes: the
#                         same versions as tests/cluster/go/kubernetes, so most packages come
#                         from the Go build cache that build fills)
#   coredns               CoreDNS v1.15.0 with a short plugin list (go/coredns/main.go)
#   pause                 pause.c, linked statically with gcc
# and the node's own images, saved as tarballs for containerd:
#   kubenenc-pause:3.10 (the pod sandbox), kubenenc-coredns:1.15.0 (the cluster DNS).
#
# Everything goes to ${KUBENENC_CACHE_DIR:-~/.cache/kubenenc} (bin/ and images/) and is reused
# while its stamp (wrapper go.mod/go.sum, Go version, package, flags; the C source) matches.
# Builds run under `nice`, one at a time, holding the same lock as build-binaries.sh.
# Needs go, gcc with a static libc, and Docker (docker/engine.sh starts it when needed) for
# the two images.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CACHE_DIR="${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}"
BIN_DIR="$CACHE_DIR/bin"
IMAGES="$CACHE_DIR/images"
LOG_DIR="$CACHE_DIR/build-logs"
K8S_VERSION="v1.37.2"
COREDNS_VERSION="1.15.0"
PAUSE_TAG="3.10"

log() { printf '[node-build] %s\n' "$*"; }
# shellcheck source=tests/cluster/gobuild.sh disable=SC1091  # checked on its own
. "$ROOT/tests/cluster/gobuild.sh"
T0=$(date +%s)
mkdir -p "$BIN_DIR" "$IMAGES" "$LOG_DIR"

for tool in go gcc; do
  command -v "$tool" >/dev/null || { log "ERROR: $tool is not installed"; exit 1; }
done

take_build_lock

k8s_ldflags="$(k8s_ldflags "$K8S_VERSION")"
TARGETS=(
  "kubelet|kubernetes|k8s.io/kubernetes/cmd/kubelet|$k8s_ldflags"
  "kube-proxy|kubernetes|k8s.io/kubernetes/cmd/kube-proxy|$k8s_ldflags"
  "coredns|coredns|.|-s -w -X github.com/coredns/coredns/coremain.GitCommit=v$COREDNS_VERSION"
)
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false -trimpath"
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name moddir pkg ldflags <<<"$t"
  # 16 digits: the stamps this script has always written, so cached binaries stay valid.
  go_build_cached "$name" "$HERE/go/$moddir" "$pkg" "$ldflags" 16 || exit 1
done

pause_stamp="$(sha256sum <"$HERE/pause.c" | cut -c1-16)"
if [[ ! -x "$BIN_DIR/pause" || "$(cat "$BIN_DIR/.pause.stamp" 2>/dev/null)" != "$pause_stamp" ]]; then
  gcc -static -O2 -Wall -Wextra -o "$BIN_DIR/pause" "$HERE/pause.c"
  strip "$BIN_DIR/pause"
  printf '%s' "$pause_stamp" >"$BIN_DIR/.pause.stamp"
  log "pause: built"
fi
flock -u 9

# -- images: a single static binary each --------------------------------------------------------
image_stamp() { sha256sum <"$BIN_DIR/$1" | cut -c1-16; }
declare -A IMAGE_OF=([pause]="kubenenc-pause:$PAUSE_TAG" [coredns]="kubenenc-coredns:$COREDNS_VERSION")
todo=()
for bin in pause coredns; do
  [[ -f "$IMAGES/kubenenc-$bin.tar" && "$(cat "$IMAGES/.kubenenc-$bin.stamp" 2>/dev/null)" == "$(image_stamp "$bin")" ]] \
    || todo+=("$bin")
done
if [[ ${#todo[@]} -gt 0 ]]; then
  started=0
  if ! docker info >/dev/null 2>&1; then
    "$ROOT/docker/engine.sh" start
    started=1
  fi
  for bin in "${todo[@]}"; do
    work="$(mktemp -d)"
    cp "$BIN_DIR/$bin" "$work/$bin"
    tar -C "$work" --owner=0 --group=0 -c "$bin" \
      | docker import --change "ENTRYPOINT [\"/$bin\"]" --change 'USER 65532:65532' - "${IMAGE_OF[$bin]}" >/dev/null
    docker save -o "$IMAGES/kubenenc-$bin.tar" "${IMAGE_OF[$bin]}"
    image_stamp "$bin" >"$IMAGES/.kubenenc-$bin.stamp"
    rm -rf "$work"
    log "image ${IMAGE_OF[$bin]} saved"
  done
  [[ $started == 1 ]] && "$ROOT/docker/engine.sh" stop
fi
log "done in $(($(date +%s) - T0)) s"
