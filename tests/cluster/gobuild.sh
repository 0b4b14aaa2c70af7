# shellcheck shell=bash
# Shared by tests/cluster/build-binaries.sh and tests/e2e/node/build.sh (sourced, not run):
# the Kubernetes version stamp flags, the build lock, and one cached `go build` of a wrapper
# module's package.
#
# The caller sets CACHE_DIR, BIN_DIR, LOG_DIR and a `log` function before sourcing, and
# exports CGO_ENABLED/GOFLAGS as it wants them.

# k8s_ldflags VERSION: the -ldflags that stamp a Kubernetes binary with VERSION (v1.M.P).
k8s_ldflags() {
    local version="$1" minor pkg flags="-s -w"
    minor="${version#v1.}"
    minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
    done
    printf '%s' "$flags"
}

# take_build_lock: hold $CACHE_DIR/.build.lock on fd 9 (waiting for another build), so two
# scripts never build the same thing at once; `flock -u 9` or the script's end releases it.
take_build_lock() {
    exec 9>"$CACHE_DIR/.build.lock"
    if ! flock -n 9; then
        log "another build holds $CACHE_DIR/.build.lock; waiting for it"
        flock 9
    fi
}

# go_build_cached NAME DIR PKG LDFLAGS [DIGEST_CHARS]: build PKG of the wrapper module in DIR
# to $BIN_DIR/NAME under `nice`, unless it is there with a stamp that matches a digest of
# DIR's go.mod, go.sum and main.go (if any; the first DIGEST_CHARS hex digits, default all),
# the Go version, PKG and LDFLAGS. Logs to $LOG_DIR/NAME.log; returns 1 (after showing its
# last lines) when the build fails.
go_build_cached() {
    local name="$1" dir="$2" pkg="$3" ldflags="$4" chars="${5:-64}"
    local out="$BIN_DIR/$name" stamp_file="$BIN_DIR/.$name.stamp" build_log="$LOG_DIR/$name.log"
    local inputs=("$dir/go.mod" "$dir/go.sum") stamp start
    [ -f "$dir/main.go" ] && inputs+=("$dir/main.go")
    stamp="$(cat "${inputs[@]}" | sha256sum | cut -c1-"$chars") $(go env GOVERSION) $pkg $ldflags"
    if [ -x "$out" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
        log "$name: up to date (cached)"
        return 0
    fi
    log "$name: building $pkg (log: $build_log)"
    start=$(date +%s)
    if (cd "$dir" && nice -n 10 go build -ldflags "$ldflags" -o "$out.tmp" "$pkg") >"$build_log" 2>&1; then
        mv -f "$out.tmp" "$out"
        printf '%s' "$stamp" >"$stamp_file"
        log "$name: built in $(($(date +%s) - start)) s"
    else
        rm -f "$out.tmp"
        log "ERROR: $name failed to build after $(($(date +%s) - start)) s; last lines of $build_log:" >&2
        tail -n 30 "$build_log" >&2 || true
        return 1
    fi
}
