"""The coordination slot's sweep, run while a waiter is resumed (the duplicate run once seen
in the process-mode chain test on the cluster).

``recover`` (every worker's heartbeat thread) reads the recorded waiters, then each one's
node; a waiter resumed on the loop thread between those two reads had its node dropped.
The sweep took the missing shard for shard 0 and remembered it, so the waiter's finish went
to shard 0, found nothing there and was not applied; ``release_unheld`` then handed the
call back as lost and it ran a second time."""

from __future__ import annotations

from typing import Any

from kubenenc.records import PauseKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, beat, record, succeed

from tests.rediscluster.test_crossing import running_on, shard_of


def test_a_waiter_resumed_during_the_sweep_stays_on_its_shard(
    rediscluster_backend: Any,
) -> None:
    sharded = rediscluster_backend
    a, b = running_on(sharded, 1, "a"), running_on(sharded, 2, "b", W2)
    assert sharded.pause(a, W1, [b], 3.0).kind is PauseKind.PAUSED
    succeed(sharded, b, W2, 4.0)
    slot = sharded.crossing.slot
    read = slot._r.zrange
    resumed: list[object] = []

    def zrange_then_resume(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)
        if not resumed:  # the loop thread resumes ``a`` between the sweep's two reads
            resumed.append(sharded.resume([a], W1, 1, 5.0).resumed)
        return found

    slot._r.zrange = zrange_then_resume
    try:
        for w in (W1, W2):
            beat(sharded, w, 5.0)
        sharded.recover(5.0, 10_000.0, 5)
    finally:
        del slot._r.zrange
    assert resumed == [(a,)]
    assert shard_of(sharded, a) == 1
    assert record(sharded, a).status is Status.RUNNING
    assert sharded.finish([_success(a)], W1, 6.0) == [True]
    assert record(sharded, a).status is Status.SUCCESS


def _success(id: Any) -> Any:
    from kubenenc.records import Outcome, OutcomeKind

    return Outcome(id, OutcomeKind.SUCCESS, result="1")
