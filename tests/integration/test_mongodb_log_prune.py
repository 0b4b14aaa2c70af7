"""A MongoDB-backend reader is never fooled by a log prune caught half-way (issue 13).

Every 16 steps the committer forgets the oldest steps of the log with one ``delete_many`` of
their markers, and a server deletes those in no promised order. A process whose replica is
many steps behind (a task process that registered its calls, then waited) could find the
marker after its version already gone and its own still there, and take its replica for
current: a fan-out then read a call it waited on as PENDING long after the call had ended.
A reader that followed a few steps and then found the next marker gone was fooled the same
way. Here the half-done prune is set up by hand: after a real prune, the markers the reader
would still find are put back.
"""

from __future__ import annotations

import pytest
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, add, claim_ids
from kubenenc_mongodb.layout import LOG_KEEP, PRUNE_EVERY, log_id

from tests.servers.mongodb import caller_clock, opened

pytestmark = pytest.mark.mongodb


@pytest.mark.parametrize("server", ["ferretdb", "mongojava"])
def test_a_reader_far_behind_is_not_taken_for_current_by_a_half_done_prune(
    server: str, request: pytest.FixtureRequest
) -> None:
    url = caller_clock(
        request.getfixturevalue({"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[server])
    )
    with opened(url) as reader, opened(url) as other:
        id = add(reader, 1.0, "f", "x", pool="p")
        own = reader._conn().steps.replica.version
        markers = reader._conn().layout.steps
        mine = markers.find_one({"_id": log_id(own)})
        assert mine is not None
        assert claim_ids(other, W1, 1, 2.0, "p") == [id]
        other.finish([Outcome(id, OutcomeKind.SUCCESS, result="1")], W1, 3.0)
        # Enough steps for a prune to forget the reader's step and the ones after it.
        while other._conn().steps.replica.version < own + LOG_KEEP + 2 * PRUNE_EVERY:
            add(other, 4.0, "g", str(other._conn().steps.replica.version), pool="q")
        assert markers.find_one({"_id": log_id(own + 1)}) is None  # pruned
        markers.insert_one(mine)  # ... but the reader's own marker is not gone yet
        [rec] = reader.get_many([id])
        assert rec is not None
        assert rec.status is Status.SUCCESS


@pytest.mark.parametrize("server", ["ferretdb", "mongojava"])
def test_a_reader_that_follows_some_steps_into_a_half_done_prune_is_not_current(
    server: str, request: pytest.FixtureRequest
) -> None:
    """The same prune, met half-way *while following the log*: the reader applies the step
    after its own (its marker and redo still there), then finds the next marker gone. Having
    moved on is no proof of being current: it must still ask whether a later step exists
    (issue 13: the chaos runs showed a task process 67 steps behind reading its calls as
    PENDING this way)."""
    url = caller_clock(
        request.getfixturevalue({"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[server])
    )
    with opened(url) as reader, opened(url) as other:
        id = add(reader, 1.0, "f", "x", pool="p")
        own = reader._conn().steps.replica.version
        layout = reader._conn().layout
        assert claim_ids(other, W1, 1, 2.0, "p") == [id]
        # The step after the reader's (the claim), as the reader would find it mid-prune.
        marker = layout.steps.find_one({"_id": log_id(own + 1)})
        entry = layout.log(own + 1).find_one({"_id": log_id(own + 1)})
        assert marker is not None and entry is not None
        other.finish([Outcome(id, OutcomeKind.SUCCESS, result="1")], W1, 3.0)
        while other._conn().steps.replica.version < own + LOG_KEEP + 2 * PRUNE_EVERY:
            add(other, 4.0, "g", str(other._conn().steps.replica.version), pool="q")
        assert layout.steps.find_one({"_id": log_id(own + 2)}) is None  # pruned
        # The prune deletes markers first, in no promised order: the claim's marker (and,
        # as redo documents go after the markers, its redo) are still there.
        layout.steps.insert_one(marker)
        layout.log(own + 1).replace_one({"_id": entry["_id"]}, entry, upsert=True)
        [rec] = reader.get_many([id])
        assert rec is not None
        assert rec.status is Status.SUCCESS
