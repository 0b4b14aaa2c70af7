"""Rate limits: the achieved rate of one key against its limit, over several worker processes.

    python bench/rate_bench.py [--backend sqlite|redis|both] [--calls 1000] [--workers 4]

Registers ``--calls`` calls of ``bench.benchtasks.rated`` (``rate="20/s"``) with one key,
then 40 calls with keys of their own, served by ``--workers`` worker processes (thread mode,
4 slots each), and prints per backend: the limit, the achieved rate of the hot key (starts
over the time from its first to its last start, as the backend recorded them), the most
starts in any one-second window (must not exceed the limit), and how long the other keys'
calls took from registration to result (median, max) while the hot key's queue drained.
Not a test: nothing is asserted.
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

from bench.common import on_backends, running_workers  # noqa: E402


def most_in_one_window(starts: list[float], window: float = 1.0) -> int:
    starts = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while starts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def one_backend(url: str, calls: int, workers: int) -> dict[str, float]:
    from kubenenc import Status

    from bench import benchtasks

    with running_workers(url, workers):
        hot = benchtasks.rated.parallelize([("hot", i) for i in range(calls)])
        cold_waits = []
        for i in range(40):
            sent = time.time()
            benchtasks.rated(f"cold-{i}", i).result(timeout=60)
            cold_waits.append(time.time() - sent)
        hot.results(timeout=calls / 20 + 120)
        starts = [t.at for inv in hot for t in inv.record().history if t.status is Status.RUNNING]
    starts.sort()
    return {
        "rate": (len(starts) - 1) / (starts[-1] - starts[0]),
        "window": most_in_one_window(starts),
        "cold_p50": statistics.median(cold_waits) * 1000,
        "cold_max": max(cold_waits) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = on_backends(
            args.backend, tmp, lambda url: one_backend(url, args.calls, args.workers)
        )
    table = Table(
        title=f"{args.calls:,} calls of one key at rate=20/s, {args.workers} worker processes "
        "(thread mode, 4 slots); 40 calls of other keys meanwhile, one at a time"
    )
    for col in ("backend", "limit /s", "achieved /s", "most in 1 s", "other keys p50 ms",
                "max ms"):  # fmt: skip
        table.add_column(col, justify="right")
    for name, r in rows:
        table.add_row(
            name, "20", f"{r['rate']:.2f}", str(int(r["window"])), f"{r['cold_p50']:.1f}",
            f"{r['cold_max']:.1f}",
        )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
