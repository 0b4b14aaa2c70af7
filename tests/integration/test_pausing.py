"""Pausing waits: one slot completes deep chains and wide fan-ins in every execution mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import Status
from kubenenc.backends.memory import MemoryBackend

from tests.integration import taskapp

# (mode, backend kind): process mode needs a backend shared across processes.
MODES = [("thread", "memory"), ("async", "memory"), ("thread", "shared"),
         ("async", "shared"), ("process", "shared")]  # fmt: skip


@pytest.fixture(params=MODES, ids=[f"{m}-{b}" for m, b in MODES])
def one_slot(
    request: pytest.FixtureRequest, app_on: Callable[[Any], Any],
    run_worker: Callable[..., Any], shared_url: str,
) -> str:  # fmt: skip
    mode, kind = request.param
    app_on(MemoryBackend() if kind == "memory" else shared_url)
    run_worker(mode=mode, concurrency=1)
    return str(mode)


@pytest.mark.timeout(180)
def test_chain_of_depth_50_with_one_slot(one_slot: str) -> None:
    assert taskapp.chain(50).result(timeout=150) == 50
    counts = taskapp.app.counts()
    assert counts == {Status.SUCCESS: 51}


@pytest.mark.timeout(120)
def test_parent_waiting_on_100_children_with_one_slot(one_slot: str) -> None:
    assert taskapp.parent(100).result(timeout=100) == sum(i * 2 for i in range(100))
    assert taskapp.app.counts() == {Status.SUCCESS: 101}


@pytest.mark.timeout(120)
def test_sequential_waits_pause_and_resume(one_slot: str) -> None:
    assert taskapp.sequential_parent(20).result(timeout=100) == sum(i * 2 for i in range(20))
    rec = taskapp.app.invocations(task=taskapp.sequential_parent)[0].record()
    statuses = [h.status for h in rec.history]
    assert statuses.count(Status.PAUSED) == 20
    assert statuses.count(Status.RUNNING) == 21


@pytest.mark.timeout(120)
def test_recursion_with_other_arguments_is_no_cycle(one_slot: str) -> None:
    assert taskapp.fib(7).result(timeout=100) == 13


def test_coroutine_tasks_pause_too(
    app_on: Callable[[Any], Any], run_worker: Callable[..., Any]
) -> None:
    app_on(MemoryBackend())
    run_worker(mode="async", concurrency=1)
    assert taskapp.async_parent(10).result(timeout=30) == sum(i * 2 for i in range(10)) + 2
