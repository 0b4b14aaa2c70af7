"""However a task body ends or waits, its call ends: concurrent waits inside one call,
every BaseException from user code, and timed waits inside a task (issue 13, items 1, 2, 5).

Each of these left a call RUNNING or PAUSED for ever before (and ``sys.exit()`` in a coroutine
task stopped the event loop that every later async call runs on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import Status
from kubenenc.backends.memory import MemoryBackend

from tests.integration import taskapp

MODES = [("thread", "memory"), ("async", "memory"), ("thread", "shared"),
         ("async", "shared"), ("process", "shared")]  # fmt: skip


def _bind(request: pytest.FixtureRequest, app_on: Callable[[Any], Any], shared_url: str) -> str:
    mode, kind = request.param
    app_on(MemoryBackend() if kind == "memory" else shared_url)
    return str(mode)


@pytest.fixture(params=MODES, ids=[f"{m}-{b}" for m, b in MODES])
def one_slot(
    request: pytest.FixtureRequest, app_on: Callable[[Any], Any],
    run_worker: Callable[..., Any], shared_url: str,
) -> str:  # fmt: skip
    mode = _bind(request, app_on, shared_url)
    run_worker(mode=mode, concurrency=1)
    return mode


@pytest.fixture(params=MODES, ids=[f"{m}-{b}" for m, b in MODES])
def three_slots(
    request: pytest.FixtureRequest, app_on: Callable[[Any], Any],
    run_worker: Callable[..., Any], shared_url: str,
) -> str:  # fmt: skip
    mode = _bind(request, app_on, shared_url)
    run_worker(mode=mode, concurrency=3)
    return mode


@pytest.mark.timeout(90)
def test_gather_of_several_waits_inside_one_call(one_slot: str) -> None:
    invs = [taskapp.gather_two(i) for i in range(5)]
    assert [inv.result(timeout=60) for inv in invs] == [[i * 2, i + 1] for i in range(5)]


ENDINGS = [
    (taskapp.async_raises, "cancelled", "asyncio.exceptions.CancelledError"),
    (taskapp.async_raises, "exit", "builtins.SystemExit"),
    (taskapp.async_raises, "unprintable", "tests.integration.taskapp.UnprintableError"),
    (taskapp.sync_raises, "exit", "builtins.SystemExit"),
    (taskapp.sync_raises, "interrupt", "builtins.KeyboardInterrupt"),
    (taskapp.sync_raises, "unprintable", "tests.integration.taskapp.UnprintableError"),
]


@pytest.mark.timeout(90)
def test_every_base_exception_ends_the_call_failed_and_the_worker_goes_on(one_slot: str) -> None:
    for task, kind, error_type in ENDINGS:
        inv = task(kind)
        assert inv.wait(timeout=30), f"{task.id}({kind}) did not end"
        rec = inv.record()
        assert rec.status is Status.FAILED, (task.id, kind, rec.status)
        assert rec.error is not None
        assert rec.error.type == error_type
        if kind == "unprintable":
            assert "unprintable UnprintableError" in rec.error.message
        # The executor survived: the next call of the same kind still runs.
        assert taskapp.add(1, 2).result(timeout=30) == 3
        assert taskapp.async_leaf(1).result(timeout=30) == 2


@pytest.mark.timeout(90)
def test_a_timed_wait_inside_a_task_raises_result_timeout(three_slots: str) -> None:
    # Three slots: the two sleeps hold two, the third resumes the callers whose wait ran out.
    sync_inv = taskapp.gives_up_waiting(8.0, 0.3)
    async_inv = taskapp.async_gives_up_waiting(8.0, 0.3)
    assert sync_inv.result(timeout=30).startswith("timed out: 1 invocation(s) not final")
    assert async_inv.result(timeout=30) == "timed out"
    for inv in (sync_inv, async_inv):
        statuses = [h.status for h in inv.record().history]
        assert statuses[-3:] == [Status.PAUSED, Status.RUNNING, Status.SUCCESS]
    for inv in taskapp.app.invocations(task=taskapp.sleepy):
        inv.cancel()
