"""Redis benchmark: kubenenc end to end beside raw redis-benchmark on the same server, one run.

    python bench/redis_bench.py [--tasks 10000] [--latency 300] [--repeat 3]

Starts a private redis-server (no persistence) on a free loopback port and prints one
table: end-to-end throughput of no-op tasks with one worker process, enqueue rate with
parallelize, call-to-result latency (p50/p99), and, as the ceiling, ``redis-benchmark -q -t
lpush,lpop`` against the same server in the same run. Medians of --repeat runs. Not a test:
nothing is asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import measure, medians, parse_args  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402


def raw_benchmark(port: int, requests: int) -> dict[str, float]:
    """Requests/s of LPUSH and LPOP from redis-benchmark (50 clients, no pipelining)."""
    out = subprocess.run(
        ["redis-benchmark", "-q", "-p", str(port), "-t", "lpush,lpop", "-n", str(requests)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found: dict[str, float] = {}
    for line in out.replace("\r", "\n").splitlines():
        m = re.match(r"(LPUSH|LPOP)[^:]*:\s*([\d.]+) requests per second", line.strip())
        if m:
            found[m.group(1).lower()] = float(m.group(2))
    return found


BARE_WORKER = """
import sys, time
from kubenenc.records import Outcome, OutcomeKind
from kubenenc_redis import RedisBackend

backend = RedisBackend.from_url(sys.argv[1])
queue = sys.argv[2]
while True:
    backend.wait_for_work(queue, 1.0)
    recs = backend.claim(queue, "bare:1:w", 16, time.time())
    if recs:
        done = [Outcome(r.id, OutcomeKind.SUCCESS, "0") for r in recs]
        backend.finish(done, "bare:1:w", time.time())
"""


def bare_latency(server: RedisServer, calls: int) -> tuple[float, float]:
    """p50/p99 ms of call-to-result with a bare claim loop that blocks on ``wait_for_work``
    instead of polling: what the backend allows once the worker blocks too."""
    from bench import benchtasks

    url = f"{server.url}?prefix=bare{uuid.uuid4().hex[:8]}"
    benchtasks.app.configure(url)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    queue = benchtasks.app.queue("default")
    proc = subprocess.Popen([sys.executable, "-c", BARE_WORKER, url, queue], env=env)
    try:
        benchtasks.noop(0).result(timeout=30)
        samples = []
        for i in range(calls):
            t0 = time.perf_counter()
            benchtasks.noop(i).result(timeout=30)
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait(30)
        benchtasks.app.close()
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def one_run(server: RedisServer, tasks: int, latency_calls: int, mode: str,
            concurrency: int) -> dict[str, float]:  # fmt: skip
    url = f"{server.url}?prefix=bench{uuid.uuid4().hex[:8]}"
    pid = server.proc.pid if server.proc is not None else None
    out = measure(url, tasks, latency_calls, mode, concurrency, server_pid=pid)
    out["bare_p50"], out["bare_p99"] = bare_latency(server, latency_calls)
    raw = raw_benchmark(server.port, 100_000)
    out["lpush"] = raw.get("lpush", 0.0)
    out["lpop"] = raw.get("lpop", 0.0)
    return out


def main() -> None:
    args = parse_args(__doc__, latency=300, concurrency=16)
    if shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None:
        sys.exit("needs redis-server and redis-benchmark: apt-get install -y redis-server")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            med = medians(
                lambda: one_run(server, args.tasks, args.latency, args.mode, args.concurrency),
                args.repeat,
            )
        finally:
            server.stop()
    title = (
        f"kubenenc on Redis — medians of {args.repeat} runs, {args.tasks:,} no-op tasks, "
        f"one worker process ({args.mode}, {args.concurrency} slots)"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("kubenenc", justify="right")
    table.add_column("target", justify="right")
    table.add_column("redis-benchmark, same server, same run", justify="right")
    table.add_row("end-to-end throughput (tasks/s)", f"{med['throughput']:,.0f}", ">= 5,000",
                  f"LPUSH {med['lpush']:,.0f}/s")  # fmt: skip
    table.add_row("enqueue with parallelize (calls/s)", f"{med['enqueue']:,.0f}", ">= 20,000",
                  f"LPOP {med['lpop']:,.0f}/s")  # fmt: skip
    table.add_row("call-to-result latency p50 (ms)", f"{med['p50']:.2f}", "<= 2", "")
    table.add_row("call-to-result latency p99 (ms)", f"{med['p99']:.2f}", "<= 10", "")
    table.add_row("  worker start-up, not in the throughput (s)", f"{med['startup']:.2f}", "", "")
    table.add_row("  CPU per task while draining: worker / redis-server / caller (µs)",
                  f"{med['worker_us']:.0f} / {med['server_us']:.0f} / {med['client_us']:.0f}",
                  "", "")  # fmt: skip
    table.add_row("  CPU per call while enqueuing: caller / redis-server (µs)",
                  f"{med['client_us_enqueue']:.0f} / {med['server_us_enqueue']:.0f}", "",
                  "")  # fmt: skip
    table.add_row("  same, bare claim loop blocking on wait_for_work, p50 (ms)",
                  f"{med['bare_p50']:.2f}", "<= 2", "")  # fmt: skip
    table.add_row("  same, bare claim loop blocking on wait_for_work, p99 (ms)",
                  f"{med['bare_p99']:.2f}", "<= 10", "")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
