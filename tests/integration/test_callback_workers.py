"""Callbacks (and status triggers) with worker processes: registered with the final status,
run once, chained."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import Status
from kubenenc.callbacks import callback_id

from tests.integration import taskapp
from tests.support import wait_until


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_callbacks_survive_a_kill_9_right_after_the_finish(
    shared_url: str, app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any]
) -> None:
    app = app_on(shared_url)
    # The first worker runs only the first step; callbacks run in their own pool, served by
    # a worker started after the first one is killed.
    victim = spawn_worker(shared_url, "--mode", "thread", "--concurrency", "1")
    inv = taskapp.first_step(1)
    wait_until("the first step", lambda: inv.status is Status.SUCCESS, 60)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    # The callback exists as soon as the status does, whatever happened to the worker.
    second = app.invocation(callback_id(inv.id, "success", 0))
    assert second.status is Status.PENDING
    watched = app.invocation(callback_id(inv.id, f"success:{taskapp.first_step_watched.id}", 0))
    assert watched.status is Status.PENDING  # the status trigger too
    spawn_worker(shared_url, "--mode", "thread", "--concurrency", "2", "--pool", "callbacks")
    assert second.result(timeout=60) == 3
    third = app.invocation(callback_id(second.id, "success", 0))
    assert third.result(timeout=60) == 4
    assert watched.result(timeout=60) == 200
    tasks = (taskapp.second_step, taskapp.third_step, taskapp.first_step_watched)
    counts = {t: app.counts(task=t) for t in tasks}
    assert counts == {t: {Status.SUCCESS: 1} for t in tasks}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_retry_and_failure_callbacks_from_a_worker(
    shared_url: str, app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any]
) -> None:
    app = app_on(shared_url)
    spawn_worker(shared_url, "--mode", "thread", "--concurrency", "2")
    spawn_worker(shared_url, "--mode", "thread", "--concurrency", "2", "--pool", "callbacks")
    inv = taskapp.always_fails()
    wait_until("the failure", lambda: inv.status is Status.FAILED, 60)
    retried = app.invocation(callback_id(inv.id, "retry", 1))
    failed = app.invocation(callback_id(inv.id, "failure", 2))
    assert retried.result(timeout=60) == inv.id
    assert failed.result(timeout=60) == inv.id
    args = app.serializer.loads(failed.record().args)
    assert args["value"]["type"] == "builtins.OSError"
    assert args["value"]["message"] == "down"
    assert app.counts(task=taskapp.noted) == {Status.SUCCESS: 2}
