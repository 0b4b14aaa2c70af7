#!/usr/bin/env bash
# The whole test suite, from a fresh machine: install, build or start what the tests need,
# lint, type-check, then pytest. Extra arguments go to pytest.
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh tests/unit -q   # a part
#
# Servers and binaries: redis-server, chromium and postgresql come from Debian's packages
# (installed when missing and we are root); Kubernetes control-plane binaries and FerretDB are
# built from Go modules into ${KUBENENC_CACHE_DIR:-~/.cache/kubenenc}/bin and reused. Without them, their tests skip on a
# laptop and fail under CI=true. As root on Linux, the real-node e2e tier's packages, images
# and node binaries are installed and built too (tests/e2e/node/run.sh, cached).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }
ci() { case "${CI:-}" in "" | false | 0) return 1 ;; *) return 0 ;; esac; }

step "python packages (kubenenc with every extra, and the dev tools)"
python -m pip install --disable-pip-version-check -q -e ".[all,dev]"
# The example backend plugin (PostgreSQL through psycopg 3), installed as a user would.
python -m pip install --disable-pip-version-check -q -e examples/postgres

step "redis-server"
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
            || { echo "could not install redis-server"; ci && exit 1; }
    else
        echo "redis-server missing and not root: Redis tests will skip (they fail under CI)"
    fi
fi
command -v redis-server >/dev/null 2>&1 && redis-server --version

step "chromium (the dashboard's browser tests drive Debian's headless Chromium)"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
            || { echo "could not install chromium"; ci && exit 1; }
    else
        echo "chromium missing and not root: browser tests will skip (they fail under CI)"
    fi
fi
command -v chromium >/dev/null 2>&1 && chromium --version

step "postgresql (the server the example plugin, examples/postgres, is tested on)"
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
            || { echo "could not install postgresql"; ci && exit 1; }
    else
        echo "postgresql missing and not root: the example plugin's run will skip (it fails under CI)"
    fi
fi
compgen -G '/usr/lib/postgresql/*/bin/initdb' || true

if [ -x tests/cluster/build-binaries.sh ] || [ -f tests/cluster/build-binaries.sh ]; then
    step "Kubernetes control-plane binaries (cached builds)"
    bash tests/cluster/build-binaries.sh
fi
if [ -f plugins/mongodb/ferretdb/build.sh ]; then
    step "FerretDB (cached build)"
    bash plugins/mongodb/ferretdb/build.sh
fi
if [ -f plugins/mongodb/javaserver/build.sh ]; then
    step "mongo-java-server (cached Maven fetch)"
    if ! { command -v javac && command -v mvn; } >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                default-jdk-headless maven) || { echo "could not install a JDK and Maven"; ci && exit 1; }
        fi
    fi
    bash plugins/mongodb/javaserver/build.sh
fi

if [ -f tests/e2e/node/run.sh ]; then
    # The real-node end-to-end tier (tests/e2e): Debian's docker.io, containerd and CNI
    # plugins, the images (debootstrap base, built once) and the node's binaries, all cached
    # in ~/.cache/kubenenc. The pytest test then starts the cluster and runs the steps.
    step "real-node e2e: packages, images, node binaries (cached builds)"
    if [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ]; then
        PREPARE_ONLY=1 bash tests/e2e/node/run.sh \
            || { echo "could not prepare the real-node e2e run"; ci && exit 1; }
    else
        echo "not root on Linux: the real-node e2e test will skip (it fails under CI)"
    fi
fi

step "lint: ruff, mypy --strict, import-linter"
ruff check .
ruff format --check .
mypy
mypy examples/postgres/kubenenc_postgres
lint-imports

step "pytest"
python -m pytest "$@"

# The conformance kit as a plugin author runs it: the example plugin against a throwaway
# PostgreSQL (examples/postgres/server.sh: loopback, a temp folder, stopped on exit). Only in a
# full run (no pytest arguments given).
if [ "$#" = 0 ]; then
    step "the example plugin (examples/postgres) against the whole suite: pytest --pyargs kubenenc.testing"
    if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
        eval "$(bash examples/postgres/server.sh start)"
        trap 'bash examples/postgres/server.sh stop "$PG_DIR"' EXIT
        # -c: the example's own pyproject, which lists the optional roles it must keep.
        EXAMPLE_INI="$PWD/examples/postgres/pyproject.toml"
        (cd "$PG_DIR" && python -m pytest -p no:cacheprovider -c "$EXAMPLE_INI" \
            --rootdir "$PG_DIR" --pyargs kubenenc.testing --backend-url="$PG_URL?schema=t{fresh}")
    else
        echo "no PostgreSQL server: the example plugin's run is skipped"
        ci && exit 1
    fi
fi
