"""SQLite benchmark: kubenenc end to end beside raw SQLite on the same disk, in one run.

    python bench/sqlite_bench.py [--tasks 10000] [--latency 300] [--repeat 3]

Prints one table: end-to-end throughput of no-op tasks with one worker process, enqueue rate
with parallelize, call-to-result latency (p50/p99), and, as the ceiling, raw SQLite inserts
on the same disk (one transaction each, as a durable enqueue must commit, and batched).
Medians of --repeat runs. Not a test: nothing is asserted.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import measure, medians, parse_args  # noqa: E402


def raw_inserts(path: Path, n: int, batch: int) -> float:
    """Rows/s inserted into a fresh WAL database, ``batch`` rows per transaction."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT)")
    payload = "x" * 600  # about the size of a stored invocation record
    start = time.perf_counter()
    for i in range(0, n, batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO t (data) VALUES (?)", [(payload,)] * min(batch, n - i))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return n / elapsed


def one_run(
    tmp: Path, tasks: int, latency_calls: int, mode: str, concurrency: int
) -> dict[str, float]:
    out = measure(f"sqlite:///{tmp / 'bench.db'}", tasks, latency_calls, mode, concurrency)
    out["raw1"] = raw_inserts(tmp / "raw1.db", 3000, 1)
    out["raw_batch"] = raw_inserts(tmp / "rawb.db", tasks, 1000)
    return out


def main() -> None:
    args = parse_args(__doc__, latency=300, concurrency=8)

    def run() -> dict[str, float]:
        with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
            return one_run(Path(tmp), args.tasks, args.latency, args.mode, args.concurrency)

    med = medians(run, args.repeat)
    title = (
        f"kubenenc on SQLite — medians of {args.repeat} runs, {args.tasks:,} no-op tasks, "
        f"one worker process ({args.mode}, {args.concurrency} slots)"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("kubenenc", justify="right")
    table.add_column("raw SQLite, same disk, same run", justify="right")
    table.add_row("end-to-end throughput (tasks/s)", f"{med['throughput']:,.0f}",
                  f"{med['raw1']:,.0f} inserts/s, 1 per commit")  # fmt: skip
    table.add_row("enqueue with parallelize (calls/s)", f"{med['enqueue']:,.0f}",
                  f"{med['raw_batch']:,.0f} inserts/s, 1,000 per commit")  # fmt: skip
    table.add_row("call-to-result latency p50 (ms)", f"{med['p50']:.2f}", "")
    table.add_row("call-to-result latency p99 (ms)", f"{med['p99']:.2f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
