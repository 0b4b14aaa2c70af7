"""MongoDB: the enforcer's overdue check, the Overdue role against the full-scan fallback.

    python bench/mongodb_overdue.py [--ended 5000] [--running 20] [--repeat 5]

On a private FerretDB (and mongo-java-server, when built) it stores ``--ended`` finished
calls and ``--running`` claimed ones with a timeout, then times, on the same store: the
fallback the enforcer uses without the role (``counts`` + ``query(status=RUNNING)``), the
``Overdue`` role on a backend whose replica is current (the operator's, after its first
check), and on a freshly opened backend (its first check loads the replica). Medians of
``--repeat``. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubenenc.ids import WorkerId  # noqa: E402
from kubenenc.records import Outcome, OutcomeKind  # noqa: E402
from kubenenc.status import Status  # noqa: E402
from kubenenc_mongodb import MongoBackend  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import noop_calls  # noqa: E402
from tests.servers.mongodb import (  # noqa: E402
    FerretServer,
    ferretdb_binary,
    fresh_database,
    mongo_java_server,
    start_ferretdb,
    start_mongo_java,
)

BATCH = 250
W = WorkerId("host:1:bench")


def _fill(backend: MongoBackend, ended: int, running: int) -> None:
    now = time.time()
    for start in range(0, ended, BATCH):
        backend.register(noop_calls(min(BATCH, ended - start)), now)
        claimed = backend.claim("default", W, BATCH, now)
        backend.finish([Outcome(r.id, OutcomeKind.SUCCESS, "1") for r in claimed], W, now)
    backend.register(noop_calls(running), now)
    backend.claim("default", W, running, now)


def _median_ms(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, result


def _fallback(backend: MongoBackend) -> list[object]:
    running = backend.counts().get(Status.RUNNING, 0)
    return list(backend.query(status=Status.RUNNING, limit=running)) if running else []


def _fresh(url: str) -> list[object]:
    backend = MongoBackend.from_url(url)
    try:
        return list(backend.overdue(time.time() + 1000, 0.0))
    finally:
        backend.close()


def _rows(server: str, url: str, args: argparse.Namespace, table: Table) -> None:
    backend = MongoBackend.from_url(url)
    try:
        _fill(backend, args.ended, args.running)
        late = time.time() + 1000
        ways: list[tuple[str, Callable[[], list[object]]]] = [
            ("counts + query(RUNNING) (the fallback)", lambda: _fallback(backend)),
            ("Overdue.overdue, replica current", lambda: list(backend.overdue(late, 0.0))),
            ("Overdue.overdue, fresh backend", lambda: _fresh(url)),
        ]
        for name, fn in ways:
            ms, found = _median_ms(fn, args.repeat)
            assert isinstance(found, list)
            table.add_row(server, name, f"{ms:.1f}", str(len(found)))
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ended", type=int, default=5000)
    parser.add_argument("--running", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table = Table(title=f"overdue check: {args.ended:,} ended, {args.running} running")
    for name in ("server", "way", "ms (median)", "RUNNING found"):
        table.add_column(name, justify="right")
    servers: list[tuple[str, FerretServer]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            binary = ferretdb_binary()
            if binary is not None:
                fdb = start_ferretdb(binary, Path(tmp) / "fdb", Path(tmp) / "fdb.log")
                servers.append(("FerretDB", fdb))
            java = mongo_java_server()
            if java is not None:
                servers.append(("mongo-java-server", start_mongo_java(java, Path(tmp) / "j.log")))
            for name, server in servers:
                with fresh_database(server) as url:
                    _rows(name, f"{url}?clock=caller", args, table)
        finally:
            for _, server in servers:
                server.stop()
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
