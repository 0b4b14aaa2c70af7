"""MongoDB-protocol benchmark: kubenenc end to end on a private FerretDB, beside raw pymongo
operations on the same server, one run.

    python bench/mongodb_bench.py [--tasks 10000] [--latency 200] [--repeat 3]

Starts FerretDB (built by plugins/mongodb/ferretdb/build.sh; SQLite files in a temp folder)
on a free loopback port and prints one table: end-to-end throughput of no-op tasks with one
worker process, enqueue rate with parallelize, call-to-result latency (p50/p99), and, as the
ceiling, what the server does for plain pymongo calls in the same run (insert_many of 64
record-shaped documents, insert_one, ping, find_one and replace_one by ``_id``), and the load
average around the run (the machine is shared), and the CPU time per task of FerretDB, the
worker process and this client (what does not depend on the load), over the whole run and
while the worker drains the queue (what bounds the throughput). Medians of --repeat
runs. Not a test: nothing is asserted.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pymongo  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import measure, medians, parse_args  # noqa: E402
from tests.servers.mongodb import FerretServer, ferretdb_binary, start_ferretdb  # noqa: E402


def _record_like(i: int) -> dict[str, object]:
    """A document shaped like the backend's (a few indexed fields and the record as JSON)."""
    record = {"id": f"d{i}", "app": "bench", "task": "bench.benchtasks:noop", "args": "[1]",
              "status": "SUCCESS", "history": [["PENDING", 1.0, None, None]] * 4,
              "pad": "x" * 400}  # fmt: skip
    return {"_id": f"d{i}", "app": "bench", "task": "bench.benchtasks:noop", "pool": "default",
            "status": "SUCCESS", "seq": i, "j": json.dumps(record)}  # fmt: skip


def raw_benchmark(server: FerretServer, n: int) -> dict[str, float]:
    """What the server does for plain pymongo calls, one client, on a fresh collection of
    ``n`` record-shaped documents: the ceiling beside kubenenc's numbers."""
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.url("raw"))
    db = client["raw"]
    coll = db[f"c{uuid.uuid4().hex[:8]}"]
    out: dict[str, float] = {}

    def rate(count: int, fn: Callable[[int], object]) -> float:
        start = time.perf_counter()
        for i in range(count):
            fn(i)
        return count / (time.perf_counter() - start)

    out["ping"] = rate(n, lambda i: db.command("ping"))
    out["insert"] = rate(n, lambda i: coll.insert_one(_record_like(i)))
    batch = 64
    many = db[f"m{uuid.uuid4().hex[:8]}"]
    calls = max(1, n // batch)
    docs = [[_record_like(c * batch + i) for i in range(batch)] for c in range(calls)]
    out["insert_many"] = batch * rate(calls, lambda c: many.insert_many(docs[c]))
    out["find"] = rate(n, lambda i: coll.find_one({"_id": f"d{i}"}))
    out["replace"] = rate(n // 4, lambda i: coll.replace_one({"_id": f"d{i}"}, _record_like(i)))
    coll.drop()
    many.drop()
    client.close()
    return out


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(server: FerretServer, tasks: int, latency_calls: int, mode: str,
            concurrency: int) -> dict[str, float]:  # fmt: skip
    url = server.url(f"bench{uuid.uuid4().hex[:8]}")
    ferret, worker, client = _cpu_of(server.proc.pid), _children_cpu(), time.process_time()
    out = measure(url, tasks, latency_calls, mode, concurrency, timeout=1800,
                  server_pid=server.proc.pid)  # fmt: skip
    # CPU per task over the whole run (enqueue, drain, latency calls): load-independent.
    calls = tasks + latency_calls
    out["cpu_ferret"] = (_cpu_of(server.proc.pid) - ferret) / calls * 1000
    out["cpu_worker"] = (_children_cpu() - worker) / calls * 1000  # the worker was waited for
    out["cpu_client"] = (time.process_time() - client) / calls * 1000
    out.update(raw_benchmark(server, 1000))
    return out


def main() -> None:
    args = parse_args(__doc__, latency=200, concurrency=64)
    binary = ferretdb_binary()
    if binary is None:
        sys.exit("needs FerretDB: run plugins/mongodb/ferretdb/build.sh (needs Go)")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_ferretdb(binary, Path(tmp) / "data", Path(tmp) / "ferretdb.log")
        try:
            med = medians(
                lambda: one_run(server, args.tasks, args.latency, args.mode, args.concurrency),
                args.repeat,
            )
        finally:
            server.stop()
    load_after = os.getloadavg()[0]
    title = (
        f"kubenenc on FerretDB 1.24 (SQLite) — medians of {args.repeat} runs, "
        f"{args.tasks:,} no-op tasks, one worker process ({args.mode}, {args.concurrency} slots)"
    )
    table = Table(title=title, caption=(
        f"load average {load_before:.2f} before, {load_after:.2f} after ({os.cpu_count()} cores)"
    ))  # fmt: skip
    table.add_column("measure")
    table.add_column("kubenenc", justify="right")
    table.add_column("target", justify="right")
    table.add_column("raw pymongo, same server, same run", justify="right")
    table.add_row("end-to-end throughput (tasks/s)", f"{med['throughput']:,.0f}", ">= 1,000",
                  f"insert_many of 64: {med['insert_many']:,.0f} docs/s")  # fmt: skip
    table.add_row("enqueue with parallelize (calls/s)", f"{med['enqueue']:,.0f}", "",
                  f"insert_one {med['insert']:,.0f}/s")  # fmt: skip
    table.add_row("call-to-result latency p50 (ms)", f"{med['p50']:.2f}", "",
                  f"ping {1000 / med['ping']:.2f} ms, "
                  f"find_one by _id {1000 / med['find']:.2f} ms")  # fmt: skip
    table.add_row("call-to-result latency p99 (ms)", f"{med['p99']:.2f}", "",
                  f"replace_one by _id {med['replace']:,.0f}/s")  # fmt: skip
    table.add_row("CPU per task, whole run (ms): FerretDB / worker / client",
                  f"{med['cpu_ferret']:.2f} / {med['cpu_worker']:.2f} / {med['cpu_client']:.2f}",
                  "", "")  # fmt: skip
    table.add_row("CPU per task while draining (ms): FerretDB / worker / client",
                  f"{med['server_us'] / 1000:.2f} / {med['worker_us'] / 1000:.2f} / "
                  f"{med['client_us'] / 1000:.2f}", "", "")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
