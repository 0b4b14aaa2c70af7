"""Redis retention under a steady load: do the indexes stay bounded? (issue 13, item 10)

    python bench/redis_retention.py [--rate 5000] [--seconds 60] [--retention 5] [--workers 1]

Starts a private redis-server, then for ``--seconds`` registers, claims and finishes calls
at ``--rate`` per second (in batches, through the backend's own steps, so the server does
the work a fleet at that rate makes it do) while ``--workers`` simulated workers beat and
call ``recover`` once a second each, as real ones do: ``recover`` runs the retention sweep.
Every few seconds it prints the sizes of the index of ended calls (``P:fin``) and of every
call (``P:ix``); with retention R they should level off near rate x R. At the end it times
the enforcer's overdue check both ways on the same store: the fallback that reads every
RUNNING call through ``query`` (walking the whole index) and the ``Overdue`` role.

Run it on two checkouts to compare (``PYTHONPATH=<checkout>/sdk:<checkout>/worker:
<checkout>/plugins/redis:<checkout>/operator python bench/redis_retention.py``). Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubenenc.ids import WorkerId  # noqa: E402
from kubenenc.records import Outcome, OutcomeKind, WorkerInfo  # noqa: E402
from kubenenc.status import Status  # noqa: E402
from kubenenc_redis import RedisBackend  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import noop_calls  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402

BATCH = 250


def _workers(url: str, n: int, stop: threading.Event, sweeps: list[float]) -> None:
    """``n`` simulated workers: beat and recover once a second each (recover sweeps)."""
    backend = RedisBackend.from_url(url)
    ids = [WorkerId(f"host:{k}:bench") for k in range(n)]
    try:
        while not stop.wait(1.0 / n):
            for w in ids[:1]:
                ids.append(ids.pop(0))
                now = time.time()
                backend.heartbeat(WorkerInfo(w, "default", 1, 0, 0, now, "host"))
                started = time.perf_counter()
                backend.recover(now, 30.0, 3)
                sweeps.append(time.perf_counter() - started)
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--retention", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between rows")
    args = parser.parse_args()
    table = Table(title=f"Redis retention: {args.rate:,.0f} calls/s, retention "
                        f"{args.retention:g} s, {args.workers} worker(s) recovering")  # fmt: skip
    for name in ("t (s)", "calls ended", "achieved calls/s", "P:fin", "P:ix",
                 "rate x retention", "recover p50 / max (ms)"):  # fmt: skip
        table.add_column(name, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        url = f"{server.url}?prefix=ret&retention={args.retention}"
        backend = RedisBackend.from_url(url)
        stop = threading.Event()
        sweeps: list[float] = []
        beater = threading.Thread(target=_workers, args=(url, args.workers, stop, sweeps))
        beater.start()
        fin, ix = backend._keys.fixed("K_FIN"), backend._keys.fixed("K_IX")
        w = WorkerId("host:9:driver")
        started = time.monotonic()
        next_row = started + args.every
        done = 0
        try:
            while (elapsed := time.monotonic() - started) < args.seconds:
                if done > args.rate * elapsed:  # ahead of the rate: wait
                    time.sleep(min(0.05, (done - args.rate * elapsed) / args.rate))
                    continue
                now = time.time()
                backend.register(noop_calls(BATCH), now)
                claimed = backend.claim("default", w, BATCH, now)
                backend.finish(
                    [Outcome(r.id, OutcomeKind.SUCCESS, "1") for r in claimed], w, time.time()
                )
                done += len(claimed)
                if time.monotonic() >= next_row:
                    next_row += args.every
                    t = time.monotonic() - started
                    recent = sorted(sweeps[-20:]) or [0.0]
                    table.add_row(
                        f"{t:.0f}", f"{done:,}", f"{done / t:,.0f}", f"{backend._r.zcard(fin):,}",
                        f"{backend._r.zcard(ix):,}", f"{args.rate * args.retention:,.0f}",
                        f"{recent[len(recent) // 2] * 1000:.0f} / {recent[-1] * 1000:.0f}",
                    )  # fmt: skip
        finally:
            stop.set()
            beater.join()
        Console(width=200).print(table)
        _overdue(backend)
        backend.close()
        server.stop()


def _overdue(backend: RedisBackend) -> None:
    """Time the enforcer's overdue check both ways on what the run left (a few RUNNING)."""
    from kubenenc.backends.roles import roles_of
    from kubenenc_operator.enforcer import fail_overdue

    w = WorkerId("host:9:driver")
    backend.register(noop_calls(20), time.time())
    backend.claim("default", w, 20, time.time())
    started = time.perf_counter()
    running = backend.counts().get(Status.RUNNING, 0)
    scanned = backend.query(status=Status.RUNNING, limit=running)
    scan = time.perf_counter() - started
    rows = [("read every RUNNING call through query (the fallback)", scan, len(scanned))]
    roles = roles_of(backend)
    if roles.overdue is not None:
        started = time.perf_counter()
        found = backend.overdue(time.time() + 1000, 0.0)
        rows.append(("Overdue.overdue (reads only held work)", time.perf_counter() - started,
                     len(found)))  # fmt: skip
        started = time.perf_counter()
        fail_overdue(roles, time.time(), 30.0)  # the enforcer's path
        rows.append(("fail_overdue as the enforcer runs it", time.perf_counter() - started, 0))
    table = Table(title=f"overdue check, P:ix = {backend._r.zcard(backend._keys.fixed('K_IX')):,}")
    for name in ("way", "ms", "RUNNING found"):
        table.add_column(name, justify="right")
    for name, seconds, n in rows:
        table.add_row(name, f"{seconds * 1000:.1f}", str(n))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
