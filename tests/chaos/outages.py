"""Outage scenarios, shared by ``tests/chaos/test_outages.py`` (small counts) and
``bench/chaos_outages.py``: the backend itself stops answering, or the workers' clocks
disagree, under the same load and the same checks as the kill -9 scenario
(:mod:`tests.chaos.scenario`).

Faults (each against a private server the scenario is handed, or against every master of
a private Redis Cluster at once: its ``admin_urls`` and ``server_pids``):

- ``pause``: Redis ``CLIENT PAUSE`` for ``seconds`` (every client blocks, then goes on);
- ``sleep``: Redis ``DEBUG SLEEP`` longer than the heartbeat timeout (the server stops);
- ``kill``: Redis ``CLIENT KILL TYPE normal``, every worker's connections dropped at once,
  again and again;
- ``freeze``: the server process stopped (SIGSTOP) for ``seconds``, then continued: the
  MongoDB-protocol server's equivalent of a ``DEBUG SLEEP`` (any server: its pids are given);
- ``skew``: no fault in the server; two of the workers run with their wall clocks ``skew``
  seconds ahead and behind (``tests/chaos/skewclock``: Debian's ``faketime`` breaks
  Python's timed waits, see there).

Every worker is alive throughout, so no call should be handed back at all (``hand_backs``
counts the losses recorded in the records: before the server judged heartbeats on its own
clock, an outage or a skewed clock handed back live work, which then ran twice at once).
Every loop is bounded in count and time.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from kubenenc import Status

from tests.chaos import chaosapp
from tests.chaos.faults import Fault
from tests.chaos.scenario import ROOT, Chaos, Report, check

HEARTBEAT_INTERVAL = 0.3
HEARTBEAT_TIMEOUT = 2.0
FAULTS = ("pause", "sleep", "kill", "freeze", "skew")
REDIS_ONLY = ("pause", "sleep", "kill")
REDIS_SIZES: dict[str, dict[str, Any]] = {
    "pause": {"seconds": 10.0},
    "sleep": {"seconds": 4.0},
    "freeze": {"seconds": 4.0},
    "kill": {"times": 4, "every": 1.5},
    "skew": {"skew": 10.0},
}
"""The tests' size of each fault on Redis, one server or every master of a cluster."""


@dataclass
class OutageReport(Report):
    """:class:`~tests.chaos.scenario.Report` plus what outages show."""

    hand_backs: int = 0
    """Losses recorded in the records (``lost``): calls taken from a worker judged dead."""
    fault_seconds: float = 0.0
    """Total seconds the faults lasted (the server paused or asleep)."""


SKEWCLOCK = Path(__file__).resolve().parent / "skewclock"
"""A ``sitecustomize`` that offsets ``time.time()`` by ``CHAOS_CLOCK_OFFSET`` seconds."""


def assert_outage_clean(report: OutageReport, *, hand_backs: bool = True) -> None:
    """At least one fault, and nothing lost, stuck, wrong, overlapping or over a limit; no
    live worker taken for dead unless ``hand_backs`` is False."""
    assert report.faults >= 1, report
    assert report.stuck == 0, report
    assert report.lost == 0, report
    assert report.wrong == 0, report
    assert report.overlaps == [], report
    assert report.limit_violations == [], report
    if hand_backs:
        assert report.hand_backs == 0, report


def _spawn(
    url: str, log_dir: Path, n: int, skew: float = 0.0, timeout: float = HEARTBEAT_TIMEOUT
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "KUBENENC_BACKEND": url, "CHAOS_LOG": str(log_dir),
        "KUBENENC_WORKER__HEARTBEAT_INTERVAL": str(min(HEARTBEAT_INTERVAL, timeout / 6)),
        "KUBENENC_WORKER__HEARTBEAT_TIMEOUT": str(timeout),
        "KUBENENC_WORKER__MAX_LOST": "20", "CHAOS_CLOCK_OFFSET": str(skew),
        "PYTHONPATH": os.pathsep.join(
            [*([str(SKEWCLOCK)] if skew else []), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    }  # fmt: skip
    command = [
        sys.executable, "-m", "kubenenc_worker", "worker", "--app", "tests.chaos.chaosapp:app",
        "--mode", "process", "--concurrency", "2",
    ]  # fmt: skip
    with (log_dir / f"worker-{n}.out").open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


class _Faults:
    """Injects ``times`` faults, ``every`` seconds apart (the first after ``every``), each on
    a thread of its own (a ``DEBUG SLEEP`` blocks the connection that sent it), on every
    server of ``admin_urls`` (Redis) or ``pids`` at once."""

    def __init__(
        self,
        fault: str,
        admin_urls: Sequence[str],
        seconds: float,
        times: int,
        every: float,
        pids: Sequence[int],
    ) -> None:
        self.fault, self.seconds, self.times, self.every = fault, seconds, times, every
        self.pids = list(pids)
        self.admins = (
            # A socket timeout past the longest DEBUG SLEEP (redis-py's default is shorter).
            [redis.Redis.from_url(url, socket_timeout=seconds + 30) for url in admin_urls]
            if fault in REDIS_ONLY
            else []
        )
        self.injected = 0
        self.lasted: list[float] = []
        self.ends: list[float] = []
        self._next = time.monotonic() + every
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self.injected >= self.times and not self.busy

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> None:
        """Inject the next fault if it is due."""
        if self.injected < self.times and time.monotonic() >= self._next and not self.busy:
            self._thread = threading.Thread(target=self._one, daemon=True)
            self._thread.start()
            self.injected += 1
            self._next = time.monotonic() + self.every + (self.seconds * (self.fault != "kill"))

    def _one(self) -> None:
        started = time.monotonic()
        if self.fault == "freeze":
            assert self.pids, "the freeze fault needs the server's pid"
            for pid in self.pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(self.seconds)
            finally:
                for pid in self.pids:
                    os.kill(pid, signal.SIGCONT)
        elif not self.admins:
            raise AssertionError(f"no fault {self.fault!r} on this server")
        elif self.fault == "pause":
            for admin in self.admins:
                admin.execute_command("CLIENT", "PAUSE", int(self.seconds * 1000), "ALL")
            time.sleep(self.seconds)
        elif self.fault == "sleep":  # every server asleep at once: a thread each
            asleep = ("DEBUG", "SLEEP", self.seconds)
            sleeps = [
                threading.Thread(target=admin.execute_command, args=asleep) for admin in self.admins
            ]
            for thread in sleeps:
                thread.start()
            for thread in sleeps:
                thread.join(self.seconds + 60)
        else:
            for admin in self.admins:
                admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        self.lasted.append(time.monotonic() - started)
        self.ends.append(time.time())

    def close(self, wait: float) -> None:
        if self._thread is not None:
            self._thread.join(wait)
        for admin in self.admins:
            admin.close()


def _wait_for_workers(n: int, give_up: float) -> None:
    """Until ``n`` workers have beaten (or ``give_up``, monotonic): start-up takes seconds
    on a loaded machine."""
    while time.monotonic() < give_up and len(chaosapp.app.backend.workers()) < n:
        time.sleep(0.2)


def _wave(invs: list[tuple[str, int, object]], first: int, n: int, body_seconds: float) -> int:
    """Submit calls ``first`` .. ``first + n - 1`` (as the kill -9 scenario does); the next
    index."""
    for i in range(first, first + n):
        if i % 3 == 2:
            invs.append(("fan", i, chaosapp.fan(i)))
        else:
            length = 3.0 if i % 10 == 0 else body_seconds  # some outlast the timeout
            invs.append(("body", i, chaosapp.body(i, f"k{i % 4}", length)))
    return first + n


def run(
    fault: str,
    url: str,
    log_dir: Path,
    *,
    calls: int = 120,
    workers: int = 3,
    seconds: float = 10.0,
    times: int = 1,
    every: float = 3.0,
    skew: float = 10.0,
    waves: int = 8,
    wave_gap: float = 0.5,
    body_seconds: float = 0.2,
    deadline: float = 180.0,
    server_pids: Sequence[int] = (),
    admin_urls: Sequence[str] | None = None,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
) -> OutageReport:
    """Run ``fault`` (one of :data:`FAULTS`) against ``url`` (an empty store on a server
    this scenario may pause, put to sleep or drop connections of: ``DEBUG`` needs the
    server's ``--enable-debug-command local``; ``freeze`` needs ``server_pids``). The
    Redis faults go to each of ``admin_urls`` (default: ``url`` without its options; for a
    Redis Cluster, every master's ``redis://`` URL). ``times`` injections, ``every`` seconds
    apart; ``seconds``: how long a pause, sleep or freeze lasts. ``heartbeat_timeout``: the
    workers'."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
    log_dir.mkdir(parents=True, exist_ok=True)
    app = chaosapp.app
    app.configure(url)
    started = time.monotonic()
    give_up = started + deadline
    skews = [0.0] * workers
    if fault == "skew":
        skews[:2] = [skew, -skew][: min(2, workers)]
    procs = [_spawn(url, log_dir, n, skews[n], heartbeat_timeout) for n in range(workers)]
    _wait_for_workers(workers, give_up)  # a fault while they start tests their start-up
    admins = [url.split("?", maxsplit=1)[0]] if admin_urls is None else list(admin_urls)
    faults = _Faults(fault, admins, seconds, times if fault != "skew" else 0, every, server_pids)
    invs: list[tuple[str, int, object]] = []
    per_wave = max(1, calls // waves)
    next_wave = time.monotonic()
    try:
        i = 0
        while time.monotonic() < give_up:
            faults.tick()
            if i < calls and time.monotonic() >= next_wave:
                next_wave += wave_gap
                i = _wave(invs, i, min(per_wave, calls - i), body_seconds)
            elif (
                i >= calls
                and faults.done
                and all(
                    inv.status.is_final  # type: ignore[attr-defined]
                    for _, _, inv in invs
                )
            ):
                break
            time.sleep(0.2)
        faults.close(max(1.0, give_up - time.monotonic()))
        # No worker is killed, frozen or cut off here: every overlap counts against the run.
        chaos = Chaos(url, log_dir, Fault(), random.Random(0))
        report = _outage_report(check(invs, chaos), invs, faults.ends)
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
        app.close()
    report.faults = faults.injected if fault != "skew" else sum(1 for s in skews if s)
    report.fault_seconds = sum(faults.lasted) if fault != "kill" else 0.0
    report.seconds = time.monotonic() - started
    return report


def _outage_report(
    base: Report, invs: list[tuple[str, int, object]], ends: list[float]
) -> OutageReport:
    """``base`` with the losses recorded and the longest time from the end of a fault to
    the first call that ended after it (the fleet working again)."""
    report = OutageReport(**vars(base))
    finished: list[float] = []
    for _, _, inv in invs:
        rec = inv.record()  # type: ignore[attr-defined]
        report.hand_backs += rec.lost
        finished += [step.at for step in rec.history if step.status is Status.SUCCESS]
    finished.sort()
    for end in ends:
        after = [at for at in finished if at >= end]
        if after:
            report.longest_recovery = max(report.longest_recovery, after[0] - end)
    return report
