#!/usr/bin/env bash
# A throwaway PostgreSQL for the example's tests: Debian's server binaries, a cluster in a temp
# folder, listening on 127.0.0.1 only, trust authentication for one user, no fsync.
#
#   eval "$(examples/postgres/server.sh start)"   # sets PG_DIR, PG_PORT, PG_URL
#   examples/postgres/server.sh stop "$PG_DIR"
#
# initdb and postgres refuse to run as root: as root the cluster belongs to the `postgres`
# user (made by Debian's package) and is run as that user.
set -euo pipefail

bindir() {
    local dir found=""
    for dir in /usr/lib/postgresql/*/bin; do  # the newest major version wins
        [ -x "$dir/initdb" ] && found=$dir
    done
    [ -n "$found" ] || { echo "no PostgreSQL server (apt-get install postgresql)" >&2; return 1; }
    echo "$found"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
start)
    bin=$(bindir)
    dir=$(mktemp -d /tmp/kubenenc-pg.XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U kubenenc -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U kubenenc kubenenc
    echo "PG_DIR=$dir PG_PORT=$port PG_URL=postgresql://kubenenc@127.0.0.1:$port/kubenenc"
    ;;
stop)
    dir=${2:?usage: server.sh stop DIR}
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: server.sh start | stop DIR" >&2
    exit 2
    ;;
esac
