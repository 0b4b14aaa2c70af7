"""Cycle detection end to end: the loop is refused in the waiter that closes it, the error
reaches the caller with its type, nothing spins and everything involved ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import CycleDetectedError, Status
from kubenenc.backends.memory import MemoryBackend

from tests.integration import taskapp

MODES = [("thread", "memory"), ("process", "shared")]


@pytest.fixture(params=MODES, ids=[f"{m}-{b}" for m, b in MODES])
def worker(
    request: pytest.FixtureRequest, app_on: Callable[[Any], Any],
    run_worker: Callable[..., Any], shared_url: str,
) -> None:  # fmt: skip
    mode, kind = request.param
    app_on(MemoryBackend() if kind == "memory" else shared_url)
    run_worker(mode=mode, concurrency=2)


@pytest.fixture(params=MODES, ids=[f"{m}-{b}" for m, b in MODES])
def one_slot_worker(
    request: pytest.FixtureRequest, app_on: Callable[[Any], Any],
    run_worker: Callable[..., Any], shared_url: str,
) -> None:  # fmt: skip
    """A worker with a single slot: a call registered by a running one cannot start before
    its parent's wait is decided (with two slots it may, and run on meanwhile)."""
    mode, kind = request.param
    app_on(MemoryBackend() if kind == "memory" else shared_url)
    run_worker(mode=mode, concurrency=1)


def _all_final_soon() -> dict[Status, int]:
    deadline = time.time() + 20
    while time.time() < deadline:
        counts = taskapp.app.counts()
        if all(Status(s).is_final for s in counts):
            return counts
        time.sleep(0.05)
    raise AssertionError(f"not all final: {taskapp.app.counts()}")


@pytest.mark.timeout(60)
def test_loop_through_new_invocations_is_refused(one_slot_worker: None) -> None:
    with pytest.raises(CycleDetectedError) as info:
        taskapp.ping(1).result(timeout=30)
    message = str(info.value)
    assert "ping(1)\n  -> waits on pong(1)\n  -> waits on ping(1)" in message
    counts = _all_final_soon()
    # ping(1), pong(1) and the duplicate ping(1) that closed the loop: nothing more spawned.
    assert sum(counts.values()) == 3
    assert counts == {Status.FAILED: 3}


@pytest.mark.timeout(60)
def test_loop_through_new_invocations_ends_with_free_slots(worker: None) -> None:
    # With a second slot the duplicate may start before pong(1)'s wait on it is refused and
    # call pong(1) again; that copy's own loop is refused the same way. All of it ends.
    with pytest.raises(CycleDetectedError, match=r"ping\(1\)"):
        taskapp.ping(1).result(timeout=30)
    counts = _all_final_soon()
    assert set(counts) == {Status.FAILED}
    assert sum(counts.values()) >= 3


@pytest.mark.timeout(60)
def test_loop_through_deduplicated_invocations_is_refused(worker: None) -> None:
    with pytest.raises(CycleDetectedError, match=r"dd_ping\(1\)"):
        taskapp.dd_ping(1).result(timeout=30)
    counts = _all_final_soon()
    assert counts == {Status.FAILED: 2}


@pytest.mark.timeout(60)
def test_waiting_on_the_same_call_is_refused(one_slot_worker: None) -> None:
    # One slot: with two, the call the body registered could start (and register its own)
    # before the body's wait was refused, making 4 or 6 calls instead of 2.
    with pytest.raises(CycleDetectedError, match=r"selfwait\(3\)"):
        taskapp.selfwait(3).result(timeout=30)
    assert _all_final_soon() == {Status.FAILED: 2}


@pytest.mark.timeout(60)
def test_fire_and_forget_is_no_cycle(worker: None) -> None:
    assert taskapp.fire_and_forget(5).result(timeout=30) == "sent"
    counts = _all_final_soon()
    assert counts == {Status.SUCCESS: 6}


@pytest.mark.timeout(60)
def test_waiting_on_its_own_result_is_refused(worker: None) -> None:
    with pytest.raises(CycleDetectedError, match="its own result"):
        taskapp.own_result().result(timeout=30)
