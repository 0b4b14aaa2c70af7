"""Driving a Worker one step at a time, for the unit tests of its loop (not a test module)."""

from __future__ import annotations

import time
from collections.abc import Callable

from kubenenc_worker.worker import Worker

STUCK = 120.0
"""Seconds after which a wait counts as stuck: far above what any step takes on a loaded
machine. Tests assert what the worker read and did, not how long it took (a 10 s bound
failed under load)."""


def steps_until(worker: Worker, done: Callable[[], bool], limit: float = STUCK) -> None:
    """Run ``worker``'s loop steps until ``done()``; fail after ``limit`` seconds (a bound
    for a stuck loop, not a timing)."""
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, "stuck"
        # What the loop does around each step: note the time; after an idle wait, poll.
        worker._tick = time.monotonic()
        if not worker._step():
            time.sleep(0.0005)
            worker._drained = False
