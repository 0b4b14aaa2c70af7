"""Pausing benchmark: process mode beside thread mode, one slot, SQLite, in one run.

    python bench/pausing_bench.py [--chain 25] [--fib 10] [--repeat 3]

A task that waits on another pauses: its slot goes to the next execution. In thread mode that
costs a thread; in process mode the paused execution keeps its child process and the freed
slot needs another child. This prints, per mode, the time of ``chain(25)`` (25 nested waits)
and ``fib(10)`` (177 calls, 88 of them waiting twice) on a worker with ``--concurrency 1``:
"first" on a worker that just started (its children still to be made), "again" the same call
on the same worker right after, and the process/thread ratio of each. It also prints the
resident memory (RSS, and PSS where the kernel gives it) of the worker's children at the end,
per child: what keeping warm children costs. Medians of --repeat runs, the modes taking turns.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import start_worker  # noqa: E402


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB; PSS 0 where ``smaps_rollup`` is not readable."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def one_run(tmp: Path, mode: str, depth: int, fib_n: int) -> dict[str, float]:
    from bench import benchtasks

    url = f"sqlite:///{tmp / f'{mode}.db'}"
    benchtasks.app.configure(url)
    worker = start_worker(url, mode, 1)
    out: dict[str, float] = {}
    try:
        while not benchtasks.app.backend.workers() and worker.poll() is None:
            time.sleep(0.005)
        for label, call in (("chain", lambda: benchtasks.chain(depth)),
                            ("fib", lambda: benchtasks.fib(fib_n))):  # fmt: skip
            for when in ("first", "again"):
                t0 = time.perf_counter()
                call().result(timeout=600)
                out[f"{label}_{when}"] = time.perf_counter() - t0
        if mode == "process":
            # Execution children are the forkserver's children (it forks them).
            servers = [p for p in _children(worker.pid) if "forkserver" in _cmdline(p)]
            kids = [k for server in servers for k in _children(server)]
            mem = [_memory_kib(p) for p in kids]
            out["children"] = len(mem)
            out["rss_mib"] = statistics.mean(m[0] for m in mem) / 1024 if mem else 0.0
            out["pss_mib"] = statistics.mean(m[1] for m in mem) / 1024 if mem else 0.0
    finally:
        worker.terminate()
        worker.wait(60)
        benchtasks.app.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", type=int, default=25)
    parser.add_argument("--fib", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"thread": [], "process": []}
    for r in range(args.repeat):
        for mode, done in runs.items():  # taking turns: both see the same window
            with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
                done.append(one_run(Path(tmp), mode, args.chain, args.fib))
            shown = ", ".join(f"{k}={v:,.3f}" for k, v in done[-1].items())
            print(f"{mode} run {r + 1}/{args.repeat}: {shown}")
    figures = {
        mode: {k: statistics.median(one[k] for one in done) for k in done[0]}
        for mode, done in runs.items()
    }
    thread, process = figures["thread"], figures["process"]
    table = Table(title=f"pausing, one slot, SQLite (medians of {args.repeat})")
    for col in ("call", "thread mode (s)", "process mode (s)", "process / thread"):
        table.add_column(col, justify="left" if col == "call" else "right")
    for label, name in (("chain", f"chain({args.chain})"), ("fib", f"fib({args.fib})")):
        for when in ("first", "again"):
            key = f"{label}_{when}"
            table.add_row(f"{name}, {when}", f"{thread[key]:.3f}", f"{process[key]:.3f}",
                          f"{process[key] / thread[key]:.1f}x")  # fmt: skip
    Console().print(table)
    rss, pss = process["rss_mib"], process["pss_mib"]
    print(f"process mode: {process['children']:.0f} children at the end, "
          f"{rss:.1f} MiB RSS / {pss:.1f} MiB PSS each (median)")  # fmt: skip


if __name__ == "__main__":
    main()
