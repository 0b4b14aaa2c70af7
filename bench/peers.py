"""kubenenc beside Dramatiq and Celery: the same no-op task, one private redis-server, the
same three patterns, one table with ratios.

    python bench/peers.py [--tasks 2000] [--latency 300] [--repeat 3]

Dramatiq and Celery are installed from PyPI (``pip``) into a bench-only environment,
``~/.cache/kubenenc/bench-venv``, on the first run; the project's environment is left alone.
Each system runs ``bench/peers_driver.py`` in its own process against the same server
(flushed between runs), the systems taking turns within each repeat so that all see the same
window of a shared machine; figures are the medians of --repeat runs. Workers: kubenenc one
``kubenenc worker`` process with 16 threads, Dramatiq one process with 8 threads, Celery one
``solo`` process.

Patterns: *one by one* (each call submitted alone, then each result read in order: the
enqueue rate, the end-to-end rate, and CPU per call of the caller, the worker and
redis-server, read from their /proc counters, which a loaded machine stretches less than
wall time); *batched* (kubenenc ``parallelize`` + ``results``, Dramatiq ``group``, Celery
``group``); *drain* (the calls queued with no worker, one worker started, results read in
order, timed from the first result). Latency: one call at a time against the warm worker.
Redis commands per enqueue and per task count every command the server ran (a worker's
polling and heartbeats included). The ceiling: ``redis-benchmark`` LPUSH against the same
server. Not a test: nothing is asserted.

``--before COMMIT`` adds the project as it was at COMMIT (``git archive`` into a temporary
directory, its packages first on PYTHONPATH, run by the same driver) as one more system,
``kubenenc@COMMIT``, taking its turn in the same rounds: before and after in one window.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.redis_bench import raw_benchmark  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402

VENV = Path.home() / ".cache" / "kubenenc" / "bench-venv"
PEERS = ("dramatiq[redis]", "celery[redis]")
SYSTEMS = ("kubenenc", "dramatiq", "celery")
ROWS = (
    ("enqueue", "one by one: enqueue, calls/s", "{:,.0f}"),
    ("one_by_one", "one by one: end to end, tasks/s", "{:,.0f}"),
    ("p50", "call-to-result p50, ms", "{:.2f}"),
    ("p99", "call-to-result p99, ms", "{:.2f}"),
    ("enqueue_caller_us", "caller CPU per enqueue, µs", "{:.0f}"),
    ("caller_us", "caller CPU per task (enqueue + result), µs", "{:.0f}"),
    ("worker_us", "worker CPU per task, µs", "{:.0f}"),
    ("server_us", "redis-server CPU per task, µs", "{:.0f}"),
    ("cmds_enqueue", "Redis commands per enqueue", "{:.1f}"),
    ("cmds_task", "Redis commands per task (one by one, all)", "{:.1f}"),
    ("batched", "batched: end to end, tasks/s", "{:,.0f}"),
    ("drain", "drain: tasks/s", "{:,.0f}"),
)
LOWER_IS_BETTER = {"p50", "p99", "enqueue_caller_us", "caller_us", "worker_us", "server_us",
                   "cmds_enqueue", "cmds_task"}  # fmt: skip


def bench_python() -> Path:
    """The bench-only environment's interpreter, made and filled on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import dramatiq, celery"], check=False, capture_output=True
    )
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS], check=True)
    return python


def old_tree(commit: str, into: Path) -> Path:
    """The project at ``commit``, with this driver and its peer apps copied in."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copy(ROOT / "bench" / "peers_driver.py", into / "bench" / "peers_driver.py")
    shutil.copytree(ROOT / "bench" / "peers_apps", into / "bench" / "peers_apps",
                    dirs_exist_ok=True)  # fmt: skip
    return into


def run_one(
    system: str,
    python: str,
    server: RedisServer,
    pid: int,
    tasks: int,
    lat: int,
    tree: Path = ROOT,
) -> dict[str, float]:
    """One run of ``system`` (see ``bench/peers_driver.py``), from ``tree``."""
    url = server.url
    subprocess.run(["redis-cli", "-p", str(server.port), "FLUSHALL"], check=True,
                   capture_output=True)  # fmt: skip
    env = {**os.environ, "KUBENENC_BACKEND": url}
    if tree != ROOT:
        parts = ("sdk", "worker", "operator", "plugins/redis", "plugins/mongodb", "")
        env["PYTHONPATH"] = os.pathsep.join(str(tree / p) for p in parts)
    done = subprocess.run(
        [python, str(tree / "bench" / "peers_driver.py"), system.partition("@")[0], url,
         str(pid), str(tasks), str(lat)],
        check=False, capture_output=True, text=True, env=env, timeout=3600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{system} run failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def server_pid(port: int) -> int:
    """The pid of the redis-server listening on ``port``."""
    info = subprocess.run(["redis-cli", "-p", str(port), "INFO", "server"], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip
    return int(next(ln.split(":")[1] for ln in info.splitlines() if ln.startswith("process_id")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--before", help="a commit: the project as it was, beside")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("redis-server not found (scripts/test.sh installs it)")
    systems = args.systems.split(",")
    peer_python = str(bench_python()) if set(systems) - {"kubenenc"} else ""
    with tempfile.TemporaryDirectory() as tmp:
        trees = {s: ROOT for s in systems}
        if args.before:
            before = f"kubenenc@{args.before}"
            systems.insert(1, before)
            (Path(tmp) / "before").mkdir()
            trees[before] = old_tree(args.before, Path(tmp) / "before")
        runs: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
        (Path(tmp) / "server").mkdir()
        server = RedisServer(Path(tmp) / "server").start()
        try:
            pid = server_pid(server.port)
            ceiling = raw_benchmark(server.port, 50_000)
            for r in range(args.repeat):
                for system in systems:
                    ours = system.startswith("kubenenc")
                    python = sys.executable if ours else peer_python
                    runs[system].append(run_one(system, python, server, pid, args.tasks,
                                                args.latency, trees[system]))  # fmt: skip
                    shown = ", ".join(f"{k}={v:,.1f}" for k, v in runs[system][-1].items())
                    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                    print(f"run {r + 1}/{args.repeat} {system} (load average {load}): {shown}",
                          flush=True)  # fmt: skip
        finally:
            server.stop()
    med = {s: {k: statistics.median(x[k] for x in runs[s]) for k in runs[s][0]} for s in systems}
    peers = [s for s in systems if s != "kubenenc"]  # an older kubenenc too
    lpush, lpop = ceiling.get("lpush", 0), ceiling.get("lpop", 0)
    print(f"\n{args.tasks} no-op tasks, medians of {args.repeat}; ceiling: redis-benchmark "
          f"LPUSH {lpush:,.0f}/s, LPOP {lpop:,.0f}/s; load average at the end "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}\n")  # fmt: skip
    head = ["measure", *systems] + (
        [f"kubenenc vs {p}" for p in peers] if "kubenenc" in systems else []
    )
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for key, label, fmt in ROWS:
        cells = [fmt.format(med[s][key]) for s in systems]
        if "kubenenc" in systems:
            for p in peers:
                k, o = med["kubenenc"][key], med[p][key]
                better = (o / k) if key in LOWER_IS_BETTER else (k / o)
                cells.append(f"{better:.1f}x" if k and o else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n(ratios: how many times better kubenenc is; below 1.0x it is worse)")


if __name__ == "__main__":
    main()
