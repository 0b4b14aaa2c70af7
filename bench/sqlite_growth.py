"""SQLite file growth under a long steady load, with and without the retention sweep.

    python bench/sqlite_growth.py [--rounds 20] [--per-round 5000] [--retention 60]

Drives the backend's own contract (register, claim, finish, recover) with a simulated clock
that advances 10 s per round, so hours of load take seconds: each round registers, runs and
finishes ``--per-round`` calls, then calls ``recover`` as every worker's heartbeat does.
Prints the database file size (plus its WAL) after each round for a backend with
``retention=--retention`` beside one that keeps everything (7 days). With the sweep the
file stops growing once the first calls expire (SQLite reuses freed pages). Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubenenc.backends.sqlite import SQLiteBackend  # noqa: E402
from kubenenc.ids import InvocationId, WorkerId  # noqa: E402
from kubenenc.records import NewInvocation, Outcome, OutcomeKind, WorkerInfo  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

WORKER = WorkerId("bench")
STEP = 10.0


def size_mb(path: Path) -> float:
    wal = path.with_name(path.name + "-wal")
    total = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return total / 1e6


def new_call(i: int) -> NewInvocation:
    return NewInvocation(
        id=InvocationId(f"i{i}"), app="bench", task="noop", args='{"x": 1}',
        call_key=f"noop#{i}", display=f"noop({i})", pool="default",
    )  # fmt: skip


def one_round(backend: SQLiteBackend, start: int, n: int, now: float) -> None:
    new = [new_call(start + k) for k in range(n)]
    for chunk in range(0, n, 500):
        backend.register(new[chunk : chunk + 500], now)
        claimed = backend.claim("default", WORKER, 500, now)
        backend.finish(
            [Outcome(r.id, OutcomeKind.SUCCESS, result="2") for r in claimed], WORKER, now
        )
    backend.heartbeat(WorkerInfo(WORKER, "default", 1, 0, 0, now, "bench"))
    backend.recover(now, 5.0, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=5000)
    parser.add_argument("--retention", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        swept = SQLiteBackend(Path(tmp) / "swept.db", retention=args.retention)
        kept = SQLiteBackend(Path(tmp) / "kept.db")
        table = Table(title=f"SQLite file size (MB), {args.per_round} calls per {STEP:.0f} s")
        table.add_column("simulated time (s)", justify="right")
        table.add_column("calls so far", justify="right")
        table.add_column(f"retention {args.retention:.0f} s", justify="right")
        table.add_column("retention 7 days", justify="right")
        for r in range(args.rounds):
            now = 1_000_000.0 + r * STEP
            for backend in (swept, kept):
                one_round(backend, r * args.per_round, args.per_round, now)
            table.add_row(
                f"{(r + 1) * STEP:.0f}", f"{(r + 1) * args.per_round:,}",
                f"{size_mb(swept.path):.1f}", f"{size_mb(kept.path):.1f}",
            )  # fmt: skip
        swept.close()
        kept.close()
    Console().print(table)


if __name__ == "__main__":
    main()
