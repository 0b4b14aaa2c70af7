"""A live worker gives back what the backend says it holds but it does not have: the state a
server leaves when a crash loses a finish or the reply to a claim (see
``Coordination.release_unheld``). Heartbeats cannot catch it, the worker being alive."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import Status

from tests.integration import taskapp
from tests.support import wait_until


@pytest.mark.timeout(60)
def test_a_live_worker_hands_back_a_call_it_never_got(
    shared_url: str, app_on: Callable[[Any], Any], run_worker: Callable[..., Any]
) -> None:
    app_on(shared_url)
    worker = run_worker("thread", 1)
    backend = taskapp.app.backend
    wait_until("the worker's first heartbeat", lambda: bool(backend.workers()), 20)
    # A call in a pool the worker does not serve, taken in its name: the backend now has it
    # RUNNING on a live worker that never received it, as after a claim whose reply was lost.
    inv = taskapp.add.with_options(pool="elsewhere")(2, 3)
    [rec] = backend.claim(taskapp.app.queue("elsewhere"), worker.id, 1, time.time())
    assert (rec.id, inv.status) == (inv.id, Status.RUNNING)

    wait_until("the call handed back", lambda: inv.status is Status.PENDING, 20)
    rec = backend.get(inv.id)
    assert rec is not None
    assert (rec.worker, rec.lost) == (None, 1)
    assert "lost" in rec.history[-1].reason
    # Given back, it runs where it belongs.
    run_worker("thread", 1, pool="elsewhere")
    assert inv.result(timeout=30) == 5


@pytest.mark.timeout(60)
def test_a_live_worker_keeps_what_it_holds(
    shared_url: str, app_on: Callable[[Any], Any], run_worker: Callable[..., Any], tmp_path: Any
) -> None:
    app_on(shared_url)
    marker = tmp_path / "starts"
    inv = taskapp.sleepy(1.5, str(marker))
    run_worker("thread", 1)
    assert inv.result(timeout=30) == "slept"
    rec = taskapp.app.backend.get(inv.id)
    assert rec is not None
    # Its many checks while it ran (every 0.2 s) gave back nothing it held.
    assert (rec.lost, rec.attempt, len(marker.read_text().split())) == (0, 0, 1)
