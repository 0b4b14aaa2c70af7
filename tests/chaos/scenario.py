"""The chaos scenarios' runner, shared by ``tests/chaos`` (small counts) and ``bench/chaos.py``.

Real ``kubenenc worker`` processes (process mode) serve ``tests.chaos.chaosapp`` on a shared
backend while calls arrive in waves; every ``fault_every`` seconds a :class:`~tests.chaos.
faults.Fault` strikes (kill -9 of a busy worker, SIGSTOP of one, a network cut between one
worker and the backend, a restart of the backend's server). Afterwards every invocation is
checked:

- final exactly once: one final transition in its history, SUCCESS with the right result, or
  FAILED with WorkerLost (the documented failure of a call lost too often); none left
  non-final, none missing (a registration the store acknowledged and then lost);
- finished by its holder: the final transition's worker is the worker of the call's last
  RUNNING transition (a zombie's late finish after the call was handed back is refused);
- no two bodies of one call overlapping, no two bodies of one running-limit-1 key
  overlapping. The one documented exception (see the README's delivery guarantee): a worker
  thought dead while it was not (frozen, cut off from the backend, or too slow to beat in
  time) has its calls handed back, and its bodies can run on beside the reruns until it
  hears it lost them. Such overlaps are counted apart (``zombie_overlaps``) when the earlier
  body's call was handed back from that body's worker ("worker ... lost") and the worker was
  not killed (a killed worker's bodies must end with it), with how long the earlier body ran
  on after the later one started (or after its worker's fault ended, if later).

Every tenth plain call runs longer than the heartbeat timeout. Every loop is bounded in
count and time.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubenenc import Status

from tests.chaos import chaosapp

if TYPE_CHECKING:
    from tests.chaos.faults import Fault

ROOT = Path(__file__).resolve().parents[2]
WORKER_LOST = "kubenenc.errors.WorkerLost"
UNAVAILABLE = "kubenenc.errors.BackendUnavailable"
HEARTBEAT_INTERVAL = 0.3
HEARTBEAT_TIMEOUT = 2.0


@dataclass
class Report:
    """What one run found. ``lost``, ``stuck``, ``wrong``, ``overlaps`` and
    ``limit_violations`` must be 0 (and empty)."""

    calls: int = 0
    faults: int = 0
    reruns: int = 0
    lost: int = 0
    stuck: int = 0
    wrong: int = 0
    failed_worker_lost: int = 0
    failed_unavailable: int = 0
    """Calls FAILED with BackendUnavailable: a body that used the backend (a fan-out
    registering its calls) while the server was down, and met it down again on each of the
    worker's reruns (a body that meets an outage is handed back and rerun)."""
    overlaps: list[str] = field(default_factory=list)
    limit_violations: list[str] = field(default_factory=list)
    zombie_overlaps: list[str] = field(default_factory=list)
    """Overlaps whose earlier body belonged to a live worker that was thought dead."""
    zombie_late_starts: int = 0
    """Zombie overlaps whose zombie body started after the other one (a task process that
    got the call before its worker froze and started it on waking): what a body's
    ``start_by`` prevents, left only when a worker's beats lagged its claims."""
    zombie_run_on: float = 0.0
    """Longest time such a body ran on beside the later one (after its worker's fault ended,
    if that was later)."""
    longest_recovery: float = 0.0
    """Seconds from a fault to the hand-back of the last call its worker held (worker
    faults), or from an outage's start to the first call finished after it (server faults)."""
    seconds: float = 0.0
    lost_calls: list[str] = field(default_factory=list)
    """Each lost or stuck call with its history, for the failure message."""

    def assert_clean(self) -> None:
        """The invariants every scenario must keep."""
        assert self.stuck == 0, self
        assert self.lost == 0, self
        assert self.wrong == 0, self
        assert self.overlaps == [], self
        assert self.limit_violations == [], self


@dataclass
class Chaos:
    """What a fault sees and changes while a scenario runs."""

    url: str
    log_dir: Path
    fault: Fault
    rng: random.Random
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    every: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: dict[int, float] = field(default_factory=dict)
    """Worker pid -> when it was killed."""
    windows: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    """Worker pid -> (start, end) of each time it was frozen or cut off."""
    outages: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of each time the backend's server was down."""
    steps: dict[str, list[tuple[float, str, int]]] = field(default_factory=dict)
    """Invocation id -> (when, "claim" or "lost", worker pid) of each RUNNING transition and
    each hand-back by recovery, in history order (filled by the check)."""
    injected: int = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start one more worker (in its own process group, which its forkserver and task
        processes join, so a fault can stop or kill them together)."""
        n = len(self.every)
        env = {
            **os.environ, "KUBENENC_BACKEND": self.fault.worker_url(self.url, n),
            "CHAOS_LOG": str(self.log_dir), "PYTHONPATH": str(ROOT),
            "KUBENENC_WORKER__HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "KUBENENC_WORKER__HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "KUBENENC_WORKER__MAX_LOST": "20",
        }  # fmt: skip
        with (self.log_dir / f"worker-{n}.out").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubenenc_worker", "worker", "--app",
                 "tests.chaos.chaosapp:app", "--mode", "process", "--concurrency", "2"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        self.every.append(proc)
        return proc

    def all_up(self) -> bool:
        """Every worker running now has started serving (logged its start line). Faults
        wait for it: a worker that cannot reach its backend while it starts exits (its pod
        would be restarted), which is not what a restart scenario tests."""
        for n, proc in enumerate(self.every):
            if proc in self.procs and " slots, " not in self._out(n):
                return False
        return True

    def _out(self, n: int) -> str:
        try:
            return (self.log_dir / f"worker-{n}.out").read_text(errors="replace")
        except OSError:
            return ""

    def busy_victim(self) -> subprocess.Popen[bytes]:
        """A random worker among those running a call now (any, when none is): a fault on an
        idle worker tests little."""
        holders = set()
        for rec in chaosapp.app.backend.query(status=Status.RUNNING, limit=1000):
            if rec.worker:
                holders.add(int(rec.worker.split(":")[1]))
        busy = [proc for proc in self.procs if proc.pid in holders]
        return self.rng.choice(busy or self.procs)

    def teardown(self) -> None:
        """Kill every worker's process group this run started (woken first: a stopped
        group would keep its task processes stopped for ever)."""
        for proc in self.every:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
        for proc in self.every:
            proc.wait(10)


def run(
    url: str,
    log_dir: Path,
    fault: Fault,
    *,
    calls: int = 120,
    workers: int = 3,
    fault_every: float = 1.5,
    max_faults: int = 5,
    waves: int = 8,
    wave_gap: float = 0.5,
    body_seconds: float = 0.2,
    deadline: float = 120.0,
    seed: int = 0,
) -> Report:
    """Run a scenario against ``url`` (an empty store); ``log_dir`` collects the body logs."""
    log_dir.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(url, log_dir, fault, random.Random(seed))
    app = chaosapp.app
    app.configure(url)
    started = time.monotonic()
    give_up = started + deadline
    invs: list[tuple[str, int, Any]] = []
    per_wave = max(1, calls // waves)
    next_fault = time.monotonic() + fault_every
    next_wave = time.monotonic()
    try:
        for _ in range(workers):
            chaos.spawn()
        i = 0
        while time.monotonic() < give_up:
            if i < calls and time.monotonic() >= next_wave:
                next_wave += wave_gap
                for _ in range(min(per_wave, calls - i)):
                    invs.append(_call(i, body_seconds))
                    i += 1
            elif i >= calls and chaos.injected >= max_faults and _all_final(invs):
                break
            due = time.monotonic() >= next_fault and chaos.injected < max_faults
            if due and chaos.all_up():
                if fault.inject(chaos):
                    chaos.injected += 1
                next_fault = time.monotonic() + fault_every
            time.sleep(0.2)
        fault.close(chaos)
        _settle(invs, give_up)
        report = check(invs, chaos)
    finally:
        with contextlib.suppress(Exception):
            fault.close(chaos)
        chaos.teardown()
        fault.cleanup()
        app.close()
    report.faults = chaos.injected
    report.seconds = time.monotonic() - started
    return report


def _call(i: int, body_seconds: float) -> tuple[str, int, Any]:
    if i % 3 == 2:
        return ("fan", i, chaosapp.fan(i))
    # Some bodies outlast the heartbeat timeout: a faulted worker's task process must not
    # run on beside the call's rerun.
    seconds = 3.0 if i % 10 == 0 else body_seconds
    return ("body", i, chaosapp.body(i, f"k{i % 4}", seconds))


def _all_final(invs: list[tuple[str, int, Any]]) -> bool:
    try:
        return all(inv.status.is_final for _, _, inv in invs)
    except Exception:  # the backend restarting under a server fault: ask again later
        return False


def _settle(invs: list[tuple[str, int, Any]], give_up: float) -> None:
    """Wait (bounded) for the calls to end once the faults are over."""
    while time.monotonic() < give_up and not _all_final(invs):
        time.sleep(0.2)


def check(invs: list[tuple[str, int, Any]], chaos: Chaos) -> Report:
    """The invariants, over every invocation and every body that ran."""
    report = Report(calls=len(invs))
    _check_ends(invs, chaos, report)
    bodies = _bodies(chaos)
    ids = {inv.id for _, _, inv in invs}
    # The calls the fan-outs made are checked through their callers; their hand-backs
    # explain overlaps of their bodies too.
    # (Read one by one with their history: a batch read may leave the history out.)
    for id in bodies:
        if id not in ids:
            rec = chaosapp.app.invocation(id).record()
            _walk_history(rec.id, rec.history, chaos, Report())
    _check_overlaps(bodies, ids, chaos, report)
    return report


def _check_ends(invs: list[tuple[str, int, Any]], chaos: Chaos, report: Report) -> None:
    finishes: list[float] = []
    for task, i, inv in invs:
        try:
            rec = inv.record()
        except LookupError:  # its registration was acknowledged, then lost by the store
            report.lost += 1
            report.lost_calls.append(f"{inv.id}: registered, then not found")
            continue
        holder = _walk_history(inv.id, rec.history, chaos, report)
        finals = [step for step in rec.history if step.status.is_final]
        finishes += [step.at for step in finals]
        if not rec.is_final:
            report.stuck += 1
        elif len(finals) != 1 or (finals[0].worker is not None and finals[0].worker != holder):
            report.lost += 1  # finished twice, or by a worker that no longer held it
        elif rec.status is Status.SUCCESS:
            report.wrong += inv.result() != chaosapp.expected(task, i)
            continue
        elif rec.status is Status.FAILED and rec.error and rec.error.type == WORKER_LOST:
            report.failed_worker_lost += 1
            continue
        elif rec.status is Status.FAILED and rec.error and rec.error.type == UNAVAILABLE:
            report.failed_unavailable += 1
            continue
        else:
            report.lost += 1  # ended in a way no one asked for
        steps = "; ".join(f"{t.at:.3f} {t.status} {t.worker} {t.reason}" for t in rec.history)
        report.lost_calls.append(f"{inv.id} {rec.status} {rec.error}: {steps}")
    for start, end in chaos.outages:
        after = [at for at in finishes if at > end]
        if after:
            report.longest_recovery = max(report.longest_recovery, min(after) - start)


def _walk_history(id: str, history: list[Any], chaos: Chaos, report: Report) -> str | None:
    """Note each hand-back by recovery ("worker host:pid:tag lost") and the time from the
    fault on that worker to it; return the worker of the last RUNNING transition."""
    holder = None
    for step in history:
        reason = step.reason or ""
        if step.status is Status.RUNNING:
            holder = step.worker
            if step.worker:
                pid = int(step.worker.split(":")[1])
                chaos.steps.setdefault(id, []).append((step.at, "claim", pid))
        if reason.startswith("worker ") and reason.endswith(" lost"):
            pid = int(reason.split()[1].split(":")[1])
            chaos.steps.setdefault(id, []).append((step.at, "lost", pid))
            # A hand-back during the fault (or soon after it) is its recovery; a later one
            # is another matter (the worker thought dead again, too slow to beat).
            windows = chaos.windows.get(pid, [])
            began = [w0 for w0, w1 in windows if w0 <= step.at <= w1 + HEARTBEAT_TIMEOUT]
            if pid in chaos.kills:
                began.append(chaos.kills[pid])
            if began:
                report.longest_recovery = max(report.longest_recovery, step.at - max(began))
    return holder


Run = tuple[float, float, str, int]
"""(start, end, running key, worker pid) of one body."""


def _bodies(chaos: Chaos) -> dict[str, list[Run]]:
    """Every body by invocation. A body without an end line was killed (with its worker,
    or by its worker stopping a call handed back elsewhere): it ends at its last line, the
    last thing it did (it writes one every tick while it works), so an overlap is a body
    doing something after another body of its call or key had started."""
    seen: dict[tuple[str, int], tuple[float, float, str, int]] = {}
    bodies: dict[str, list[Run]] = defaultdict(list)
    for path in chaos.log_dir.glob("*.log"):
        for line in path.read_text().splitlines():
            kind, id, pid, ppid, key, at = line.split()
            if kind == "S":
                seen[(id, int(pid))] = (float(at), float(at), key, int(ppid))
            elif kind == "T":
                start, _, key, worker = seen[(id, int(pid))]
                seen[(id, int(pid))] = (start, float(at), key, worker)
            else:
                start, _, key, worker = seen.pop((id, int(pid)))
                bodies[id].append((start, float(at), key, worker))
    for (id, _pid), (start, last, key, worker) in seen.items():
        bodies[id].append((start, last, key, worker))
    return bodies


def _zombie(
    body: Run, id: str, other_start: float, chaos: Chaos, report: Report, what: str
) -> bool:
    """Count an overlap as a zombie's if the claim under which ``body`` ran (its worker's
    last RUNNING of call ``id`` stamped before the body started) was taken away by a
    hand-back from that worker, alive, before the other body started; record how long it
    ran on. (Called both ways: a zombie's body can also start after the other one, when its
    task process got the call just before the freeze and starts it on waking, which the
    body's ``start_by`` prevents unless the worker's beats lagged its claim: counted as a
    late start.) History order, not stamps, says the hand-back came after the claim: a
    hand-back is stamped with the recovering worker's beat, taken before its write."""
    start, end, _, worker = body
    steps = chaos.steps.get(id, [])
    claims = [n for n, (at, kind, pid) in enumerate(steps)
              if kind == "claim" and pid == worker and at <= start]  # fmt: skip
    if (
        worker in chaos.kills
        or not claims
        or not any(
            kind == "lost" and pid == worker and at <= other_start
            for at, kind, pid in steps[claims[-1] + 1 :]
        )
    ):
        return False
    woke = max([w_end for w_start, w_end in chaos.windows.get(worker, []) if w_start < end] or [0])
    report.zombie_overlaps.append(what)
    report.zombie_late_starts += start > other_start
    report.zombie_run_on = max(report.zombie_run_on, end - max(woke, other_start))
    return True


def _check_overlaps(
    bodies: dict[str, list[Run]], ids: set[str], chaos: Chaos, report: Report
) -> None:
    for id, runs in bodies.items():
        runs.sort()
        if len(runs) > 1 and id in ids:
            report.reruns += 1
        for a, b in _overlapping(runs):
            what = f"{id}: {a} {b}"
            if not (_zombie(a, id, b[0], chaos, report, what)
                    or _zombie(b, id, a[0], chaos, report, what)):  # fmt: skip
                report.overlaps.append(f"{id}: {runs}")
    by_key: dict[str, list[tuple[Run, str]]] = defaultdict(list)
    for id, runs in bodies.items():
        for run_ in runs:
            if run_[2] != "-":
                by_key[run_[2]].append((run_, id))
    for key, keyed in by_key.items():
        owner = {run_: id for run_, id in keyed}
        for a, b in _overlapping(sorted(owner)):
            what = f"{key}: {owner[a]} {a} and {owner[b]} {b}"
            if owner[a] != owner[b] and not (
                _zombie(a, owner[a], b[0], chaos, report, what)
                or _zombie(b, owner[b], a[0], chaos, report, what)
            ):
                report.limit_violations.append(what)


def _overlapping(runs: list[Run]) -> list[tuple[Run, Run]]:
    """Each run (sorted by start) that starts before an earlier one ended, paired with the
    earlier run that ends last."""
    found = []
    latest: Run | None = None
    for run_ in runs:
        if latest is not None and run_[0] < latest[1]:
            found.append((latest, run_))
        if latest is None or run_[1] > latest[1]:
            latest = run_
    return found
