"""A body that raises BackendUnavailable (its backend was out for longer than its client's
retries while it used it: a fan-out registering its calls during a Redis restart) is not
the task's fault: the worker hands the call back and it runs again, instead of ending
FAILED (found by tests/chaos/test_restarts.py). A body that keeps raising it is failed in
the end, not rerun for ever."""

from __future__ import annotations

from kubenenc import App, Status
from kubenenc.backends.memory import MemoryBackend
from kubenenc.errors import BackendUnavailable
from kubenenc.settings import WorkerSettings
from kubenenc_worker.worker import UNAVAILABLE_RERUNS, Worker

app = App("unavailable", backend=MemoryBackend())
RUNS = {"flaky": 0, "down": 0}


@app.task
def flaky(i: int) -> int:
    RUNS["flaky"] += 1
    if RUNS["flaky"] == 1:
        raise BackendUnavailable("Redis at redis://127.0.0.1:1/0 unreachable for 60 s")
    return i * 2


@app.task
def always_down() -> int:
    RUNS["down"] += 1
    raise BackendUnavailable("a second app's server, down for good")


def test_a_body_that_met_a_backend_outage_is_rerun_not_failed() -> None:
    app.configure(MemoryBackend())
    RUNS["flaky"] = 0
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=1, poll_interval=0.05))
    worker.start()
    try:
        inv = flaky(21)
        assert inv.result(timeout=60) == 42
        rec = inv.record()
        assert rec.status is Status.SUCCESS
        assert RUNS["flaky"] == 2
        assert rec.attempt == 0  # a hand-back, not a try of the task's retries
        assert any(step.status is Status.PENDING and step.reason == "backend unavailable in body"
                   for step in rec.history), rec.history  # fmt: skip
    finally:
        worker.stop(grace=1.0)


def test_a_body_that_keeps_raising_backend_unavailable_ends_failed() -> None:
    app.configure(MemoryBackend())
    RUNS["down"] = 0
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=1, poll_interval=0.05))
    worker.start()
    try:
        inv = always_down()
        inv.wait(timeout=60)
        rec = inv.record()
        assert rec.status is Status.FAILED
        assert rec.error is not None and rec.error.type == "kubenenc.errors.BackendUnavailable"
        assert RUNS["down"] == UNAVAILABLE_RERUNS + 1
    finally:
        worker.stop(grace=1.0)
