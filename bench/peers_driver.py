"""One system's run for ``bench/peers.py``: the same no-op task, the same three patterns,
figures printed as one JSON object on stdout.

    python bench/peers_driver.py SYSTEM URL SERVER_PID TASKS LATENCY_CALLS

SYSTEM is ``kubenenc`` (run with the project's interpreter; from an older tree with its
packages on PYTHONPATH for ``peers.py --before``) or ``dramatiq`` / ``celery``
(run with the bench-only environment's, which has them). Only the standard library, redis-py
and the system itself are imported, so the one file serves every interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMEOUT = 600.0


def cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every process below it (Linux /proc)."""
    tree = {pid}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    grew = True
    while grew:
        grew = False
        for p, fields in stats.items():
            if p not in tree and int(fields[1]) in tree:
                tree.add(p)
                grew = True
    tick = os.sysconf("SC_CLK_TCK")
    return sum((int(stats[p][11]) + int(stats[p][12])) / tick for p in tree if p in stats)


class System:
    """What the patterns need of a system: start a worker, call, read a result, batch."""

    def start_worker(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def call(self, i: int) -> Any:
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        raise NotImplementedError

    def batch(self, n: int) -> list[Any]:
        raise NotImplementedError


class Kubenenc(System):
    """One ``kubenenc worker`` process, thread mode, 16 threads."""

    def __init__(self, url: str) -> None:
        sys.path.insert(0, str(ROOT))
        from bench import benchtasks

        benchtasks.app.configure(url)
        self.url, self.noop = url, benchtasks.noop

    def start_worker(self) -> subprocess.Popen[bytes]:
        # PYTHONPATH kept, so an older tree's run (peers.py --before) runs its own worker.
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "KUBENENC_BACKEND": self.url, "PYTHONPATH": path}
        return subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker", "worker", "--app", "bench.benchtasks:app",
             "--mode", "thread", "--concurrency", "16"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def call(self, i: int) -> Any:
        return self.noop(i)

    def result(self, handle: Any) -> Any:
        return handle.result(timeout=TIMEOUT)

    def batch(self, n: int) -> list[Any]:
        return list(self.noop.parallelize(range(n)).results(timeout=TIMEOUT))


class Dramatiq(System):
    """``dramatiq --processes 1 --threads 8``, results in Redis."""

    def __init__(self, url: str) -> None:
        os.environ["PEER_URL"] = url
        sys.path.insert(0, str(HERE))
        import dramatiq
        from peers_apps import dramatiq_app

        self.dramatiq, self.noop = dramatiq, dramatiq_app.noop

    def start_worker(self) -> subprocess.Popen[bytes]:
        exe = str(Path(sys.executable).with_name("dramatiq"))
        return subprocess.Popen(
            [exe, "peers_apps.dramatiq_app", "--processes", "1", "--threads", "8"],
            cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def call(self, i: int) -> Any:
        return self.noop.send(i)

    def result(self, handle: Any) -> Any:
        return handle.get_result(block=True, timeout=int(TIMEOUT * 1000))

    def batch(self, n: int) -> list[Any]:
        g = self.dramatiq.group(self.noop.message(i) for i in range(n)).run()
        return list(g.get_results(block=True, timeout=int(TIMEOUT * 1000)))


class Celery(System):
    """``celery worker --pool solo``, results in Redis."""

    def __init__(self, url: str) -> None:
        os.environ["PEER_URL"] = url
        sys.path.insert(0, str(HERE))
        import celery
        from peers_apps import celery_app

        self.celery, self.noop = celery, celery_app.noop

    def start_worker(self) -> subprocess.Popen[bytes]:
        exe = str(Path(sys.executable).with_name("celery"))
        return subprocess.Popen(
            [exe, "-A", "peers_apps.celery_app", "worker", "--pool", "solo", "-l", "warning",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def call(self, i: int) -> Any:
        return self.noop.delay(i)

    def result(self, handle: Any) -> Any:
        return handle.get(timeout=TIMEOUT)

    def batch(self, n: int) -> list[Any]:
        g = self.celery.group(self.noop.s(i) for i in range(n)).apply_async()
        return list(g.get(timeout=TIMEOUT))


SYSTEMS: dict[str, Callable[[str], System]] = {
    "kubenenc": Kubenenc, "dramatiq": Dramatiq, "celery": Celery,
}  # fmt: skip


def main() -> None:
    import redis

    name, url, server_pid, tasks, lat = sys.argv[1:6]
    n, m, spid = int(tasks), int(lat), int(server_pid)
    system = SYSTEMS[name](url)
    r = redis.Redis.from_url(url)

    def commands() -> int:
        return sum(int(v["calls"]) for v in r.info("commandstats").values())

    out: dict[str, float] = {}
    worker = system.start_worker()
    try:
        system.result(system.call(-1))  # the worker is up and warm
        samples = []
        for i in range(m):
            t0 = time.perf_counter()
            system.result(system.call(i))
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        out["p50"] = statistics.median(samples)
        out["p99"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]

        # One by one: each call submitted alone, then each result read in order.
        k0, s0, w0, c0 = commands(), cpu(spid), cpu(worker.pid), time.process_time()
        t0 = time.perf_counter()
        handles = [system.call(i) for i in range(n)]
        t1 = time.perf_counter()
        k1, c1 = commands(), time.process_time()
        for h in handles:
            system.result(h)
        t2 = time.perf_counter()
        k2, s2, w2, c2 = commands(), cpu(spid), cpu(worker.pid), time.process_time()
        out["enqueue"] = n / (t1 - t0)
        out["enqueue_caller_us"] = (c1 - c0) / n * 1e6
        out["one_by_one"] = n / (t2 - t0)
        out["caller_us"] = (c2 - c0) / n * 1e6
        out["worker_us"] = (w2 - w0) / n * 1e6
        out["server_us"] = (s2 - s0) / n * 1e6
        out["cmds_enqueue"] = (k1 - k0 - 1) / n
        out["cmds_task"] = (k2 - k0 - 2) / n

        t0 = time.perf_counter()
        system.batch(n)
        out["batched"] = n / (time.perf_counter() - t0)
    finally:
        worker.terminate()
        worker.wait(60)

    # Drain: the calls queued with no worker, then one worker started, results in order
    # (timed from the first result, so the worker's start-up is left out).
    handles = [system.call(i) for i in range(n)]
    worker = system.start_worker()
    try:
        system.result(handles[0])
        t0 = time.perf_counter()
        for h in handles[1:]:
            system.result(h)
        out["drain"] = (n - 1) / (time.perf_counter() - t0)
    finally:
        worker.terminate()
        worker.wait(60)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
