"""What every backend benchmark measures the same way: a worker process, the enqueue rate,
end-to-end throughput and call-to-result latency of no-op tasks (``bench.benchtasks``)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_worker(url: str, mode: str, concurrency: int) -> subprocess.Popen[bytes]:
    """One ``kubenenc worker`` process serving ``bench.benchtasks:app`` on ``url``."""
    env = {**os.environ, "KUBENENC_BACKEND": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "kubenenc_worker", "worker", "--app", "bench.benchtasks:app",
         "--mode", mode, "--concurrency", str(concurrency)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def measure(
    url: str, tasks: int, latency_calls: int, mode: str, concurrency: int, timeout: float = 600
) -> dict[str, float]:
    """``enqueue`` (calls/s, no worker running), ``throughput`` (tasks/s draining them with one
    worker process), ``p50``/``p99`` (ms, one call at a time against the warm worker)."""
    from bench import benchtasks

    benchtasks.app.configure(url)
    out: dict[str, float] = {}
    start = time.perf_counter()
    group = benchtasks.noop.parallelize(range(tasks))
    out["enqueue"] = tasks / (time.perf_counter() - start)
    worker = start_worker(url, mode, concurrency)
    try:
        start = time.perf_counter()
        group.results(timeout=timeout)
        out["throughput"] = tasks / (time.perf_counter() - start)
        samples = []
        for i in range(latency_calls):
            t0 = time.perf_counter()
            benchtasks.noop(i).result(timeout=60)
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        out["p50"] = statistics.median(samples)
        out["p99"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    finally:
        worker.terminate()
        worker.wait(60)
        benchtasks.app.close()
    return out
