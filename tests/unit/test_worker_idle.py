"""An idle worker whose backend wakes it (WorkNotifier) sleeps until the earliest due delayed
call (DueTimes) or a heartbeat interval, instead of polling every few milliseconds; one whose
backend cannot wake it polls, and ends a long poll wait when a delayed call comes due."""

from __future__ import annotations

import time

from kubenenc import App
from kubenenc.backends.memory import MemoryBackend
from kubenenc.settings import WorkerSettings
from kubenenc_worker.worker import DUE_READ_ABOVE, Worker


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


def test_a_polling_worker_ends_a_long_wait_when_a_delayed_call_comes_due() -> None:
    backend = MemoryBackend()
    app = App("idle", backend=backend)
    task = app.task(noop)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=30.0))
    worker._notifier = None  # MongoDB: DueTimes, no WorkNotifier
    worker._step()
    assert worker._idle_wait(30.0) == 30.0  # nothing waits on time: the whole poll
    task.with_options(countdown=2.0)()
    worker._step()  # the call is not due: nothing claimed
    wait = worker._idle_wait(30.0)
    assert 1.0 < wait <= 2.0
    assert worker._idle_wait(0.001) == 0.001  # a shorter poll is never stretched
    # A short wait does not read the due time at all (each read may be a round trip).
    reads: list[str] = []
    worker._due = _Counting(backend, reads)
    assert worker._idle_wait(DUE_READ_ABOVE) == DUE_READ_ABOVE
    assert reads == []
    assert worker._idle_wait(1.0) == 1.0  # the call is 1-2 s away: the poll comes first
    assert reads == [worker.queue]


def test_a_polling_worker_without_due_times_waits_its_poll() -> None:
    app = App("idle", backend=MemoryBackend())
    task = app.task(noop)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=30.0))
    worker._notifier = None
    worker._due = None
    task.with_options(countdown=2.0)()
    worker._step()
    assert worker._idle_wait(30.0) == 30.0


def test_a_failed_due_time_read_leaves_the_poll() -> None:
    app = App("idle", backend=MemoryBackend())
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=30.0))
    worker._notifier = None
    worker._due = _Failing()
    assert worker._idle_wait(30.0) == 30.0


class _Counting:
    """DueTimes over a backend, recording each read's pool."""

    def __init__(self, backend: MemoryBackend, reads: list[str]) -> None:
        self.backend, self.reads = backend, reads

    def next_due(self, pool: str, now: float) -> float | None:
        self.reads.append(pool)
        return self.backend.next_due(pool, now)


class _Failing:
    def next_due(self, pool: str, now: float) -> float | None:
        raise ConnectionError("backend down")
