#!/usr/bin/env bash
# Build FerretDB 1.24 (MongoDB wire protocol over SQLite) for the MongoDB backend tests.
#
# Usage: plugins/mongodb/ferretdb/build.sh
#
#   * The wrapper module here (go.mod, go.sum, main.go) pins FerretDB v1.24.2 and runs it
#     through its embeddable package: FerretDB's own cmd/ferretdb panics when built from the
#     module proxy (it wants a version.txt made from a git checkout).
#   * The binary goes to ${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}/bin/ferretdb and is
#     reused while a stamp (hash of go.mod, go.sum, main.go and the Go version) matches, so a
#     second run takes about a second.
#   * Without `go`: exit 0 with a message on a laptop (the MongoDB tests then skip), exit 1
#     when CI is set (CI must never pass by skipping). A failed build always exits 1.
#   * Runs under `nice`; a lock file stops two runs from building at once.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}"
BIN_DIR="$CACHE_DIR/bin"
LOG_DIR="$CACHE_DIR/build-logs"
OUT="$BIN_DIR/ferretdb"
STAMP_FILE="$BIN_DIR/.ferretdb.stamp"

say() { printf '[ferretdb] %s\n' "$*"; }
ci_is_set() {
    case "${CI:-}" in
        "" | false | 0 | no) return 1 ;;
        *) return 0 ;;
    esac
}

if ! command -v go >/dev/null 2>&1; then
    if ci_is_set; then
        say "ERROR: 'go' is not on PATH, so FerretDB cannot be built; CI is set, failing." >&2
        exit 1
    fi
    say "'go' is not on PATH: not building FerretDB; the MongoDB tests will be skipped."
    exit 0
fi

mkdir -p "$BIN_DIR" "$LOG_DIR"
exec 9>"$CACHE_DIR/.ferretdb-build.lock"
if ! flock -n 9; then
    say "another build holds $CACHE_DIR/.ferretdb-build.lock; waiting for it"
    flock 9
fi

go_version="$(go env GOVERSION)"
stamp="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -d' ' -f1) $go_version"
if [ -x "$OUT" ] && [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$stamp" ]; then
    say "up to date: $OUT"
    exit 0
fi

build_log="$LOG_DIR/ferretdb.log"
say "building FerretDB with Go $go_version into $OUT (log: $build_log); the first build takes minutes"
start=$(date +%s)
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false -trimpath"
if (cd "$HERE" && nice -n 10 go build -ldflags "-s -w" -o "$OUT.tmp" .) >"$build_log" 2>&1; then
    mv -f "$OUT.tmp" "$OUT"
    printf '%s' "$stamp" >"$STAMP_FILE"
    say "built in $(($(date +%s) - start)) s"
else
    rm -f "$OUT.tmp"
    say "ERROR: the build failed after $(($(date +%s) - start)) s; last lines of $build_log:" >&2
    tail -n 30 "$build_log" >&2 || true
    exit 1
fi
