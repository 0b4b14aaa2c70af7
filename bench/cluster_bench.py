"""Redis Cluster shards: the same workload on 1, 2 and 3 shards of a loopback cluster, and on
one plain redis-server, measuring what each redis-server process spends.

    python bench/cluster_bench.py [--tasks 6000] [--batch 1,20,100] [--repeat 3]

Starts its own cluster (3 masters, no replicas: a replica's CPU would blur the masters') and
three plain servers: one is the reference; "3 plain servers" sends the batches to the three
in turn (three separate apps, as it were: no cluster code at all), the control that shows
what spreading the same requests over three processes costs on this machine by itself. Per
layout, ``--tasks`` keyless root calls go through the contract from this one process in
batches of ``--batch``: register, claim (limit ``--batch``), finish (batch 1 is one call at
a time). Each batch size is its own row set, its layouts interleaved. It prints, as medians
of ``--repeat`` runs: requests sent per task (a pipeline is one), server CPU per task (all
redis-server processes of the layout together, from ``INFO cpu``) and its ratio to the one
plain server's, the same net of the servers' idle cost (cluster bus and timers, read with
no client before the runs), the busiest server's share, how evenly tasks and CPU spread
over the servers that hold shards (max/min), and tasks per server CPU second (throughput
per server core). The client is one Python process, so wall-clock throughput is not the
point: server CPU per task is what decides how far N cores carry a deployment.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.connection  # noqa: E402
from kubenenc.ids import WorkerId  # noqa: E402
from kubenenc.records import Outcome, OutcomeKind  # noqa: E402
from kubenenc.testing.helpers import new  # noqa: E402
from kubenenc_redis import RedisBackend  # noqa: E402
from kubenenc_redis.shards import ShardedBackend  # noqa: E402

from tests.servers.redis import RedisServer  # noqa: E402
from tests.servers.rediscluster import RedisCluster  # noqa: E402

WORKER = WorkerId("bench:1:w")
PLAIN = {"plain": 1, "3 plain": 3}
"""Layouts on plain servers, and how many they use."""
TRIPS = [0]
"""Requests sent to any server (one per command, one per pipeline), counted below."""
IDLE_SECONDS = 3.0
"""How long the servers' own CPU is read with no client (cluster bus and timers)."""


def _count_trips() -> None:
    """Count every request redis-py sends (a pipeline is one): each wakes a server once."""
    real = redis.connection.AbstractConnection.send_packed_command

    def counted(self: object, *args: object, **kw: object) -> None:
        TRIPS[0] += 1
        real(self, *args, **kw)  # type: ignore[arg-type]

    redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def idle_rates(ports: list[int]) -> dict[int, float]:
    """CPU seconds per second each server spends with no client: a cluster node's bus and
    timers cost it whether or not it works, so a slow run (batch 1) pays more of it."""
    before = {port: cpu_seconds(port) for port in ports}
    start = time.monotonic()
    time.sleep(IDLE_SECONDS)
    took = time.monotonic() - start
    return {port: (cpu_seconds(port) - before[port]) / took for port in ports}


def cpu_seconds(port: int) -> float:
    """User + system CPU seconds of the redis-server on ``port`` so far (``INFO cpu``:
    microsecond resolution, where ``/proc`` counts 10 ms ticks)."""
    with redis.Redis(port=port, decode_responses=True) as r:
        info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def workload(backends: list[object], tasks: int, batch: int) -> None:
    """Register, claim and finish ``tasks`` calls, ``batch`` at a time, the batches on
    ``backends`` in turn."""
    now = 1.0
    done = 0
    turn = 0
    while done < tasks:
        b = backends[turn % len(backends)]
        turn += 1
        n = min(batch, tasks - done)
        now += 0.001
        b.register([new("f", str(done + k)) for k in range(n)], now)  # type: ignore[attr-defined]
        got: list[object] = []
        while len(got) < n:
            got += b.claim("default", WORKER, n - len(got), now)  # type: ignore[attr-defined]
        outcomes = [Outcome(r.id, OutcomeKind.SUCCESS, result="1") for r in got]  # type: ignore[attr-defined]
        b.finish(outcomes, WORKER, now)  # type: ignore[attr-defined]
        done += n


def one_run(
    layout: str,
    cluster: RedisCluster,
    plains: list[RedisServer],
    tasks: int,
    batch: int,
    idle: dict[int, float],
) -> dict[str, float]:
    """One layout: ``plain`` (one server), ``3 plain`` (three plain servers, the batches
    on each in turn: the control for spreading alone) or ``N`` shards."""
    prefix = f"b{uuid.uuid4().hex[:8]}"
    if layout in PLAIN:
        servers = plains[: PLAIN[layout]]
        procs = {s.port: s.proc.pid for s in servers}  # type: ignore[union-attr]
        backends: list[object] = [
            RedisBackend.from_url(f"{s.url}?prefix={prefix}") for s in servers
        ]
    else:
        procs = {n.port: n.proc.pid for n in cluster.nodes}  # type: ignore[union-attr]
        url = f"{cluster.url}?prefix={prefix}&shards={layout}"
        backends = [ShardedBackend.from_url(url)]
    try:
        workload(backends, 200, batch)  # warm: connections, libraries loaded
        before = {port: cpu_seconds(port) for port in procs}
        trips, start = TRIPS[0], time.monotonic()
        workload(backends, tasks, batch)
        trips, took = TRIPS[0] - trips, time.monotonic() - start
        used = {port: cpu_seconds(port) - before[port] for port in procs}
        per_shard: dict[int, int] = {}
        for backend in backends:
            if isinstance(backend, ShardedBackend):
                per_shard = {s.node[1]: 0 for s in backend.shards}
                for s in backend.shards:
                    per_shard[s.node[1]] += sum(s.counts().values())
            else:
                port = backend._r.connection_pool.connection_kwargs["port"]  # type: ignore[attr-defined]
                per_shard[port] = sum(backend.counts().values())  # type: ignore[attr-defined]
        holders = list(per_shard)
    finally:
        for backend in backends:
            backend.close()  # type: ignore[attr-defined]
    total = sum(used.values())
    busy = [used[p] for p in holders]
    counts = [per_shard[p] for p in holders]
    net = max(total - sum(idle[p] for p in procs) * took, 0.0)
    return {
        "cpu_us_per_task": total / tasks * 1e6,
        "net_us_per_task": net / tasks * 1e6,
        "trips_per_task": trips / tasks,
        "busiest_us_per_task": max(used.values()) / tasks * 1e6,
        "cpu_spread": max(busy) / max(min(busy), 1e-9),
        "task_spread": max(counts) / max(min(counts), 1),
        "tasks_per_server_cpu_s": tasks / total if total else 0.0,
        "masters": float(len(holders)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument(
        "--batch", default="1,20,100", help="batch sizes, comma-separated: a row set each"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    layouts = ["plain", "3 plain", "1", "2", "3"]
    batches = [int(b) for b in args.batch.split(",")]
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RedisCluster(Path(tmp) / "cluster", masters=3, replicas=0).start()
        plains = [RedisServer(Path(tmp) / f"plain{i}").start() for i in range(3)]
        try:
            ports = [s.port for s in plains] + [n.port for n in cluster.nodes]
            idle = idle_rates(ports)
            print("idle CPU µs/s per server:", {p: round(r * 1e6) for p, r in idle.items()})
            _count_trips()
            for batch in batches:
                for r in range(args.repeat):  # layouts interleaved: the noise hits all
                    for layout in layouts:
                        got = one_run(layout, cluster, plains, args.tasks, batch, idle)
                        runs.setdefault((batch, layout), []).append(got)
                        print(f"batch {batch} run {r + 1} {layout}: {got}", flush=True)
        finally:
            cluster.stop()
            for s in plains:
                s.stop()
    print()
    print(f"{args.tasks} tasks per run; medians of {args.repeat} runs")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    head = ("layout", "batch", "masters", "requests/task", "server µs/task", "vs plain",
            "net of idle µs/task", "vs plain", "busiest µs/task", "CPU spread", "task spread",
            "tasks/server-CPU-s")  # fmt: skip
    print(" | ".join(head))
    for batch in batches:
        med = {
            layout: {
                k: statistics.median(run[k] for run in runs[batch, layout])
                for k in runs[batch, layout][0]
            }
            for layout in layouts
        }
        for layout in layouts:
            m = med[layout]
            name = {"plain": "plain server", "3 plain": "3 plain servers"}.get(
                layout, f"{layout} shard(s)"
            )
            ratio = m["cpu_us_per_task"] / med["plain"]["cpu_us_per_task"]
            net = m["net_us_per_task"] / med["plain"]["net_us_per_task"]
            print(
                f"{name} | {batch} | {m['masters']:.0f} | {m['trips_per_task']:.3f} | "
                f"{m['cpu_us_per_task']:.1f} | {ratio:.2f}x | {m['net_us_per_task']:.1f} | "
                f"{net:.2f}x | {m['busiest_us_per_task']:.1f} | {m['cpu_spread']:.2f} | "
                f"{m['task_spread']:.2f} | {m['tasks_per_server_cpu_s']:,.0f}"
            )


if __name__ == "__main__":
    main()
