"""``kubenenc demo``: the demo shop on the embedded SQLite backend, with real worker processes.

It starts its own workers (``kubenenc worker`` subprocesses), submits the workflow, shows a
progress bar of finished invocations, then a summary. Everything runs through the same
backend, worker and CLI a user would run.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubenenc.app import App
from kubenenc.errors import CycleDetectedError
from kubenenc.status import Status
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ORDERS: list[tuple[str, list[tuple[str, int]]]] = [
    ("ada", [("book", 2), ("pen", 5)]),
    ("bob", [("lamp", 1), ("mug", 2), ("pen", 1)]),
    ("ada", [("chair", 1)]),
    ("cy", [("mug", 4), ("book", 1)]),
    ("bob", [("pen", 10)]),
    ("ada", [("lamp", 2), ("book", 1)]),
    ("cy", [("chair", 2), ("mug", 1)]),
    ("dee", [("book", 3)]),
    ("ada", [("mug", 1), ("pen", 2), ("book", 1)]),
    ("dee", [("lamp", 1)]),
    ("bob", [("chair", 1), ("pen", 3)]),
    ("cy", [("book", 1)]),
]


def _start_workers(n: int, url: str, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "KUBENENC_DEMO_BACKEND": url, "KUBENENC_BACKEND": url}
    procs = []
    for i in range(n):
        log = (log_dir / f"worker-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kubenenc_worker",
                    "worker",
                    "--app",
                    "kubenenc_worker.demo_app:app",
                    "--mode",
                    "thread",
                    "--concurrency",
                    "2",
                    "--backend",
                    url,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def _has_web_libraries() -> bool:
    """Whether the dashboard's extra is installed (looked up, not imported)."""
    return all(importlib.util.find_spec(m) is not None for m in ("starlette", "jinja2", "uvicorn"))


def _overlaps(results: list[dict[str, object]]) -> int:
    by_customer: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        charged = r["charged"]
        assert isinstance(charged, dict)
        by_customer.setdefault(str(r["customer"]), []).append(
            (float(charged["started"]), float(charged["ended"]))
        )
    overlaps = 0
    for spans in by_customer.values():
        spans.sort()
        overlaps += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    return overlaps


def run_demo(backend_url: str | None = None, workers: int = 2) -> int:
    """Run the demo; 0 when every check held."""
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="kubenenc-demo-"))
    url = backend_url or f"sqlite:///{work / 'demo.db'}"
    os.environ["KUBENENC_DEMO_BACKEND"] = url
    from kubenenc_worker import demo_app

    demo_app.app.configure(url)
    app = demo_app.app
    console.print(
        f"[bold]kubenenc demo[/bold]: backend {url}, {workers} worker processes x 2 slots"
    )
    procs = _start_workers(workers, url, work)
    started = time.time()
    try:
        marker = str(work / "gateway")
        orders = [
            demo_app.process_order(i + 1, customer, lines, marker)
            for i, (customer, lines) in enumerate(ORDERS)
        ]
        loop = demo_app.recommend("lamp")
        with Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            bar = progress.add_task("orders done", total=len(orders))
            deadline = time.time() + 120
            while time.time() < deadline:
                done = sum(1 for o in orders if o.status.is_final)
                progress.update(bar, completed=done)
                if done == len(orders) and loop.status.is_final:
                    break
                time.sleep(0.1)
        results = [o.result(timeout=1) for o in orders]
        try:
            loop.result(timeout=1)
            cycle_text = "[red]not refused![/red]"
            cycle_ok = False
        except CycleDetectedError as exc:
            cycle_text = str(exc)
            cycle_ok = True
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    elapsed = time.time() - started

    return _report(console, app, results, elapsed, cycle_ok, cycle_text, url)


def _report(
    console: Console, app: App, results: list[dict[str, object]], elapsed: float,
    cycle_ok: bool, cycle_text: str, url: str,
) -> int:  # fmt: skip
    table = Table(title="invocations by task and status")
    table.add_column("task")
    for s in (Status.SUCCESS, Status.FAILED, "retried"):
        table.add_column(str(s), justify="right")
    for task_id, task in sorted(app.tasks.items()):
        recs = app.backend.query(app=app.name, task=task_id, limit=10_000)
        ok = sum(1 for r in recs if r.status is Status.SUCCESS)
        failed = sum(1 for r in recs if r.status is Status.FAILED)
        retried = sum(1 for r in recs if any(h.status is Status.RETRY for h in r.history))
        table.add_row(task.name, str(ok), str(failed), str(retried))
    console.print(table)

    overlaps = _overlaps(results)
    summary = Table(title="what the demo showed", show_header=False)
    summary.add_row("orders completed", f"{len(results)} in {elapsed:.1f} s")
    summary.add_row("revenue", str(sum(int(str(r["total"])) for r in results)))
    summary.add_row("charges overlapping for one customer", f"{overlaps} (policy: 1 at a time)")
    summary.add_row("cycle refused", "yes" if cycle_ok else "NO")
    console.print(summary)
    console.print("[bold]the refused cycle:[/bold]")
    console.print(cycle_text, highlight=False, markup=False)
    console.print(f"inspect it: kubenenc status --backend {url}", soft_wrap=True)
    if not _has_web_libraries():
        hint = 'browse it:  python -m pip install -e ".[dashboard]"   (once), then'
        console.print(hint, markup=False)  # "[dashboard]" is no style tag
    console.print(f"browse it:  kubenenc dashboard --backend {url}", soft_wrap=True)
    console.print("            and open http://127.0.0.1:8090/")
    return 0 if overlaps == 0 and cycle_ok else 1
