"""Rate limits with several worker processes: the limit holds across all of them.

The achieved rate is printed by ``bench/rate_bench.py``; here only what holds on any
machine is asserted: counted from the start times the backend recorded (the claims' own
``now``), no one-second window holds more than the limit, and calls of other keys are not
queued behind the limited key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubenenc import Status

from tests.integration import taskapp
from tests.support import wait_until

HOT = 200  # 10 s at 20/s; bench/rate_bench.py runs 1,000


def most_in_one_window(starts: list[float], window: float = 1.0) -> int:
    """The largest number of ``starts`` in any half-open window ``[t, t + window)``."""
    starts = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while starts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_most_in_one_window_counts_half_open_windows() -> None:
    assert most_in_one_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert most_in_one_window([0.0, 1.0, 2.0]) == 1
    assert most_in_one_window([]) == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_rate_holds_over_four_worker_processes(
    shared_url: str, app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any]
) -> None:
    app = app_on(shared_url)
    for _ in range(4):
        spawn_worker(shared_url, "--mode", "thread", "--concurrency", "4")
    hot = taskapp.rated.parallelize([("hot", i) for i in range(HOT)])
    cold = taskapp.rated.parallelize([(f"cold-{i}", i) for i in range(40)])
    cold.results(timeout=60)
    # The other keys' calls ran while the hot key's queue was still far from drained.
    pending = app.counts(task=taskapp.rated).get(Status.PENDING, 0)
    assert pending > 0, "every hot call had started before the cold ones ended"
    hot.results(timeout=120)
    wait_until("every record final", lambda: app.counts() == {Status.SUCCESS: HOT + 40}, 30)
    starts = []
    for inv in hot:
        running = [t.at for t in inv.record().history if t.status is Status.RUNNING]
        assert len(running) == 1
        starts += running
    assert most_in_one_window(starts) <= 20
    assert most_in_one_window(starts) >= 2  # (the check itself sees starts)
