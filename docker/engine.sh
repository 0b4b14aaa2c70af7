#!/usr/bin/env bash
# Start or stop a Docker engine for building images on a host where none runs (as root, with
# Debian's docker.io installed; no systemd needed).
#
#   docker/engine.sh start   # exit 0 once `docker info` answers; starts dockerd if needed
#   docker/engine.sh stop    # stops the dockerd that `start` started (by its pid), if any
#
# The engine's data stays in /var/lib/docker (so built layers are reused by the next run);
# its log goes to ${KUBENENC_CACHE_DIR:-~/.cache/kubenenc}/logs/dockerd.log. A dockerd that
# was already running is used as is and never stopped.
set -euo pipefail

CACHE_DIR="${KUBENENC_CACHE_DIR:-$HOME/.cache/kubenenc}"
PID_FILE="$CACHE_DIR/dockerd.pid"
LOG="$CACHE_DIR/logs/dockerd.log"

answers() { docker info >/dev/null 2>&1; }

case "${1:-}" in
start)
  if answers; then exit 0; fi
  command -v dockerd >/dev/null || { echo "dockerd is not installed (apt-get install docker.io)" >&2; exit 1; }
  [[ "$(id -u)" == 0 ]] || { echo "starting dockerd needs root" >&2; exit 1; }
  mkdir -p "$(dirname "$LOG")"
  # Its own containerd (dockerd starts one when none listens on the default socket).
  nohup dockerd --host unix:///var/run/docker.sock --pidfile /var/run/docker-kubenenc.pid \
    >"$LOG" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  for _ in $(seq 120); do
    if answers; then echo "dockerd started (pid $(cat "$PID_FILE"), log $LOG)"; exit 0; fi
    kill -0 "$(cat "$PID_FILE")" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd did not answer; last lines of $LOG:" >&2
  tail -n 30 "$LOG" >&2 || true
  exit 1
  ;;
stop)
  [[ -f "$PID_FILE" ]] || exit 0
  pid="$(cat "$PID_FILE")"
  rm -f "$PID_FILE"
  kill "$pid" 2>/dev/null || exit 0
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
