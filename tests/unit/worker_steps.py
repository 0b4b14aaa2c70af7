"""Driving a Worker one step at a time, for the unit tests of its loop (not a test module)."""

from __future__ import annotations

import time
from collections.abc import Callable

from kubenenc_worker.worker import Worker


def steps_until(worker: Worker, done: Callable[[], bool], limit: float = 10.0) -> None:
    """Run ``worker``'s loop steps until ``done()``; fail after ``limit`` seconds (a bound
    for a loaded machine, not a timing)."""
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, "not reached in time"
        # What the loop does around each step: note the time; after an idle wait, poll.
        worker._tick = time.monotonic()
        if not worker._step():
            time.sleep(0.0005)
            worker._drained = False
