"""Records: exact counts by task (``counts(task=...)`` and ``counts_by_task``)."""

from __future__ import annotations

from collections.abc import Mapping

from kubenenc.backends.contract import Backend
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, add, claim_ids, failed, nonzero, pause, running, succeed


def _nonzero_by_task(
    found: Mapping[str, Mapping[Status, int]],
) -> dict[str, dict[Status, int]]:
    out = {task: nonzero(by_status) for task, by_status in found.items()}
    return {task: by_status for task, by_status in out.items() if by_status}


def test_counts_by_task_are_exact_through_every_transition(backend: Backend) -> None:
    assert nonzero(backend.counts(task="tests.f")) == {}
    assert _nonzero_by_task(backend.counts_by_task()) == {}
    # Arguments with '#' in them: the task is not confused with the rest of the call key.
    f_pending = [add(backend, float(i), "f", f"a#{i}", app="shop") for i in range(4)]
    g_pending = [add(backend, 5.0 + i, "g", str(i), app="shop") for i in range(3)]
    add(backend, 9.0, "f", "gpu", app="shop", pool="gpu")
    add(backend, 9.5, "f", "other-app", app="other")
    waiter = running(backend, 10.0, "h", "w", app="shop", pool="solo")
    assert claim_ids(backend, W1, 3, 11.0) == [*f_pending[:3]]
    succeed(backend, f_pending[0])
    failed(backend, f_pending[1])
    retry = Outcome(f_pending[2], OutcomeKind.RETRY, retry_at=100.0, reason="again")
    assert backend.finish([retry], W1, 21.0) == [True]
    assert backend.cancel(g_pending[0], 22.0)
    pause(backend, waiter, [g_pending[1]], now=23.0)

    assert nonzero(backend.counts(task="tests.f")) == {
        Status.PENDING: 4,  # one never claimed, one retrying, gpu, other app
        Status.SUCCESS: 1,
        Status.FAILED: 1,
    }
    assert nonzero(backend.counts(app="shop", task="tests.f")) == {
        Status.PENDING: 3,
        Status.SUCCESS: 1,
        Status.FAILED: 1,
    }
    assert nonzero(backend.counts(pool="gpu", task="tests.f")) == {Status.PENDING: 1}
    assert nonzero(backend.counts(task="tests.g")) == {Status.PENDING: 2, Status.CANCELLED: 1}
    assert nonzero(backend.counts(task="tests.h")) == {Status.PAUSED: 1}
    assert nonzero(backend.counts(task="tests.nope")) == {}

    by_task = _nonzero_by_task(backend.counts_by_task(app="shop", pool="default"))
    assert by_task == {
        "tests.f": {Status.PENDING: 2, Status.SUCCESS: 1, Status.FAILED: 1},
        "tests.g": {Status.PENDING: 2, Status.CANCELLED: 1},
    }
    everything = _nonzero_by_task(backend.counts_by_task())
    assert set(everything) == {"tests.f", "tests.g", "tests.h"}
    # The tasks' numbers add up to the plain counts.
    total: dict[Status, int] = {}
    for by_status in everything.values():
        for status, n in by_status.items():
            total[status] = total.get(status, 0) + n
    assert total == nonzero(backend.counts())
    assert _nonzero_by_task(backend.counts_by_task(pool="gpu")) == {"tests.f": {Status.PENDING: 1}}
    assert _nonzero_by_task(backend.counts_by_task(app="nope")) == {}
