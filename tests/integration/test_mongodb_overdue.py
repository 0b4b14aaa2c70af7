"""The MongoDB Overdue role answers from a replica that follows the other processes' steps.

The enforcer runs in the operator, not in the worker that claimed the work: its backend's
replica must catch up from the log before it answers, or a run that went overdue after the
replica was loaded would never be failed (and one that ended would be failed anyway).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, add, claim_ids
from kubenenc_mongodb import MongoBackend

pytestmark = pytest.mark.mongodb


@pytest.fixture(params=["ferretdb", "mongojava"])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each kind of server (FerretDB layout, MongoDB layout)."""
    name = {"ferretdb": "mongodb_caller_url", "mongojava": "mongojava_caller_url"}
    return str(request.getfixturevalue(name[request.param]))


@pytest.fixture
def pair(url: str) -> Iterator[tuple[MongoBackend, MongoBackend]]:
    """A worker's backend and the enforcer's, each with its own replica."""
    worker, enforcer = MongoBackend.from_url(url), MongoBackend.from_url(url)
    yield worker, enforcer
    worker.close()
    enforcer.close()


def test_overdue_sees_what_another_process_claimed_and_finished(
    pair: tuple[MongoBackend, MongoBackend],
) -> None:
    worker, enforcer = pair
    assert enforcer.overdue(100.0, 0.0) == []  # its replica is loaded now, empty
    late = add(worker, 1.0, "late", timeout=5.0)
    assert claim_ids(worker, W1, 1, 10.0) == [late]
    assert enforcer.overdue(15.0, 1.0) == []
    [found] = enforcer.overdue(17.0, 1.0)
    assert (found.id, found.status, found.worker, found.updated_at) == (
        late, Status.RUNNING, W1, 10.0,
    )  # fmt: skip
    assert worker.finish([Outcome(late, OutcomeKind.SUCCESS, "1")], W1, 18.0) == [True]
    assert enforcer.overdue(100.0, 0.0) == []
