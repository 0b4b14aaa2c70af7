#!/usr/bin/env bash
# Build kubenenc's images with no container registry at all, and save each as a tarball.
#
#   docker/build-images.sh            # build what changed, print each stage's time and sizes
#
# What it makes (tags use the version in pyproject.toml, e.g. 0.1.0):
#   kubenenc-operator:VERSION, kubenenc-worker:VERSION   docker/Dockerfile, both targets
#   kubenenc-shop:VERSION                                examples/shop/Dockerfile
#   kubenenc-redis:VERSION                               Debian's redis-server (the chart's
#                                                        bundled Redis: --set redis.image...)
# and, as their base, kubenenc-base:bookworm: a Debian bookworm minbase with python3, made
# once with debootstrap. Python packages come from PyPI through pip on the host (into a wheel
# folder, for the base's Python 3.11.2), so nothing inside a build needs the network. docker/Dockerfile itself still builds
# FROM python:3.11-slim on a normal Docker host; only the build args differ.
#
# Caching, all under ${KUBENENC_CACHE_DIR:-~/.cache/kubenenc}:
#   images/rootfs-*.tar     the debootstrapped roots (the slowest step, ~4 min, done once)
#   wheels/                 the wheels of pyproject's dependencies (refetched when it changes)
#   images/NAME.tar         `docker save` of each image, with a stamp of its inputs; when every
#                           tarball is current, Docker is not even started.
# Needs root, debootstrap and docker.io (installed with apt-get when missing), and a pip.
# A dockerd this script had to start is stopped again at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}"
IMAGES="$CACHE_DIR/images"
WHEELS="$CACHE_DIR/wheels"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES="python3,python3-venv"
VERSION="$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
PYTHON=python3
command -v python >/dev/null && PYTHON=python

log() { printf '[build-images] %s\n' "$*"; }
T0=$(date +%s)
stage_start=$T0
stage() {
  local now
  now=$(date +%s)
  log "$* (+$((now - stage_start)) s for the previous stage, $((now - T0)) s in all)"
  stage_start=$now
}
stamp_of() { sha256sum | cut -c1-16; }

mkdir -p "$IMAGES" "$WHEELS"
exec 8>"$CACHE_DIR/.images.lock"
flock 8

# -- inputs and their stamps --------------------------------------------------------------------
src_stamp="$(cd "$ROOT" && { cat docker/Dockerfile pyproject.toml README.md
  find sdk worker operator plugins dashboard cli -type f ! -path '*/__pycache__/*' ! -path '*/.*' \
    ! -name '*.pyc' ! -path '*.egg-info/*' | sort | xargs cat; } | stamp_of)"
shop_stamp="$(cd "$ROOT/examples/shop" && { cat Dockerfile; find shop -type f -name '*.py' | sort | xargs cat; } | stamp_of)"
base_stamp="$(echo "$SUITE $BASE_PACKAGES v1" | stamp_of)"
redis_stamp="$(echo "$base_stamp redis-server v1" | stamp_of)"
declare -A WANT=(
  [kubenenc-operator]="$base_stamp $src_stamp"
  [kubenenc-worker]="$base_stamp $src_stamp"
  [kubenenc-shop]="$base_stamp $src_stamp $shop_stamp"
  [kubenenc-redis]="$redis_stamp"
)
current() { [[ -f "$IMAGES/$1.tar" && "$(cat "$IMAGES/.$1.stamp" 2>/dev/null)" == "${WANT[$1]} $VERSION" ]]; }
todo=()
for name in kubenenc-operator kubenenc-worker kubenenc-shop kubenenc-redis; do
  current "$name" || todo+=("$name")
done
if [[ ${#todo[@]} -eq 0 ]]; then
  log "every image tarball in $IMAGES is current (nothing to build)"
  for f in "$IMAGES"/kubenenc-*.tar; do log "  $(basename "$f")  $(du -m "$f" | cut -f1) MiB"; done
  exit 0
fi
log "to build: ${todo[*]}"

# -- tools --------------------------------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v dockerd >/dev/null || need+=(docker.io)
if [[ ${#need[@]} -gt 0 ]]; then
  [[ "$(id -u)" == 0 ]] || { log "missing ${need[*]} and not root"; exit 1; }
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
started_engine=0
cleanup() {
  [[ $started_engine == 1 ]] && "$ROOT/docker/engine.sh" stop
  rm -rf "${WORK:-}"
}
trap cleanup EXIT
if ! docker info >/dev/null 2>&1; then
  "$ROOT/docker/engine.sh" start
  started_engine=1
fi
WORK="$(mktemp -d)"
stage "tools ready"

# -- root file systems (debootstrap once) -------------------------------------------------------
rootfs_tar() { # name stamp -> makes $IMAGES/rootfs-NAME.tar
  [[ -f "$IMAGES/rootfs-$1.tar" && "$(cat "$IMAGES/.rootfs-$1.stamp" 2>/dev/null)" == "$2" ]]
}
trim() { # what no image needs: docs, man pages, locales, apt's lists and caches
  rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/* \
    "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/log/*
}
if ! rootfs_tar base "$base_stamp" || ! rootfs_tar redis "$redis_stamp"; then
  ROOTFS="$WORK/rootfs"
  log "debootstrap --variant=minbase $SUITE (+ $BASE_PACKAGES) from $MIRROR"
  nice debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log"; exit 1; }
  stage "debootstrap done"
  # Redis: the same root plus Debian's redis-server, installed in a chroot (no service start).
  cp -a "$ROOTFS" "$WORK/redis"
  cp /etc/resolv.conf "$WORK/redis/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$WORK/redis/usr/sbin/policy-rc.d"
  chmod +x "$WORK/redis/usr/sbin/policy-rc.d"
  chroot "$WORK/redis" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$WORK/redis" apt-get install -y -qq --no-install-recommends \
    redis-server >/dev/null
  rm -f "$WORK/redis/usr/sbin/policy-rc.d"
  : >"$WORK/redis/etc/resolv.conf"
  for name in base redis; do
    dir="$ROOTFS"
    [[ $name == redis ]] && dir="$WORK/redis"
    trim "$dir"
    tar -C "$dir" --numeric-owner -cf "$IMAGES/rootfs-$name.tar.tmp" .
    mv "$IMAGES/rootfs-$name.tar.tmp" "$IMAGES/rootfs-$name.tar"
  done
  printf '%s' "$base_stamp" >"$IMAGES/.rootfs-base.stamp"
  printf '%s' "$redis_stamp" >"$IMAGES/.rootfs-redis.stamp"
  rm -rf "$ROOTFS" "$WORK/redis"
  stage "root file systems saved"
fi
docker import --change 'CMD ["python3"]' "$IMAGES/rootfs-base.tar" kubenenc-base:bookworm >/dev/null
docker import --change 'CMD ["redis-server"]' --change 'USER 65532:65532' \
  "$IMAGES/rootfs-redis.tar" "kubenenc-redis:$VERSION" >/dev/null
stage "base images imported"

# -- wheels (pip on the host: PyPI is reached from here, never from inside a build) -----------
wheel_stamp="$(cat "$ROOT/pyproject.toml" | stamp_of)"
if [[ "$(cat "$WHEELS/.stamp" 2>/dev/null)" != "$wheel_stamp" ]]; then
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  mapfile -t reqs < <("$PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
opt = p["project"]["optional-dependencies"]
for r in [*p["project"].get("dependencies", []), *opt["operator"], *opt["redis"],
          *opt["mongodb"], *opt["dashboard"], *p["build-system"]["requires"]]:
    print(r)
# pip download evaluates python_full_version markers for the host's Python, not for
# --python-version: redis needs this one below 3.11.3 (bookworm has 3.11.2).
print("async-timeout>=4.0.3")
PY
)
  log "pip download ${reqs[*]}"
  nice "$PYTHON" -m pip download -q --disable-pip-version-check --no-cache-dir -d "$WHEELS" \
    --only-binary=:all: --python-version 3.11.2 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 "${reqs[@]}"
  printf '%s' "$wheel_stamp" >"$WHEELS/.stamp"
  stage "wheels fetched ($(find "$WHEELS" -name '*.whl' | wc -l) files)"
fi
mkdir -p "$WORK/build-image"
cp -a "$WHEELS" "$WORK/build-image/wheels"
cat >"$WORK/build-image/Dockerfile" <<'EOF'
FROM kubenenc-base:bookworm
COPY wheels /wheels
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels PIP_DISABLE_PIP_VERSION_CHECK=1
EOF
docker build -q -t kubenenc-build:local "$WORK/build-image" >/dev/null

# -- the images ---------------------------------------------------------------------------------
args=(--build-arg PYTHON_IMAGE=kubenenc-base:bookworm --build-arg BUILD_IMAGE=kubenenc-build:local
      --build-arg "KUBENENC_VERSION=$VERSION")
# The context holds only what docker/Dockerfile.dockerignore lets in.
context() {
  tar -C "$ROOT" -c --exclude=__pycache__ --exclude='*.pyc' --exclude='.*_cache' \
    --exclude='*.egg-info' pyproject.toml README.md sdk worker operator plugins dashboard cli docker/Dockerfile
}
for target in operator worker; do
  context | nice docker build -q -f docker/Dockerfile "${args[@]}" --target "$target" \
    -t "kubenenc-$target:$VERSION" - >/dev/null
  stage "kubenenc-$target:$VERSION built"
done
nice docker build -q --build-arg "WORKER_IMAGE=kubenenc-worker:$VERSION" \
  -t "kubenenc-shop:$VERSION" "$ROOT/examples/shop" >/dev/null
stage "kubenenc-shop:$VERSION built"

for name in "${todo[@]}"; do
  docker save -o "$IMAGES/$name.tar.tmp" "$name:$VERSION"
  mv "$IMAGES/$name.tar.tmp" "$IMAGES/$name.tar"
  printf '%s' "${WANT[$name]} $VERSION" >"$IMAGES/.$name.stamp"
done
stage "saved ${todo[*]}"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^kubenenc-' | sort \
  | while read -r image size; do log "  $image  $size"; done
log "done in $(($(date +%s) - T0)) s"
