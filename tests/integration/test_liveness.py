"""Liveness must not hand back live work (issue 13, item 6): a heartbeat write that stalls
for longer than the heartbeat timeout must not make the worker recover its own running
calls, and an outage that every worker saw must not make the first ``recover`` afterwards
hand back the whole fleet's work (nor count a loss towards WorkerLost).

The backend-side guards (the server's own clock, outages not counted as silence) are tested
in test_server_clock.py and, under load, in tests/chaos/test_outages.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubenenc.backends.memory import MemoryBackend
from kubenenc.ids import InvocationId
from kubenenc.records import WorkerInfo
from kubenenc.status import Status

from tests.integration import taskapp
from tests.support import wait_until


class Faulty(MemoryBackend):
    """A memory backend whose heartbeat writes can stall once (``stall``: a write that a
    client library retried for a while) and whose heartbeats and recoveries fail while
    ``down`` is set (an outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = threading.Event()
        self.down = threading.Event()

    def heartbeat(self, info: WorkerInfo) -> None:
        if self.down.is_set():
            raise ConnectionError("backend unreachable")
        if self.stall.is_set():
            self.stall.clear()
            time.sleep(1.5)
        super().heartbeat(info)

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        if self.down.is_set():
            raise ConnectionError("backend unreachable")
        return super().recover(now, heartbeat_timeout, max_lost)


@pytest.mark.timeout(60)
def test_a_stalled_heartbeat_does_not_hand_back_the_workers_own_work(
    app_on: Callable[[Any], Any], run_worker: Callable[..., Any], tmp_path: Path
) -> None:
    backend = Faulty()
    app_on(backend)
    run_worker(mode="thread", concurrency=2, heartbeat_timeout=1.0)
    marker = tmp_path / "runs"
    inv = taskapp.sleepy(3.0, str(marker))
    wait_until("the call runs", lambda: inv.status is Status.RUNNING, 30)
    backend.stall.set()
    assert inv.result(timeout=30) == "slept"
    assert inv.record().lost == 0
    assert len(marker.read_text().splitlines()) == 1  # one body, never a second copy


@pytest.mark.timeout(60)
def test_an_outage_every_worker_saw_hands_back_no_live_work(
    app_on: Callable[[Any], Any], run_worker: Callable[..., Any], tmp_path: Path
) -> None:
    backend = Faulty()
    app_on(backend)
    for _ in range(2):
        run_worker(mode="thread", concurrency=1, heartbeat_timeout=1.0)
    marker = tmp_path / "runs"
    invs = [taskapp.sleepy(4.0, str(marker)) for _ in range(2)]
    wait_until("both calls run", lambda: all(i.status is Status.RUNNING for i in invs), 30)
    backend.down.set()  # longer than the heartbeat timeout, for both workers alike
    time.sleep(2.0)
    backend.down.clear()
    assert [inv.result(timeout=30) for inv in invs] == ["slept", "slept"]
    assert [inv.record().lost for inv in invs] == [0, 0]
    assert len(marker.read_text().splitlines()) == 2  # one body each, never a second copy
