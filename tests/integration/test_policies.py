"""Running limits hold across worker processes; retries, timeouts, cancellation, declared
dependencies work end to end."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubenenc import DependencyFailed, InvocationCancelled, Status, TaskTimeout
from kubenenc.backends.memory import MemoryBackend

from tests.integration import taskapp


def _overlapping(spans: list[tuple[float, float]]) -> int:
    spans = sorted(spans)
    return sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_running_limit_holds_across_four_worker_processes(
    shared_url: str, app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any]
) -> None:
    app_on(shared_url)
    group = taskapp.limited.parallelize([("k", i, 0.005) for i in range(200)])
    procs = [spawn_worker(shared_url, "--mode", "process", "--concurrency", "2") for _ in range(4)]
    results = group.results(timeout=200)
    spans = [(start, end) for start, end, _ in results]
    assert _overlapping(spans) == 0
    assert taskapp.app.counts() == {Status.SUCCESS: 200}
    assert all(p.poll() is None for p in procs)


@pytest.mark.timeout(60)
def test_running_limit_of_three(
    app_on: Callable[[Any], Any], run_worker: Callable[..., Any]
) -> None:
    app_on(MemoryBackend())
    run_worker(mode="thread", concurrency=8)
    spans = taskapp.limited3.parallelize([(i, 0.05) for i in range(18)]).results(timeout=30)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    assert peak == 3


def test_retry_then_success(
    tmp_path: Path, app_on: Callable[[Any], Any], run_worker: Callable[..., Any]
) -> None:
    app_on(MemoryBackend())
    run_worker()
    inv = taskapp.flaky(str(tmp_path / "m"), 2)
    assert inv.result(timeout=20) == 3
    statuses = [h.status for h in inv.record().history]
    assert statuses.count(Status.RETRY) == 2
    assert inv.record().attempt == 2


def test_retries_exhausted_keep_the_error_type(
    tmp_path: Path, app_on: Callable[[Any], Any], run_worker: Callable[..., Any]
) -> None:
    app_on(MemoryBackend())
    run_worker()
    with pytest.raises(OSError, match="try 3 failed"):
        taskapp.flaky(str(tmp_path / "m"), 5).result(timeout=20)
    with pytest.raises(ValueError, match="not retried"):
        taskapp.wrong_error().result(timeout=20)
    rec = taskapp.app.invocations(task=taskapp.wrong_error)[0].record()
    assert Status.RETRY not in [h.status for h in rec.history]


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_timeout_fails_the_invocation(
    mode: str, shared_url: str, app_on: Callable[[Any], Any], run_worker: Callable[..., Any]
) -> None:
    app_on(shared_url)
    run_worker(mode=mode)
    started = time.time()
    with pytest.raises(TaskTimeout, match=r"0\.5 s"):
        taskapp.too_slow().result(timeout=30)
    assert time.time() - started < 30  # stopped long before too_slow's own 10 s
    assert taskapp.add(1, 1).result(timeout=30) == 2  # the slot was freed


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_cancel_pending_and_running(
    mode: str, shared_url: str, app_on: Callable[[Any], Any], run_worker: Callable[..., Any]
) -> None:
    app_on(shared_url)
    running = taskapp.sleepy(30)
    run_worker(mode=mode)
    deadline = time.time() + 20
    while running.status is not Status.RUNNING and time.time() < deadline:
        time.sleep(0.02)
    assert running.status is Status.RUNNING
    pending = taskapp.sleepy(0.1)  # queued behind the only slot
    assert pending.cancel() is True
    assert running.cancel() is True
    with pytest.raises(InvocationCancelled):
        running.result(timeout=5)
    assert pending.status is Status.CANCELLED
    # the worker stops the cancelled run and its slot serves new work
    assert taskapp.add(2, 3).result(timeout=20) == 5


def test_depends_on(app_on: Callable[[Any], Any], run_worker: Callable[..., Any]) -> None:
    app_on(MemoryBackend())
    first = taskapp.add(1, 2)
    second = taskapp.add.with_options(depends_on=[first])(3, 4)
    assert second.status is Status.WAITING_DEPENDENCIES  # no worker yet: first cannot be done
    run_worker(concurrency=2)
    assert second.result(timeout=10) == 7
    statuses = [h.status for h in second.record().history]
    assert statuses[:3] == [Status.REGISTERED, Status.WAITING_DEPENDENCIES, Status.PENDING]
    bad = taskapp.wrong_error()
    dependent = taskapp.add.with_options(depends_on=[bad])(1, 1)
    with pytest.raises(DependencyFailed, match="wrong_error"):
        dependent.result(timeout=10)
