"""The kill -9 scenario, shared by ``tests/chaos`` (small counts) and ``bench/chaos.py``.

Real ``kubenenc worker`` processes (process mode) serve ``tests.chaos.chaosapp`` on a shared
backend while calls arrive in waves; every ``kill_every`` seconds one worker, chosen at
random among those running a call, is killed with SIGKILL and a new one started.
Afterwards every invocation is checked: final exactly once (SUCCESS with the right result,
or FAILED with WorkerLost, the documented failure of a call lost too often), no two bodies
of one call overlapping, no two bodies of one running-limit-1 key overlapping. Every tenth
plain call runs longer than the heartbeat timeout. Every loop is bounded in count and time.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from kubenenc import Status

from tests.chaos import chaosapp

ROOT = Path(__file__).resolve().parents[2]
WORKER_LOST = "kubenenc.errors.WorkerLost"


@dataclass
class Report:
    """What one run found. ``lost``, ``overlaps``, ``limit_violations``, ``stuck`` and
    ``wrong`` must be 0."""

    calls: int = 0
    faults: int = 0
    reruns: int = 0
    lost: int = 0
    stuck: int = 0
    wrong: int = 0
    failed_worker_lost: int = 0
    overlaps: list[str] = field(default_factory=list)
    limit_violations: list[str] = field(default_factory=list)
    longest_recovery: float = 0.0
    """Seconds from a kill to the hand-back of the last call the killed worker held."""
    seconds: float = 0.0


def _spawn(url: str, log_dir: Path, n: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "KUBENENC_BACKEND": url, "CHAOS_LOG": str(log_dir),
        "KUBENENC_WORKER__HEARTBEAT_INTERVAL": "0.3", "KUBENENC_WORKER__HEARTBEAT_TIMEOUT": "2",
        "KUBENENC_WORKER__MAX_LOST": "20", "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    with (log_dir / f"worker-{n}.out").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker", "worker", "--app",
             "tests.chaos.chaosapp:app", "--mode", "process", "--concurrency", "2"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def run(
    url: str,
    log_dir: Path,
    *,
    calls: int = 120,
    workers: int = 3,
    kill_every: float = 1.5,
    max_kills: int = 5,
    waves: int = 8,
    wave_gap: float = 0.5,
    body_seconds: float = 0.2,
    deadline: float = 120.0,
    seed: int = 0,
) -> Report:
    """Run the scenario against ``url`` (an empty store); ``log_dir`` collects the body logs."""
    rng = random.Random(seed)
    log_dir.mkdir(parents=True, exist_ok=True)
    app = chaosapp.app
    app.configure(url)
    started = time.monotonic()
    give_up = started + deadline
    procs = [_spawn(url, log_dir, n) for n in range(workers)]
    spawned = workers
    kills: dict[int, float] = {}  # worker pid -> when it was killed
    invs: list[tuple[str, int, object]] = []
    per_wave = max(1, calls // waves)
    next_kill = time.monotonic() + kill_every
    next_wave = time.monotonic()
    try:
        i = 0
        while time.monotonic() < give_up:
            if i < calls and time.monotonic() >= next_wave:
                next_wave += wave_gap
                for _ in range(min(per_wave, calls - i)):
                    if i % 3 == 2:
                        invs.append(("fan", i, chaosapp.fan(i)))
                    else:
                        # Some bodies outlast the heartbeat timeout: a killed worker's
                        # child must not run on beside the call's rerun.
                        seconds = 3.0 if i % 10 == 0 else body_seconds
                        invs.append(("body", i, chaosapp.body(i, f"k{i % 4}", seconds)))
                    i += 1
            elif i >= calls and all(inv.status.is_final for _, _, inv in invs):  # type: ignore[attr-defined]
                break
            if time.monotonic() >= next_kill and len(kills) < max_kills:
                victim = procs.pop(_busy_victim(procs, rng))
                kills[victim.pid] = time.time()
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)
                procs.append(_spawn(url, log_dir, spawned))
                spawned += 1
                next_kill = time.monotonic() + kill_every
            time.sleep(0.2)
        report = check(invs, log_dir, kills)
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
        app.close()
    report.faults = len(kills)
    report.seconds = time.monotonic() - started
    return report


def _busy_victim(procs: list[subprocess.Popen[bytes]], rng: random.Random) -> int:
    """Index of a random worker among those running a call now (any, when none is): a kill
    of an idle worker tests little."""
    holders = set()
    for rec in chaosapp.app.backend.query(status=Status.RUNNING, limit=1000):
        if rec.worker:
            holders.add(int(rec.worker.split(":")[1]))
    busy = [n for n, proc in enumerate(procs) if proc.pid in holders]
    return rng.choice(busy) if busy else rng.randrange(len(procs))


def check(invs: list[tuple[str, int, object]], log_dir: Path, kills: dict[int, float]) -> Report:
    """The invariants, over every invocation and every body that ran."""
    report = Report(calls=len(invs))
    _check_ends(invs, kills, report)
    bodies = _bodies(log_dir, kills)
    ids = {inv.id for _, _, inv in invs}  # type: ignore[attr-defined]
    _check_overlaps(bodies, ids, report)
    return report


def _check_ends(
    invs: list[tuple[str, int, object]], kills: dict[int, float], report: Report
) -> None:
    for task, i, inv in invs:
        rec = inv.record()  # type: ignore[attr-defined]
        for step in rec.history:  # "worker host:pid:tag lost": handed back by recovery
            reason = step.reason or ""
            if reason.startswith("worker ") and reason.endswith(" lost"):
                pid = int(reason.split()[1].split(":")[1])
                if pid in kills:
                    report.longest_recovery = max(report.longest_recovery, step.at - kills[pid])
        if not rec.is_final:
            report.stuck += 1
        elif rec.status is Status.SUCCESS:
            value = inv.result()  # type: ignore[attr-defined]
            report.wrong += value != chaosapp.expected(task, i)
        elif rec.status is Status.FAILED and rec.error and rec.error.type == WORKER_LOST:
            report.failed_worker_lost += 1
        else:
            report.lost += 1  # ended in a way no one asked for


def _bodies(log_dir: Path, kills: dict[int, float]) -> dict[str, list[tuple[float, float, str]]]:
    """(start, end, key) of every body, by invocation; a body without an end ran until its
    worker was killed (its child process dies with it)."""
    starts: dict[tuple[str, int], tuple[float, str, int]] = {}
    bodies: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for path in log_dir.glob("*.log"):
        for line in path.read_text().splitlines():
            kind, id, pid, ppid, key, at = line.split()
            if kind == "S":
                starts[(id, int(pid))] = (float(at), key, int(ppid))
            else:
                start, key, _ = starts.pop((id, int(pid)))
                bodies[id].append((start, float(at), key))
    for (id, _pid), (start, key, ppid) in starts.items():
        bodies[id].append((start, kills.get(ppid, float("inf")), key))  # died with its worker
    return bodies


def _check_overlaps(
    bodies: dict[str, list[tuple[float, float, str]]], ids: set[str], report: Report
) -> None:
    for id, runs in bodies.items():
        runs.sort()
        if len(runs) > 1 and id in ids:
            report.reruns += 1
        for (_, end, _), (start, _, _) in itertools.pairwise(runs):
            if start < end:
                report.overlaps.append(f"{id}: {runs}")
    by_key: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for id, runs in bodies.items():
        for start, end, key in runs:
            if key != "-":
                by_key[key].append((start, end, id))
    for key, runs in by_key.items():
        runs.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(runs):
            if start < end and a != b:
                report.limit_violations.append(f"{key}: {a} and {b}")
