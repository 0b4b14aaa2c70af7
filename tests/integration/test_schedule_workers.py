"""Schedules across processes: each tick is called once, whichever processes run the app
and however they start and stop (see :mod:`kubenenc.schedules`)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import App

from tests.integration import scheduleapp
from tests.integration.conftest import ROOT
from tests.support import wait_until

START = dt.datetime(2026, 12, 7, 9, 59, 30, tzinfo=dt.UTC).timestamp()


def minutes_of(app: App, task: Any) -> list[int]:
    """The minute of each call of ``task`` (when it was registered), sorted."""
    return sorted(int(r.created_at // 60) for r in app.backend.query(task=task.id, limit=10_000))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_three_processes_racing_call_each_tick_once(shared_url: str) -> None:
    rounds, step = 300, 20.0  # 100 simulated minutes, three rounds per minute
    wall_start = time.time() + 3.0  # every process starts its first round then
    command = [
        sys.executable, "-c", "from tests.integration.scheduleapp import main; main()",
        shared_url, repr(START), repr(step), str(rounds), repr(wall_start),
    ]  # fmt: skip
    procs = [subprocess.Popen(command, cwd=ROOT) for _ in range(3)]
    for proc in procs:
        assert proc.wait(100) == 0
    app = scheduleapp.app
    app.configure(shared_url)
    try:
        # The first round (09:59:30) is 30 s after the 09:59 tick: on time, so it is called.
        every = app.counts(task=scheduleapp.every_minute)
        assert sum(every.values()) == 101  # 09:59, 10:00, ..., 11:39
        assert sum(app.counts(task=scheduleapp.every_five).values()) == 20  # 10:00 ... 11:35
    finally:
        app.close()


@pytest.fixture
def spawn(
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
) -> Callable[[str], subprocess.Popen[bytes]]:
    """Start ``kubenenc worker`` processes of the schedule app that run nothing (their
    pool has no calls: the scheduled ones go to ``default``); killed at the end."""

    def start(url: str) -> subprocess.Popen[bytes]:
        return spawn_worker(
            url, "--mode", "thread", "--concurrency", "1", "--pool", "none",
            env={"KUBENENC_WORKER__HEARTBEAT_INTERVAL": "0.2"},
            app="tests.integration.scheduleapp:app",
        )  # fmt: skip

    return start


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_worker_processes_call_each_real_tick_once_through_a_restart(
    shared_url: str, spawn: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    app = scheduleapp.app
    app.configure(shared_url)
    try:
        workers = [spawn(shared_url) for _ in range(3)]
        wait_until("a first call", lambda: minutes_of(app, scheduleapp.every_minute), 90)
        first = minutes_of(app, scheduleapp.every_minute)[0]
        os.kill(workers[0].pid, signal.SIGKILL)  # one dies; another starts
        spawn(shared_url)
        wait_until(
            "the next tick's call",
            lambda: max(minutes_of(app, scheduleapp.every_minute)) > first,
            90,
        )
        time.sleep(1.0)  # the others' rounds for the same tick
        minutes = minutes_of(app, scheduleapp.every_minute)
        assert minutes == list(range(first, first + len(minutes)))  # one call per tick
        assert len(minutes) >= 2
    finally:
        app.close()
