"""An idle worker whose backend wakes it (WorkNotifier) sleeps until the earliest due delayed
call (DueTimes) or a heartbeat interval, instead of polling every few milliseconds."""

from __future__ import annotations

import time

from kubenenc import App
from kubenenc.backends.memory import MemoryBackend
from kubenenc.settings import WorkerSettings
from kubenenc_worker.worker import Worker


def noop() -> None:
    return None


def test_an_idle_worker_sleeps_until_the_next_due_call() -> None:
    backend = MemoryBackend()
    app = App("idle", backend=backend)
    task = app.task(noop)
    settings = WorkerSettings(mode="thread", concurrency=2, heartbeat_interval=5.0)
    worker = Worker(app, settings)
    worker._step()  # claims nothing: drained
    assert worker._drained
    assert worker._idle_wait(0.005) > 4.0  # nothing due: until the next heartbeat interval
    task.with_options(countdown=2.0)()
    worker._step()  # not woken (no event): still drained, the sleep already planned
    assert worker._idle_wait(0.005) > 4.0 - 1.0
    worker._drained = False
    worker._step()  # a claim (after a wake-up) reads the due time again
    assert worker._drained
    wait = worker._idle_wait(0.005)
    assert 1.0 < wait <= 2.0
    # Once the call is due the wait is over: the next claim takes it.
    time.sleep(wait)
    assert worker._idle_wait(0.005) == 0.0


def test_without_a_notifier_the_worker_polls() -> None:
    backend = MemoryBackend()
    app = App("idle", backend=backend)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2))
    worker._notifier = None
    worker._step()
    assert worker._idle_wait(0.004) == 0.004
