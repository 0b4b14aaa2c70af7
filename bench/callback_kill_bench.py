"""Callbacks and status triggers under ``kill -9`` of the finishing worker: each is registered
exactly once.

    python bench/callback_kill_bench.py [--runs 50] [--backend sqlite|redis|mongodb]

Each run starts a worker process, submits ``bench.benchtasks.finishing`` (a 20 ms task whose
``on_success`` callback, ``noted``, and a status trigger watching it succeed, ``watched``,
run in another pool), and kills the worker with SIGKILL at a random
moment between 0 and 100 ms after it starts running, around the finish. Then a second worker (short
heartbeat timeout, so it recovers the call if the first died holding it) and a callback
worker finish the work. Prints, over the runs: how often the kill came before the finish
was stored (the call ran again elsewhere) or after it, and how many callbacks and status
triggers each run registered and ran (must be exactly one of each). Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

FAST = {"KUBENENC_WORKER__HEARTBEAT_INTERVAL": "0.2", "KUBENENC_WORKER__HEARTBEAT_TIMEOUT": "1"}


def worker(url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBENENC_BACKEND": url, "PYTHONPATH": str(ROOT), **FAST}
    return subprocess.Popen(
        [sys.executable, "-m", "kubenenc_worker", "worker", "--app", "bench.benchtasks:app",
         "--mode", "thread", "--concurrency", "1", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


Run = tuple[str, int, int, int, int]
"""When the kill came; callbacks registered, run; status triggers registered, run."""


def one_run(url: str, rnd: random.Random) -> Run:
    from kubenenc import Status
    from kubenenc.callbacks import callback_id

    from bench import benchtasks

    app = benchtasks.app
    app.configure(url)
    victim = worker(url)
    try:
        while not app.backend.workers():
            time.sleep(0.01)
        inv = benchtasks.finishing(0.02)
        while inv.status is not Status.RUNNING:
            time.sleep(0.001)
        time.sleep(rnd.uniform(0, 0.1))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        when = "after the finish" if inv.status is Status.SUCCESS else "before the finish"
        rescue = [worker(url), worker(url, "--pool", "callbacks")]
        try:
            inv.wait(timeout=60)
            cb = inv.callback("success")
            if cb is not None:
                cb.wait(timeout=60)
            kind = f"success:{benchtasks.watched.id}"
            trigger = app.invocation(callback_id(inv.id, kind, inv.record().attempt))
            if app.backend.get(trigger.id) is not None:
                trigger.wait(timeout=60)
            called = app.counts(task=benchtasks.noted)
            triggered = app.counts(task=benchtasks.watched)
            return (
                when, sum(called.values()), called.get(Status.SUCCESS, 0),
                sum(triggered.values()), triggered.get(Status.SUCCESS, 0),
            )  # fmt: skip
        finally:
            for proc in rescue:
                proc.terminate()
            for proc in rescue:
                proc.wait(30)
    finally:
        if victim.poll() is None:
            victim.kill()
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--backend", choices=("sqlite", "redis", "mongodb"), default="sqlite")
    args = parser.parse_args()
    rnd = random.Random(16)
    results: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        server: Any = None
        url_of: Callable[[int], str] = lambda i: f"sqlite:///{tmp}/run{i}.db"  # noqa: E731
        if args.backend == "redis":
            if shutil.which("redis-server") is None:
                sys.exit("needs redis-server: apt-get install -y redis-server")
            from tests.servers.redis import RedisServer

            server = RedisServer(Path(tmp) / "redis").start()
            url_of = lambda i: f"{server.url}?prefix=run{i}"  # noqa: E731
        elif args.backend == "mongodb":
            from tests.servers.mongodb import ferretdb_binary, start_ferretdb

            binary = ferretdb_binary()
            if binary is None:
                sys.exit("needs FerretDB: scripts/test.sh builds it")
            server = start_ferretdb(binary, Path(tmp) / "ferret", Path(tmp) / "ferret.log")
            url_of = lambda i: server.url(f"run{i}")  # noqa: E731
        try:
            for i in range(args.runs):
                results.append(one_run(url_of(i), rnd))
        finally:
            if server is not None:
                server.stop()
    table = Table(title=f"kill -9 of the finishing worker, {args.runs} runs on {args.backend}")
    columns = ("callbacks registered", "callbacks run", "triggers registered", "triggers run")
    for col in ("killed", "runs", *columns):
        table.add_column(col, justify="right")
    by_when: dict[str, list[tuple[int, ...]]] = collections.defaultdict(list)
    for when, *counts in results:
        by_when[when].append(tuple(counts))
    for when, rows in sorted(by_when.items()):
        cells = []
        for col in range(len(columns)):
            seen = collections.Counter(row[col] for row in rows)
            cells.append(", ".join(f"{n} in {c} runs" for n, c in sorted(seen.items())))
        table.add_row(when, str(len(rows)), *cells)
    Console().print(table)


if __name__ == "__main__":
    main()
