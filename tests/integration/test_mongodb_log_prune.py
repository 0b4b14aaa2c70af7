"""A MongoDB-backend reader is never fooled by a log prune caught half-way (issue 13).

Every 16 steps the committer forgets the oldest steps of the log with one ``delete_many`` of
their markers, and a server deletes those in no promised order. A process whose replica is
many steps behind (a task process that registered its calls, then waited) could find the
marker after its version already gone and its own still there, and take its replica for
current: a fan-out then read a call it waited on as PENDING long after the call had ended.
Here the half-done prune is set up by hand: after a real prune, the reader's own marker is
put back.
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
