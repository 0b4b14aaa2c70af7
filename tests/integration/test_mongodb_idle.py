"""An idle worker on MongoDB (DueTimes, no WorkNotifier: it polls) ends a long poll wait
when a delayed call comes due, and claims that call once it is due. On both servers."""

from __future__ import annotations

from typing import Any

import pytest
from kubenenc import App
from kubenenc.backends.contract import DueTimes, WorkNotifier
from kubenenc.settings import WorkerSettings
from kubenenc_worker.worker import Worker

pytestmark = pytest.mark.mongodb


def noop() -> None:
    return None


@pytest.fixture(params=["mongodb_backend", "mongojava_backend"])
def backend(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def test_a_polling_worker_wakes_for_the_next_due_call(backend: Any) -> None:
    assert isinstance(backend, DueTimes)
    assert not isinstance(backend, WorkNotifier)
    app = App("idle", backend=backend)
    task = app.task(noop)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=30.0))
    worker._step()
    assert worker._idle_wait(30.0) == 30.0  # nothing waits on time: the whole poll
    call = task.with_options(countdown=1.0)()
    assert not worker._step()  # not due yet: nothing claimed
    wait = worker._idle_wait(30.0)
    assert 0.0 < wait <= 1.0
    worker.start()
    try:
        assert call.result(timeout=20.0) is None
    finally:
        worker.stop()
