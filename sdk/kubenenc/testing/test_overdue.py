"""The optional Overdue role: runs past their timeout, found from the work in flight only
(issue 13, item 10: the enforcer read every invocation kept for retention to find them)."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend, Overdue
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, add, claim_ids, pause, record

pytestmark = pytest.mark.kubenenc_role("Overdue")


def test_overdue_finds_only_running_calls_past_timeout_and_grace(backend: Backend) -> None:
    assert isinstance(backend, Overdue)
    late = add(backend, 1.0, "late", timeout=5.0)
    fresh = add(backend, 1.0, "fresh", timeout=5.0, pool="b")
    forever = add(backend, 1.0, "forever", pool="c")
    waiting = add(backend, 1.0, "waiting", timeout=5.0, pool="d")
    target = add(backend, 1.0, "target", pool="e")
    done = add(backend, 1.0, "done", timeout=5.0, pool="f")
    assert claim_ids(backend, W1, 1, 10.0) == [late]
    assert claim_ids(backend, W2, 1, 40.0, pool="b") == [fresh]
    assert claim_ids(backend, W1, 1, 10.0, pool="c") == [forever]
    assert claim_ids(backend, W2, 1, 10.0, pool="d") == [waiting]
    pause(backend, waiting, [target], W2, 11.0)  # paused time never counts
    assert claim_ids(backend, W1, 1, 10.0, pool="f") == [done]
    assert backend.finish([Outcome(done, OutcomeKind.SUCCESS, "1")], W1, 12.0) == [True]
    assert backend.overdue(45.0, 30.0) == []  # 35 s in: within timeout + grace
    found = backend.overdue(50.0, 30.0)
    assert [r.id for r in found] == [late]
    assert found[0].status is Status.RUNNING and found[0].worker == W1
    assert record(backend, late).status is Status.RUNNING  # only found, not failed
