"""Delayed calls with several worker processes: none starts before it is due.

Timings (how late) are measured by ``bench/delayed_bench.py``, not asserted here; what is
asserted holds on any machine: no start (the run's own clock, and the RUNNING transition
the backend recorded) comes before the call's due time, and every call runs exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import Status

from tests.integration import taskapp


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_delayed_calls_over_three_worker_processes_never_start_early(
    shared_url: str, app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any]
) -> None:
    app = app_on(shared_url)
    rnd = random.Random(16)
    for _ in range(3):
        spawn_worker(shared_url, "--mode", "thread", "--concurrency", "4")
    calls = [taskapp.stamped.with_options(countdown=rnd.uniform(0, 2.0))(i) for i in range(60)]
    calls.append(taskapp.stamped(60))  # an undelayed one among them
    due = {inv.id: inv.record().not_before for inv in calls}
    started = [inv.result(timeout=60) for inv in calls]
    for inv, start in zip(calls, started, strict=True):
        rec = inv.record()
        assert rec.status is Status.SUCCESS
        running = [t for t in rec.history if t.status is Status.RUNNING]
        assert len(running) == 1, rec.history  # claimed once
        assert running[0].at >= due[inv.id], (inv.id, running[0].at, due[inv.id])
        assert start >= due[inv.id]
    assert app.counts() == {Status.SUCCESS: 61}
