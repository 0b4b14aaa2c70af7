"""What bounds each one-by-one target of issue 19, from CPU counters: for each pattern, the
CPU per task of the caller, the worker process and redis-server, their wake-ups, and the
rate each of them (and the two shared cores together) would allow alone.

    python bench/one_by_one_bounds.py [--tasks 2000] [--repeat 3]

Patterns, on one private redis-server with one ``kubenenc worker`` process (thread mode, 16
threads, as in ``bench/peers.py``): *enqueue* (``noop(i)`` one by one from one thread, the
worker running), *end to end* (the same calls, then each result read in order), *drain*
(the calls queued with no worker, the worker started, results read in order from the first
one's arrival). CPU is read from ``/proc`` (user + system, the worker's children included),
wake-ups are voluntary context switches (``/proc/PID/status``: each is a sleep on a socket
or a lock that something had to end), commands are ``INFO commandstats`` calls per task.

How the bound is read: a process that works on one core at a time (redis-server; the
caller's one thread; the worker, whose Python threads share one interpreter lock) cannot go
faster than 1e6 / its µs per task; the three together on this machine's two cores cannot go
faster than 2e6 / their sum; a lone caller thread waits for each reply, so enqueuing one by
one cannot go faster than 1e6 / (caller + server µs per call). The lowest of these is what
bounds the pattern; the rest of the wall time is waiting (round trips that leave all three
idle, and other programs on a shared machine). The *share* column is each
part's µs per task at the target rate if the target's time were split in the measured
proportions: how far each part is from what the target allows it. Medians of --repeat
rounds; ``uptime``'s load is printed beside. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import redis_rounds  # noqa: E402
from bench.peers_driver import Kubenenc, cpu  # noqa: E402

TARGETS = {"enqueue": 8000.0, "end to end": 3000.0, "drain": 8000.0}
PARTS = ("caller", "worker", "server")


def switches(pid: int) -> int:
    """Voluntary context switches of ``pid`` so far, over all its threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                total += int(line.split()[1])
    return total


class Counters:
    """A snapshot of every counter the table reads."""

    def __init__(self, r: Any, worker: int | None, server: int) -> None:
        self.t = time.perf_counter()
        self.cpu = {
            "caller": time.process_time(),
            "worker": cpu(worker) if worker else 0.0,
            "server": cpu(server),
        }
        self.wake = {
            "caller": switches(os.getpid()),
            "worker": switches(worker) if worker else 0,
            "server": switches(server),
        }
        self.commands = sum(int(v["calls"]) for v in r.info("commandstats").values())

    def per_task(self, before: Counters, n: int) -> dict[str, float]:
        out = {"rate": n / (self.t - before.t), "commands": (self.commands - before.commands) / n}
        for part in PARTS:
            out[f"{part}_us"] = (self.cpu[part] - before.cpu[part]) / n * 1e6
            out[f"{part}_wake"] = (self.wake[part] - before.wake[part]) / n
        return out


def one_round(url: str, server_pid: int, n: int) -> dict[str, dict[str, float]]:
    import redis

    system = Kubenenc(url)
    r = redis.Redis.from_url(url)
    out: dict[str, dict[str, float]] = {}
    worker = system.start_worker()
    try:
        system.result(system.call(-1))  # the worker is up and warm
        c0 = Counters(r, worker.pid, server_pid)
        handles = [system.call(i) for i in range(n)]
        c1 = Counters(r, worker.pid, server_pid)
        for h in handles:
            system.result(h)
        c2 = Counters(r, worker.pid, server_pid)
        out["enqueue"] = c1.per_task(c0, n)
        out["end to end"] = c2.per_task(c0, n)
    finally:
        worker.terminate()
        worker.wait(60)
    handles = [system.call(i) for i in range(n)]
    worker = system.start_worker()
    try:
        system.result(handles[0])
        c0 = Counters(r, worker.pid, server_pid)
        for h in handles[1:]:
            system.result(h)
        out["drain"] = Counters(r, worker.pid, server_pid).per_task(c0, n - 1)
    finally:
        worker.terminate()
        worker.wait(60)
    r.flushall()
    r.close()
    return out


def table(m: dict[str, dict[str, float]]) -> None:
    for pattern, target in TARGETS.items():
        f = m[pattern]
        total = sum(f[f"{p}_us"] for p in PARTS)
        bounds = {p: 1e6 / max(f[f"{p}_us"], 1e-9) for p in PARTS}
        bounds["two cores, all three"] = 2e6 / max(total, 1e-9)
        tightest = min(bounds, key=lambda k: bounds[k])
        met = "met" if f["rate"] >= target else "not met"
        print(
            f"\n**{pattern}**: {f['rate']:,.0f}/s against >= {target:,.0f}/s ({met}); "
            f"{f['commands']:.1f} Redis commands per task; tightest CPU bound: {tightest}\n"
        )
        print("| part | CPU µs per task | wake-ups per task | rate it allows alone, /s | "
              "share of the target, µs | over its share |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        budget = 1e6 / target  # wall µs per task at the target rate
        for p in PARTS:
            us = f[f"{p}_us"]
            # The CPU the target leaves this part: its measured proportion of the total,
            # scaled to what two cores give in the target's wall time per task (each part
            # also capped at one core's worth).
            share = min(budget, 2 * budget * us / max(total, 1e-9))
            print(f"| {p} | {us:.0f} | {f[f'{p}_wake']:.2f} | {bounds[p]:,.0f} | "
                  f"{share:.0f} | {us / max(share, 1e-9):.1f}x |")  # fmt: skip
        print(f"| all three (two cores) | {total:.0f} | | {bounds['two cores, all three']:,.0f} | "
              f"{2 * budget:.0f} | {total / (2 * budget):.1f}x |")  # fmt: skip
        if pattern == "enqueue":
            # One thread, one call at a time: each call's caller CPU and the server's work
            # for it happen one after the other (the caller waits for the reply).
            serial = f["caller_us"] + f["server_us"]
            print(f"| caller + server, one after the other | {serial:.0f} | | "
                  f"{1e6 / serial:,.0f} | {budget:.0f} | {serial / budget:.1f}x |")  # fmt: skip
        idle = 1e6 / f["rate"] - total / 2
        print(f"| wall per task, µs | {1e6 / f['rate']:.0f} | | | {budget:.0f} | "
              f"{1e6 / f['rate'] / budget:.1f}x |")  # fmt: skip
        print(f"\nWall time per task not covered by CPU spread over two cores: {idle:.0f} µs "
              "(waiting: round trips that leave the three processes waiting on each other, "
              "and other programs on the shared cores).")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds = redis_rounds(
        args.repeat,
        lambda server: one_round(server.url, server.proc.pid, args.tasks),
        lambda one: "; ".join(
            f"{k}: {v['rate']:,.0f}/s " + " ".join(f"{p}={v[p + '_us']:.0f}" for p in PARTS)
            for k, v in one.items()
        ),
    )
    m = {
        pattern: {k: statistics.median(r[pattern][k] for r in rounds) for k in rounds[0][pattern]}
        for pattern in rounds[0]
    }
    print(f"\n{args.tasks} no-op tasks per pattern, medians of {args.repeat} rounds; "
          f"load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    table(m)


if __name__ == "__main__":
    main()
