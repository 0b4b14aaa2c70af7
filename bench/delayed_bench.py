"""Delayed calls: how late after their due time they start, over several worker processes.

    python bench/delayed_bench.py [--backend sqlite|redis|both] [--calls 1000]
                                  [--spread 5] [--workers 3] [--idle 10]

Registers ``--calls`` calls of ``bench.benchtasks.stamped`` with random countdowns spread
over ``--spread`` seconds, run by ``--workers`` worker processes (thread mode, 4 slots each)
that are otherwise idle, and prints per backend: how many started before they were due
(must be 0), and the lateness (the task's own start time minus its due time) as median,
p90, p99 and max; before the calls, the CPU the idle workers (and the Redis server) use over
``--idle`` seconds, as a percentage of one core. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import cpu_seconds, private_redis, running_workers  # noqa: E402


def idle_cpu(pids: list[int], seconds: float) -> float:
    """CPU the processes ``pids`` use together over ``seconds``, in % of one core."""
    before = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    return (sum(cpu_seconds(p) for p in pids) - before) / seconds * 100


def one_backend(
    url: str, calls: int, spread: float, workers: int, idle: float, server_pid: int | None
) -> dict[str, float]:
    from bench import benchtasks

    with running_workers(url, workers, "thread", 4) as procs:
        time.sleep(1.0)  # past their start
        idle_workers = idle_cpu([p.pid for p in procs], idle)
        idle_server = idle_cpu([server_pid], idle) if server_pid else 0.0
        rnd = random.Random(16)
        # Registered up front, each delayed from its own call; the first are due soonest
        # after the last is registered only if registering is faster than the spread.
        invs = [
            benchtasks.stamped.with_options(countdown=rnd.uniform(0.5, spread))(i)
            for i in range(calls)
        ]
        due = [inv.record().not_before for inv in invs]
        started = [inv.result(timeout=spread + 120) for inv in invs]
    late = sorted(s - d for s, d in zip(started, due, strict=True))
    q = statistics.quantiles(late, n=100)
    return {
        "idle_workers": idle_workers,
        "idle_server": idle_server,
        "early": sum(1 for x in late if x < 0),
        "p50": statistics.median(late) * 1000,
        "p90": q[89] * 1000,
        "p99": q[98] * 1000,
        "max": late[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            url = f"sqlite:///{tmp}/delayed.db"
            rows.append(
                ("SQLite", one_backend(url, args.calls, args.spread, args.workers, args.idle, None))
            )
        if args.backend in ("redis", "both"):
            with private_redis(Path(tmp) / "redis") as server:
                pid = server.proc.pid if server.proc is not None else None
                rows.append(
                    ("Redis", one_backend(
                        server.url, args.calls, args.spread, args.workers, args.idle, pid
                    ))
                )  # fmt: skip
    table = Table(
        title=f"{args.calls:,} delayed calls, countdowns 0.5 to {args.spread:g} s, "
        f"{args.workers} idle worker processes (thread mode, 4 slots)"
    )
    for col in ("backend", "idle CPU, workers %", "server %", "started early", "late p50 ms",
                "p90 ms", "p99 ms", "max ms"):  # fmt: skip
        table.add_column(col, justify="right")
    for name, r in rows:
        table.add_row(
            name, f"{r['idle_workers']:.1f}", f"{r['idle_server']:.1f}", str(int(r["early"])),
            f"{r['p50']:.1f}", f"{r['p90']:.1f}", f"{r['p99']:.1f}", f"{r['max']:.1f}",
        )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
