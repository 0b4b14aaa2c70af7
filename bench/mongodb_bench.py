"""MongoDB-protocol benchmark: kubenenc end to end on a private FerretDB, beside raw pymongo
operations on the same server, one run.

    python bench/mongodb_bench.py [--tasks 10000] [--latency 200] [--repeat 3]

Starts FerretDB (built by plugins/mongodb/ferretdb/build.sh; SQLite files in a temp folder)
on a free loopback port and prints one table: end-to-end throughput of no-op tasks with one
worker process, enqueue rate with parallelize, call-to-result latency (p50/p99), and, as the
ceiling, what the server does for single pymongo calls in the same run (insert_one and
replace_one by ``_id`` per second). Medians of --repeat runs. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pymongo  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import measure, medians, parse_args  # noqa: E402
from tests.servers.mongodb import FerretServer, ferretdb_binary, start_ferretdb  # noqa: E402


def raw_benchmark(server: FerretServer, n: int) -> dict[str, float]:
    """Single-document calls per second on a fresh collection of ``n`` documents."""
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.url("raw"))
    coll = client["raw"][f"c{uuid.uuid4().hex[:8]}"]
    out: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(n):
        coll.insert_one({"_id": f"d{i}", "status": "PENDING", "pad": "x" * 300})
    out["insert"] = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        coll.replace_one({"_id": f"d{i}"}, {"status": "RUNNING", "pad": "y" * 300})
    out["replace"] = n / (time.perf_counter() - start)
    coll.drop()
    client.close()
    return out


def one_run(server: FerretServer, tasks: int, latency_calls: int, mode: str,
            concurrency: int) -> dict[str, float]:  # fmt: skip
    url = server.url(f"bench{uuid.uuid4().hex[:8]}")
    out = measure(url, tasks, latency_calls, mode, concurrency, timeout=1800)
    out.update(raw_benchmark(server, 1000))
    return out


def main() -> None:
    args = parse_args(__doc__, latency=200, concurrency=64)
    binary = ferretdb_binary()
    if binary is None:
        sys.exit("needs FerretDB: run plugins/mongodb/ferretdb/build.sh (needs Go)")
    with tempfile.TemporaryDirectory() as tmp:
        server = start_ferretdb(binary, Path(tmp) / "data", Path(tmp) / "ferretdb.log")
        try:
            med = medians(
                lambda: one_run(server, args.tasks, args.latency, args.mode, args.concurrency),
                args.repeat,
            )
        finally:
            server.stop()
    title = (
        f"kubenenc on FerretDB 1.24 (SQLite) — medians of {args.repeat} runs, "
        f"{args.tasks:,} no-op tasks, one worker process ({args.mode}, {args.concurrency} slots)"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("kubenenc", justify="right")
    table.add_column("target", justify="right")
    table.add_column("raw pymongo, same server, same run", justify="right")
    table.add_row("end-to-end throughput (tasks/s)", f"{med['throughput']:,.0f}", ">= 1,000",
                  f"insert_one {med['insert']:,.0f}/s")  # fmt: skip
    table.add_row("enqueue with parallelize (calls/s)", f"{med['enqueue']:,.0f}", "",
                  f"replace_one by _id {med['replace']:,.0f}/s")  # fmt: skip
    table.add_row("call-to-result latency p50 (ms)", f"{med['p50']:.2f}", "", "")
    table.add_row("call-to-result latency p99 (ms)", f"{med['p99']:.2f}", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()
