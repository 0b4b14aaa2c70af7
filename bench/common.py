"""What every backend benchmark measures the same way: a worker process, the enqueue rate,
end-to-end throughput and call-to-result latency of no-op tasks (``bench.benchtasks``)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kubenenc.ids import TaskId, new_invocation_id
from kubenenc.records import NewInvocation

if TYPE_CHECKING:
    from tests.servers.redis import RedisServer

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]


def start_worker(url: str, mode: str, concurrency: int) -> subprocess.Popen[bytes]:
    """One ``kubenenc worker`` process serving ``bench.benchtasks:app`` on ``url``."""
    env = {
        **os.environ,
        "KUBENENC_BACKEND": url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "kubenenc_worker", "worker", "--app", "bench.benchtasks:app",
         "--mode", mode, "--concurrency", str(concurrency)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@contextmanager
def running_workers(
    url: str, count: int, mode: str = "thread", concurrency: int = 4
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` worker processes serving ``bench.benchtasks:app`` on ``url`` (the app
    pointed there too), all heartbeating (or 60 s passed) before the body runs, which gets
    the processes; stopped and the app closed after it."""
    from bench import benchtasks

    benchtasks.app.configure(url)
    procs = [start_worker(url, mode, concurrency) for _ in range(count)]
    try:
        deadline = time.time() + 60
        while len(benchtasks.app.backend.workers()) < count and time.time() < deadline:
            time.sleep(0.1)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        benchtasks.app.close()


def on_backends(which: str, tmp: str, run: Callable[[str], T]) -> list[tuple[str, T]]:
    """``run(url)`` on a SQLite file in ``tmp`` and/or a private Redis server (``which``:
    ``sqlite``, ``redis`` or ``both``), as ``(backend name, result)`` rows."""
    rows: list[tuple[str, T]] = []
    if which in ("sqlite", "both"):
        rows.append(("SQLite", run(f"sqlite:///{tmp}/bench.db")))
    if which in ("redis", "both"):
        with private_redis(Path(tmp) / "redis") as server:
            rows.append(("Redis", run(server.url)))
    return rows


@contextmanager
def private_redis(workdir: Path | None = None) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port (its files in ``workdir``, else in a
    temporary folder), stopped after the body; exits saying what to install without one."""
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server: apt-get install -y redis-server")
    from tests.servers.redis import RedisServer

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(workdir or Path(tmp)).start()
        try:
            yield server
        finally:
            server.stop()


def redis_rounds(
    repeat: int, one_round: Callable[[RedisServer], T], show: Callable[[T], str]
) -> list[T]:
    """``one_round(server)`` ``repeat`` times on one :func:`private_redis`, printing each
    round's ``show`` with the load average before it; the rounds' results."""
    rounds: list[T] = []
    with private_redis() as server:
        for r in range(repeat):
            load = os.getloadavg()[0]
            rounds.append(one_round(server))
            print(f"round {r + 1}/{repeat} (load {load:.1f}): {show(rounds[-1])}")
    return rounds


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    url: str,
    tasks: int,
    latency_calls: int,
    mode: str,
    concurrency: int,
    timeout: float = 600,
    server_pid: int | None = None,
) -> dict[str, float]:
    """``enqueue`` (calls/s, no worker running), ``throughput`` (tasks/s draining them with one
    worker process, timed from its first heartbeat, which it sends just before its first
    claim), ``startup`` (s, from spawning the process to that heartbeat: interpreter, imports,
    connecting), ``p50``/``p99`` (ms, one call at a time against the warm worker).

    CPU time per task, in µs, read from the processes' counters, which a loaded machine
    stretches less than wall time: ``client_us_enqueue`` / ``server_us_enqueue`` while
    enqueuing, ``worker_us`` / ``server_us`` / ``client_us`` while draining (the server's with
    ``server_pid``)."""
    from bench import benchtasks

    benchtasks.app.configure(url)
    backend = benchtasks.app.backend
    out: dict[str, float] = {}
    srv = (lambda: cpu_seconds(server_pid)) if server_pid else (lambda: 0.0)
    per_task = 1e6 / tasks
    s0, c0 = srv(), time.process_time()
    start = time.perf_counter()
    group = benchtasks.noop.parallelize(range(tasks))
    out["enqueue"] = tasks / (time.perf_counter() - start)
    out["client_us_enqueue"] = (time.process_time() - c0) * per_task
    out["server_us_enqueue"] = (srv() - s0) * per_task
    spawned = time.perf_counter()
    worker = start_worker(url, mode, concurrency)
    try:
        while not backend.workers() and worker.poll() is None:
            time.sleep(0.001)
        start = time.perf_counter()
        out["startup"] = start - spawned
        s0, c0, w0 = srv(), time.process_time(), cpu_seconds(worker.pid)
        group.results(timeout=timeout)
        out["throughput"] = tasks / (time.perf_counter() - start)
        out["worker_us"] = (cpu_seconds(worker.pid) - w0) * per_task
        out["server_us"] = (srv() - s0) * per_task
        out["client_us"] = (time.process_time() - c0) * per_task
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


def parse_args(doc: str | None, latency: int, concurrency: int) -> argparse.Namespace:
    """The options every benchmark takes, with its own defaults."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--latency", type=int, default=latency)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", default="thread", choices=["thread", "process", "async"])
    parser.add_argument("--concurrency", type=int, default=concurrency)
    return parser.parse_args()


def medians(run: Callable[[], dict[str, float]], repeat: int) -> dict[str, float]:
    """Call ``run`` ``repeat`` times, printing each run's figures; the median of each figure."""
    runs = []
    for r in range(repeat):
        runs.append(run())
        shown = ", ".join(f"{k}={v:,.1f}" for k, v in runs[-1].items())
        print(f"run {r + 1}/{repeat}: {shown}")
    return {k: statistics.median(one[k] for one in runs) for k in runs[0]}


def noop_calls(n: int) -> list[NewInvocation]:
    """``n`` registrations of a no-op call with a 60 s timeout on pool ``default``, for the
    benchmarks that drive a backend's steps directly (no App, no worker)."""
    out = []
    for _ in range(n):
        id = new_invocation_id()
        out.append(
            NewInvocation(
                id=id, app="bench", task=TaskId("bench.noop"), args="{}",
                call_key=f"bench.noop#{id}", display="noop()", pool="default", timeout=60.0,
            )
        )  # fmt: skip
    return out
