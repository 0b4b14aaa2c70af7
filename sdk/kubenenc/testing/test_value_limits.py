"""Bounded values: oversized arguments fail in the caller, oversized results fail the call;
neither reaches the backend nor stops a worker from taking the next call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubenenc_worker.worker import Worker

import kubenenc
from kubenenc.backends.contract import Backend
from kubenenc.settings import WorkerSettings
from kubenenc.status import Status


def echo(text: str) -> str:
    return text


def grow(n: int) -> str:
    return "x" * n


@pytest.fixture
def app(backend: Backend) -> Iterator[kubenenc.App]:
    application = kubenenc.App("limits", backend=backend, max_value_bytes=1000)
    application.task(echo)
    application.task(retries=2, max_value_bytes=5000)(grow)
    yield application


def _worker(app: kubenenc.App) -> Worker:
    return Worker(app, WorkerSettings(mode="thread", concurrency=1, poll_interval=0.01)).start()


def test_oversized_arguments_fail_in_the_caller_and_register_nothing(
    backend: Backend, app: kubenenc.App
) -> None:
    echo_task = app.tasks[kubenenc.TaskId(f"{__name__}.echo")]
    with pytest.raises(kubenenc.ValueTooLarge, match=r"echo\(\) arguments are 1,011 bytes"):
        echo_task("y" * 1000)
    with pytest.raises(kubenenc.ValueTooLarge):  # one oversized call in a batch: none registered
        echo_task.parallelize([("a",), ("b" * 2000,)])
    assert sum(app.counts().values()) == 0
    assert echo_task("y" * 900).status is Status.PENDING  # under the limit: registered


def test_an_oversized_result_fails_the_call_once_and_the_worker_goes_on(
    backend: Backend, app: kubenenc.App
) -> None:
    grow_task = app.tasks[kubenenc.TaskId(f"{__name__}.grow")]
    big, fine = grow_task(6000), grow_task(4000)  # the task's own limit (5000) applies
    worker = _worker(app)
    try:
        with pytest.raises(kubenenc.ValueTooLarge, match=r"grow\(\) returned 6,002 bytes"):
            big.result(timeout=20)
        assert big.status is Status.FAILED
        record = app.backend.get(big.id)
        assert record is not None
        statuses = [t.status for t in record.history]
        assert Status.RETRY not in statuses, statuses  # it would be refused again
        assert fine.result(timeout=20) == "x" * 4000
    finally:
        worker.stop(grace=5)


def test_the_limit_is_lowered_to_what_the_backend_can_store(backend: Backend) -> None:
    app = kubenenc.App("big", backend=backend, max_value_bytes=64 * 1024 * 1024)
    stored = getattr(backend, "max_value_bytes", None)
    assert app.value_limit() == (64 * 1024 * 1024 if stored is None else stored)
    if stored is None:
        return
    echo_task = app.task(echo)
    with pytest.raises(kubenenc.ValueTooLarge):
        echo_task("z" * stored)
    near = "z" * (stored - 100)  # as large as the backend allows: stored and returned whole
    inv = echo_task(near)
    worker = _worker(app)
    try:
        assert inv.result(timeout=60) == near
    finally:
        worker.stop(grace=5)
