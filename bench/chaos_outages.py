"""Chaos runner, outage rows: the scenarios of ``tests/chaos/outages.py`` at a larger scale.

    python bench/chaos.py --outages [--calls 300] [--backends redis,mongodb,cluster]
    python bench/chaos_outages.py [--calls 300] [--backends redis,mongodb,cluster]

Per backend and fault, real worker processes (3 x 2 slots, process mode) under the kill -9
scenario's load while the server stops answering or two workers' clocks are off by 10 s:
Redis ``CLIENT PAUSE`` 10 s, ``DEBUG SLEEP`` 6 s and SIGSTOP of the server 6 s (heartbeat
timeout 2 s), ``CLIENT KILL`` of every connection 8 times, clock skew +-10 s; FerretDB
SIGSTOP 6 s and clock skew +-10 s (heartbeat timeout 2 s too: its lock judges no clock);
the Redis faults on every master of a Redis Cluster at once (``shards=3``, 3 masters, no
replicas, node timeout 15 s: see tests/chaos/test_cluster_outages.py).
Prints calls, faults, seconds the server was out, calls whose body ran twice, lost,
overlapping bodies, running-limit violations, calls left non-final, hand-backs (losses
recorded: a live worker taken for dead), and the longest time from a fault's end to the
first call that ended after it. Not a test: ``tests/chaos/test_outages.py`` asserts the
zeros.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.chaos.outages import OutageReport, run  # noqa: E402
from tests.servers.mongodb import ferretdb_binary, start_ferretdb  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402
from tests.servers.rediscluster import RedisCluster  # noqa: E402

SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "redis": [
        ("pause", {"seconds": 10.0}),
        ("sleep", {"seconds": 6.0}),
        ("freeze", {"seconds": 6.0}),
        ("kill", {"times": 8, "every": 2.0}),
        ("skew", {"skew": 10.0}),
    ],
    "cluster": [
        ("pause", {"seconds": 10.0}),
        ("sleep", {"seconds": 6.0}),
        ("freeze", {"seconds": 6.0}),
        ("kill", {"times": 8, "every": 2.0}),
        ("skew", {"skew": 10.0}),
    ],
    "mongodb": [
        # The same heartbeat timeout as Redis (2 s): the lock no longer judges any
        # process's clock, and recovery no longer holds up beats (issue 13).
        ("freeze", {"seconds": 6.0}),
        ("skew", {"skew": 10.0}),
    ],
}


def _redis(tmp: Path, fault: str, calls: int, options: dict[str, Any]) -> OutageReport:
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server: apt-get install -y redis-server")
    server = RedisServer(tmp / "redis", "--enable-debug-command", "local").start()
    try:
        assert server.proc is not None
        return run(fault, f"{server.url}?prefix={fault}", tmp / "logs", calls=calls,
                   server_pids=[server.proc.pid], deadline=600, **options)  # fmt: skip
    finally:
        server.stop()


def _cluster(tmp: Path, fault: str, calls: int, options: dict[str, Any]) -> OutageReport:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        sys.exit("needs redis-server and redis-cli: apt-get install -y redis-server")
    cluster = RedisCluster(
        tmp / "cluster", replicas=0,
        extra=("--enable-debug-command", "local", "--cluster-node-timeout", "15000"),
    )  # fmt: skip
    try:
        cluster.start()
        pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
        return run(fault, f"{cluster.url}?prefix={fault}&shards=3", tmp / "logs", calls=calls,
                   server_pids=pids, admin_urls=[node.url for node in cluster.nodes],
                   deadline=600, **options)  # fmt: skip
    finally:
        cluster.stop()


def _mongodb(tmp: Path, fault: str, calls: int, options: dict[str, Any]) -> OutageReport:
    binary = ferretdb_binary()
    if binary is None:
        sys.exit("needs FerretDB: plugins/mongodb/ferretdb/build.sh")
    server = start_ferretdb(binary, tmp / "data", tmp / "ferretdb.log")
    try:
        return run(fault, server.url(f"chaos_{fault}"), tmp / "logs", calls=calls,
                   server_pids=[server.proc.pid], deadline=900, **options)  # fmt: skip
    finally:
        server.stop()


def table(calls: int, backends: list[str]) -> Table:
    """Run every scenario of ``backends`` with ``calls`` calls each; the table of results."""
    out = Table(title=f"outages and clock skew: {calls:,} calls each, 3 workers x 2 slots")
    for name in ("backend", "fault", "calls", "faults", "out (s)", "reruns", "lost",
                 "overlaps", "limit violations", "stuck", "hand-backs",
                 "longest recovery (s)", "run (s)"):  # fmt: skip
        out.add_column(name, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for fault, options in SCENARIOS[backend]:
                where = Path(tmp) / f"{backend}-{fault}"
                where.mkdir()
                one = {"redis": _redis, "cluster": _cluster}.get(backend, _mongodb)
                r = one(where, fault, calls, options)
                out.add_row(
                    backend, fault, f"{r.calls:,}", str(r.faults), f"{r.fault_seconds:.0f}",
                    str(r.reruns), str(r.lost + r.wrong), str(len(r.overlaps)),
                    str(len(r.limit_violations)), str(r.stuck), str(r.hand_backs),
                    f"{r.longest_recovery:.1f}", f"{r.seconds:.0f}",
                )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--backends", default="redis,mongodb,cluster")
    args = parser.parse_args()
    Console(width=200).print(table(args.calls, args.backends.split(",")))


if __name__ == "__main__":
    main()
