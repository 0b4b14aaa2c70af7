"""A registration that runs again after it was committed changes nothing (MongoDB).

A MongoDB step can run again after its commit: its answer is lost when settling an
uncertain commit (or catching up after it) faults, and the caller's retry computes the step
anew over a state that already holds it. For a registration that meant writing the same ids
again: a call that had run and ended SUCCESS was reset to a fresh PENDING one in the log
(so in the replicas that follow it) while ``<p>_final`` kept it SUCCESS (so a replica loaded
from the collections took it as final). A waiter paused on it was then resumed by a worker
whose replica was reloaded while the waiter's own process read the call as PENDING: the
chaos failure ``invocation ... is PENDING, not final`` (tests/chaos, kill -9 on FerretDB).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubenenc.records import Outcome, OutcomeKind, RegisterKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, claim_ids, new, record
from kubenenc_mongodb import MongoBackend

pytestmark = pytest.mark.mongodb


@pytest.fixture(params=["ferretdb", "mongojava"])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each kind of server (FerretDB layout, MongoDB layout)."""
    return str(
        request.getfixturevalue(
            {"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[request.param]
        )
    )


@pytest.fixture
def backend(url: str) -> Iterator[MongoBackend]:
    b = MongoBackend.from_url(url)
    yield b
    b.close()


def test_registering_an_existing_id_again_leaves_the_call_as_it_is(
    backend: MongoBackend, url: str
) -> None:
    item = new("body", "1", pool="p")
    [first] = backend.register([item], 1.0)
    assert first.kind is RegisterKind.CREATED
    assert claim_ids(backend, W1, 10, 2.0, pool="p") == [item.id]
    assert backend.finish([Outcome(item.id, OutcomeKind.SUCCESS, result="2")], W1, 3.0) == [True]

    # The same registration again, as a step re-run after its commit computes it.
    [again] = backend.register([item], 4.0)
    assert again.kind is RegisterKind.CREATED
    assert again.id == item.id

    # This process follows the log; a new one loads the collections: both see it SUCCESS.
    assert record(backend, item.id).status is Status.SUCCESS
    assert backend.get_many([item.id])[0].status is Status.SUCCESS  # type: ignore[union-attr]
    fresh = MongoBackend.from_url(url)
    try:
        assert record(fresh, item.id).status is Status.SUCCESS
        assert fresh.get_many([item.id])[0].status is Status.SUCCESS  # type: ignore[union-attr]
        assert claim_ids(fresh, W1, 10, 5.0, pool="p") == []
    finally:
        fresh.close()
    assert claim_ids(backend, W1, 10, 5.0, pool="p") == []


def test_registering_a_running_id_again_keeps_it_running(backend: MongoBackend) -> None:
    item = new("body", "2", pool="p", running_key="k", running_limit=1)
    backend.register([item], 1.0)
    assert claim_ids(backend, W1, 10, 2.0, pool="p") == [item.id]
    [again] = backend.register([item], 3.0)
    assert again.id == item.id
    rec = record(backend, item.id)
    assert rec.status is Status.RUNNING
    assert rec.worker == W1
    assert backend.finish([Outcome(item.id, OutcomeKind.SUCCESS, result="4")], W1, 4.0) == [True]
    assert record(backend, item.id).status is Status.SUCCESS
