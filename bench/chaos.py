"""Chaos runner: the kill -9 scenario of ``tests/chaos`` at a larger scale, one table.

    python bench/chaos.py [--calls 1000] [--kills 12] [--kill-every 2.0] [--backends sqlite,redis]

Real worker processes (process mode, 3 workers x 2 slots) serve a steady load of limited
calls, calls longer than the heartbeat timeout (2 s here) and fan-outs that pause, while a
random worker is killed with SIGKILL every ``--kill-every`` seconds and replaced. Redis is a
private ``redis-server`` on a free loopback port. Prints per backend: calls, faults
injected, calls whose body ran more than once, calls lost, overlapping bodies of one call,
running-limit violations, calls left non-final, and the longest time from a kill to the
hand-back of the last call the killed worker held. Not a test: the suite's
``tests/chaos`` asserts the zeros.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.chaos.scenario import Report, run  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402


def one(kind: str, tmp: Path, args: argparse.Namespace) -> Report:
    options = {
        "calls": args.calls, "max_kills": args.kills, "kill_every": args.kill_every,
        "waves": max(1, args.calls // 25), "deadline": args.deadline,
    }  # fmt: skip
    if kind == "sqlite":
        return run(f"sqlite:///{tmp / 'chaos.db'}", tmp / "logs-sqlite", **options)
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server: apt-get install -y redis-server")
    server = RedisServer(tmp / "redis").start()
    try:
        return run(server.url, tmp / "logs-redis", **options)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument(
        "--outages",
        action="store_true",
        help="the outage and clock-skew rows instead (bench/chaos_outages.py)",
    )
    args = parser.parse_args()
    if args.outages:  # its backends: redis and mongodb (see bench/chaos_outages.py)
        from bench.chaos_outages import table as outage_table

        backends = [b for b in args.backends.split(",") if b in ("redis", "mongodb")]
        Console(width=200).print(outage_table(args.calls, backends or ["redis", "mongodb"]))
        return
    table = Table(title=f"kill -9 of random workers: {args.calls:,} calls, 3 workers x 2 slots")
    for name in ("backend", "calls", "faults", "reruns", "lost", "overlaps", "limit violations",
                 "stuck", "FAILED WorkerLost", "longest recovery (s)", "run (s)"):  # fmt: skip
        table.add_column(name, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.backends.split(","):
            (Path(tmp) / kind).mkdir()
            r = one(kind, Path(tmp) / kind, args)
            table.add_row(
                kind, f"{r.calls:,}", str(r.faults), str(r.reruns), str(r.lost + r.wrong),
                str(len(r.overlaps)), str(len(r.limit_violations)), str(r.stuck),
                str(r.failed_worker_lost), f"{r.longest_recovery:.1f}", f"{r.seconds:.0f}",
            )  # fmt: skip
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
