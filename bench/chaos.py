"""Chaos runner: the scenarios of ``tests/chaos`` at a larger scale, one table.

    python bench/chaos.py [--calls 1000] [--faults 12] [--every 2.5]
                          [--backends sqlite,redis,mongodb,cluster]
                          [--scenarios kill,stop,stop1,cut,reset,restart]

Real worker processes (process mode, 3 workers x 2 slots, heartbeat every 0.3 s, timeout
2 s) serve a steady load of limited calls, calls longer than the heartbeat timeout and
fan-outs that pause, while a fault strikes every ``--every`` seconds:

- ``kill``: kill -9 of a random busy worker, replaced;
- ``stop``: SIGSTOP of a busy worker's process group for 3.5 s, then SIGCONT (a zombie);
  ``stop1``: of the worker process alone (its task processes run on);
- ``cut`` / ``reset``: the loopback proxy between a busy worker and the backend stops
  forwarding for 3.5 s (``reset``: and resets its connections), then forwards again
  (Redis and MongoDB only: SQLite has no network);
- ``restart``: kill -9 of the server, 0.5 s down, started again on its port with its data
  (Redis with AOF ``everysec`` and ``always``; FerretDB on SQLite; on the cluster, one
  master, then all three, then another, in turn).

Redis is a private ``redis-server``, MongoDB a private FerretDB and ``cluster`` a private
Redis Cluster (``shards=3`` over 3 masters, each with a replica; for ``restart``, 3 masters
with AOF and no replica, as in tests/chaos/test_cluster_restarts.py), on free loopback
ports. On the cluster, ``cut``/``reset`` cut the worker's proxies to every node.
Prints per scenario and backend: calls, faults injected, calls whose body ran more than
once, calls lost (ended wrongly or twice), overlapping bodies of one call and running-limit
violations not explained by a hand-back from a live worker thought dead, calls left
non-final, the overlaps so explained (zombies), how many of those a zombie body started
after the rerun had (late starts), how long the longest zombie body ran on,
calls FAILED with WorkerLost, and the longest time to recover (fault to the hand-back of the
last call the faulted worker held; outage start to the first call finished after it). Not
a test: ``tests/chaos`` asserts the zeros.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.chaos.faults import (  # noqa: E402
    CutNetwork,
    Fault,
    KillWorker,
    RestartNodes,
    RestartServer,
    StopWorker,
)
from tests.chaos.scenario import HEARTBEAT_TIMEOUT, Report, run  # noqa: E402
from tests.chaos.test_restarts import Ferret  # noqa: E402
from tests.servers.mongodb import ferretdb_binary  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402
from tests.servers.rediscluster import RedisCluster  # noqa: E402

LASTING = HEARTBEAT_TIMEOUT + 1.5


@contextlib.contextmanager
def server(kind: str, tmp: Path, *redis_args: str) -> Iterator[tuple[str, list[int], Fault]]:
    """(url, ports of its servers, a restart fault of it) of a fresh server of ``kind``."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'chaos.db'}", [], Fault()
    elif kind == "redis":
        if shutil.which("redis-server") is None:
            sys.exit("needs redis-server: apt-get install -y redis-server")
        redis = RedisServer(tmp / "redis", *redis_args).start()
        label = f"Redis AOF {redis_args[-1]}" if redis_args else "Redis"
        try:
            yield redis.url, [redis.port], RestartServer(redis.kill, redis.start, label=label)
        finally:
            redis.stop()
    elif kind == "cluster":
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            sys.exit("needs redis-server and redis-cli: apt-get install -y redis-server")
        # With AOF (the restart rows): no replicas, see tests/chaos/test_cluster_restarts.py.
        cluster = RedisCluster(tmp / "cluster", replicas=0 if redis_args else 1, extra=redis_args)
        try:
            cluster.start()
            label = f"cluster AOF {redis_args[-1]}" if redis_args else "cluster"
            restart = RestartNodes(nodes=cluster.nodes, plan=[(0,), (0, 1, 2), (1,), (2,)],
                                   label=label)  # fmt: skip
            yield f"{cluster.url}?prefix=chaos&shards=3", [n.port for n in cluster.nodes], restart
        finally:
            cluster.stop()
    else:
        if ferretdb_binary() is None:
            sys.exit("needs FerretDB: plugins/mongodb/ferretdb/build.sh")
        ferret = Ferret(tmp / "ferretdb")
        try:
            yield (
                ferret.server.url("chaos"),
                [ferret.server.port],
                RestartServer(ferret.kill, ferret.start, label="FerretDB"),
            )
        finally:
            ferret.server.stop()


def plans(scenarios: list[str], backends: list[str]) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(scenario, backend, extra redis-server arguments) to run, in table order."""
    for scenario in scenarios:
        for kind in backends:
            if scenario in ("cut", "reset") and kind == "sqlite":
                continue
            if scenario == "restart" and kind == "sqlite":
                continue
            if scenario == "restart" and kind in ("redis", "cluster"):
                for fsync in ("everysec", "always"):
                    yield scenario, kind, ("--appendonly", "yes", "--appendfsync", fsync)
                continue
            yield scenario, kind, ()


def fault_for(scenario: str, kind: str, ports: list[int], restart: Fault) -> Fault:
    route: dict[str, Any] = (
        {"cluster_ports": tuple(ports)} if kind == "cluster" else {"target_port": ports[0]}
    )
    makers: dict[str, Callable[[], Fault]] = {
        "kill": KillWorker,
        "stop": lambda: StopWorker(seconds=LASTING),
        "stop1": lambda: StopWorker(seconds=LASTING, group=False),
        "cut": lambda: CutNetwork(seconds=LASTING, **route),
        "reset": lambda: CutNetwork(seconds=LASTING, reset=True, **route),
        "restart": lambda: restart,
    }
    return makers[scenario]()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(143)  # unwinds: each run's teardown kills the workers it started


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument(
        "--mongodb-calls",
        type=int,
        default=200,
        help="calls per MongoDB row (FerretDB is slow on a busy machine)",
    )
    parser.add_argument("--faults", type=int, default=12)
    parser.add_argument("--every", type=float, default=2.5)
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument("--scenarios", default="kill,stop,stop1,cut,reset,restart")
    parser.add_argument("--backends", default="sqlite,redis,mongodb,cluster")
    parser.add_argument(
        "--outages",
        action="store_true",
        help="the outage and clock-skew rows instead (bench/chaos_outages.py)",
    )
    args = parser.parse_args()
    if args.outages:  # its backends: redis, mongodb, cluster (see bench/chaos_outages.py)
        from bench.chaos_outages import SCENARIOS
        from bench.chaos_outages import table as outage_table

        backends = [b for b in args.backends.split(",") if b in SCENARIOS]
        Console(width=200).print(outage_table(args.calls, backends or list(SCENARIOS)))
        return
    table = Table(title=f"chaos: 3 workers x 2 slots, heartbeat timeout {HEARTBEAT_TIMEOUT:g} s")
    for name in ("fault", "backend", "calls", "faults", "reruns", "lost", "overlaps",
                 "limit violations", "stuck", "zombie overlaps", "zombie late starts",
                 "zombie run-on (s)",
                 "FAILED WorkerLost", "FAILED BackendUnavailable", "longest recovery (s)",
                 "run (s)"):  # fmt: skip
        table.add_column(name, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (scenario, kind, redis_args) in enumerate(
            plans(args.scenarios.split(","), args.backends.split(","))
        ):
            where = Path(tmp) / f"{n}-{scenario}-{kind}"
            where.mkdir()
            calls = args.mongodb_calls if kind == "mongodb" else args.calls
            with server(kind, where, *redis_args) as (url, ports, restart):
                fault = fault_for(scenario, kind, ports, restart)
                r: Report = run(
                    url, where / "logs", fault, calls=calls, max_faults=args.faults,
                    fault_every=args.every, waves=max(1, calls // 25), deadline=args.deadline,
                )  # fmt: skip
            row = (
                fault.name, kind, f"{r.calls:,}", str(r.faults), str(r.reruns),
                str(r.lost + r.wrong), str(len(r.overlaps)), str(len(r.limit_violations)),
                str(r.stuck), str(len(r.zombie_overlaps)), str(r.zombie_late_starts),
                f"{r.zombie_run_on:.2f}",
                str(r.failed_worker_lost), str(r.failed_unavailable),
                f"{r.longest_recovery:.1f}", f"{r.seconds:.0f}",
            )  # fmt: skip
            table.add_row(*row)
            print(" | ".join(row), file=sys.stderr, flush=True)  # a row at a time, as it ends
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
