"""Process mode keeps the children that pauses needed warm, and lets the extra ones go."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubenenc_worker.executors.processes import ProcessExecutor

from tests.integration import taskapp


def pids(executor: ProcessExecutor) -> set[int]:
    return {child.process.pid for child in executor._all if child.process.pid is not None}


def settle(executor: ProcessExecutor) -> None:
    """Until no spare child is still being started (one may be, right after a pause)."""
    deadline = time.monotonic() + 30
    while executor._spares_starting and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.timeout(120)
def test_children_of_a_chain_serve_the_next_chain_then_idle_ones_stop(
    app_on: Callable[[Any], Any], run_worker: Callable[..., Any], tmp_path: Path
) -> None:
    app_on(f"sqlite:///{tmp_path / 'children.db'}")
    worker = run_worker(mode="process", concurrency=1)
    executor = worker.executor
    assert isinstance(executor, ProcessExecutor)
    assert taskapp.chain(6).result(timeout=60) == 6
    settle(executor)
    first = pids(executor)
    assert len(first) >= 7  # one per level: every level was paused at once
    assert taskapp.chain(6).result(timeout=60) == 6
    assert pids(executor) <= first  # no new child: the idle ones were reused
    executor._idle_keep = -1.0  # every idle child is now past its time
    executor.poll()
    assert len(executor._idle) == 1  # the one warm child of the one slot stays
