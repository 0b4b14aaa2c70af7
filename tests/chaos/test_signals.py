"""Chaos: a worker frozen for longer than the heartbeat timeout, then woken (SIGCONT): SIGSTOP
of its whole process group (worker, forkserver, task processes, as when a VM or container is
paused), or of the worker process alone (its task processes run on). Its calls are handed
back and rerun meanwhile; once awake, the zombie's late finishes must be refused (the rerun's
outcome stands, each call final once) and it must stop the bodies it no longer holds."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kubenenc import Status
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.settings import WorkerSettings
from kubenenc_worker.executors.processes import ProcessExecutor
from kubenenc_worker.worker import START_WITHIN, Worker

from tests.chaos import chaosapp
from tests.chaos.faults import StopWorker
from tests.chaos.scenario import HEARTBEAT_TIMEOUT, run

CASES = [("sqlite", True), ("redis", True), ("mongodb", True), ("sqlite", False)]
PARAMS = [
    pytest.param(kind, group, id=f"{kind}-{'group' if group else 'worker'}")
    for kind, group in CASES
]


@pytest.mark.parametrize(("kind", "group"), PARAMS)
@pytest.mark.timeout(240)
def test_a_frozen_worker_that_wakes_after_its_calls_were_handed_back_changes_nothing(
    kind: str, group: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    fault = StopWorker(seconds=HEARTBEAT_TIMEOUT + 1.5, group=group)
    report = run(url, tmp_path / "logs", fault, calls=90, fault_every=1.0, max_faults=3,
                 deadline=150)  # fmt: skip
    assert report.faults >= 2
    report.assert_clean()
    assert report.reruns >= 1, report  # the frozen worker's calls really were run again


def _frozen_child_gets(url: str, marker: Path) -> tuple[Worker, Any, Any]:
    """A process-mode worker (driven step by step here) whose one task process is frozen
    (SIGSTOP) and has just been sent a call: the moment a worker froze as a whole, right
    after its claim. Returns the worker, the child and the call."""
    chaosapp.app.configure(url)
    settings = WorkerSettings(mode="process", concurrency=1, heartbeat_timeout=1.0,
                              heartbeat_interval=0.2, poll_interval=0.05)  # fmt: skip
    worker = Worker(chaosapp.app, settings, app_path="tests.chaos.chaosapp:app")
    assert isinstance(worker.executor, ProcessExecutor)
    [child] = worker.executor._idle
    os.kill(child.process.pid, signal.SIGSTOP)
    inv = chaosapp.mark(str(marker))
    worker._tick = time.monotonic()
    assert worker._claim() and inv.id in worker.running  # sent: in the frozen child's pipe
    return worker, child, inv


def _wake_after_start_by(worker: Worker, child: Any) -> None:
    """Let the call's ``start_by`` pass while the child is frozen, then wake it; handle what
    it reports (event-driven: the child answers the call it was sent)."""
    time.sleep(worker.settings.heartbeat_timeout * START_WITHIN + 0.3)
    os.kill(child.process.pid, signal.SIGCONT)
    worker._handle(worker.events.get(timeout=60))


@pytest.mark.timeout(120)
def test_a_task_process_that_wakes_after_its_call_was_handed_back_does_not_start_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Before: the task process started the body on waking, beside the call's rerun."""
    marker = tmp_path / "started"
    worker, child, inv = _frozen_child_gets(sqlite_url, marker)
    try:
        # Meanwhile the worker was thought dead: recovery handed the call back.
        chaosapp.app.backend.finish(
            [Outcome(inv.id, OutcomeKind.HANDED_BACK, reason=f"worker {worker.id} lost")],
            worker.id, time.time(),
        )  # fmt: skip
        _wake_after_start_by(worker, child)
        assert not marker.exists()  # the body never started
        assert inv.id not in worker.running
        assert inv.status is Status.PENDING  # left for the rerun, nothing written over it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.process.pid, signal.SIGCONT)
        worker.executor.close(5.0)
        chaosapp.app.close()


@pytest.mark.timeout(120)
def test_a_late_start_of_a_call_still_held_goes_ahead(sqlite_url: str, tmp_path: Path) -> None:
    """The same stall without a hand-back: the worker checks, still holds the call, and
    runs it once."""
    marker = tmp_path / "started"
    worker, child, inv = _frozen_child_gets(sqlite_url, marker)
    try:
        _wake_after_start_by(worker, child)
        assert inv.id in worker.running
        for _ in range(10_000):  # bounded in turns; each waits for the child's report
            if inv.status.is_final:
                break
            worker._tick = time.monotonic()
            if not worker._step():
                with contextlib.suppress(queue.Empty):
                    worker._handle(worker.events.get(timeout=1.0))
        assert inv.status is Status.SUCCESS
        assert marker.read_text().split() == [str(inv.result(timeout=1))]  # one body
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.process.pid, signal.SIGCONT)
        worker.executor.close(5.0)
        chaosapp.app.close()
