"""Each MongoDB-protocol server honours the versioned writes of a step (issue 13).

Every document a step rewrites carries the step's version (``_v``); an upsert matches only
``{_id, _v <= v}`` (or no ``_v``), so when a later step wrote the document the server tries
an insert, refuses it with a duplicate key error (E11000), and ``write_versioned`` skips
exactly that write. FerretDB and mongo-java-server report that differently (see
``layout.write_versioned``): here the same writes run on both and the documents are checked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubenenc_mongodb.layout import VERSION, not_after, versioned_upsert, write_versioned
from pymongo import DeleteOne, MongoClient
from pymongo.collection import Collection

pytestmark = pytest.mark.mongodb


@pytest.fixture(params=["ferretdb", "mongojava"])
def coll(request: pytest.FixtureRequest) -> Iterator[Collection[dict[str, object]]]:
    """An empty collection on each kind of server."""
    url = request.getfixturevalue(
        {"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[request.param]
    )
    client: MongoClient[dict[str, object]] = MongoClient(url)
    found = client["versioned"]["docs"]
    found.drop()
    yield found
    client.close()


def _docs(coll: Collection[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {d["_id"]: d for d in coll.find()}


def test_a_step_never_overwrites_or_deletes_what_a_later_step_wrote(
    coll: Collection[dict[str, object]],
) -> None:
    coll.insert_many([
        {"_id": "newer", "n": 9, VERSION: 9},
        {"_id": "older", "n": 1, VERSION: 1},
        {"_id": "same", "n": 5, VERSION: 5},
        {"_id": "unversioned", "n": 0},
        {"_id": "newer-kept", "n": 9, VERSION: 9},
        {"_id": "older-gone", "n": 1, VERSION: 1},
    ])  # fmt: skip
    v = 5
    write_versioned(
        coll,
        [
            versioned_upsert("newer", {"n": v, VERSION: v}, v),  # refused: E11000
            versioned_upsert("older", {"n": v, VERSION: v}, v),
            versioned_upsert("same", {"n": v + 100, VERSION: v}, v),  # a replay of step v
            versioned_upsert("unversioned", {"n": v, VERSION: v}, v),
            versioned_upsert("missing", {"n": v, VERSION: v}, v),
            DeleteOne({"_id": "newer-kept", **not_after(v)}),
            DeleteOne({"_id": "older-gone", **not_after(v)}),
        ],
    )
    assert _docs(coll) == {
        "newer": {"_id": "newer", "n": 9, VERSION: 9},
        "older": {"_id": "older", "n": v, VERSION: v},
        "same": {"_id": "same", "n": v + 100, VERSION: v},
        "unversioned": {"_id": "unversioned", "n": v, VERSION: v},
        "missing": {"_id": "missing", "n": v, VERSION: v},
        "newer-kept": {"_id": "newer-kept", "n": 9, VERSION: 9},
    }


def test_writes_after_a_refused_one_in_the_same_batch_still_run(
    coll: Collection[dict[str, object]],
) -> None:
    """FerretDB stops an unordered batch at its first error: the writes after it must run
    all the same."""
    coll.insert_one({"_id": "b", "n": 9, VERSION: 9})
    write_versioned(
        coll, [versioned_upsert(i, {"n": 2, VERSION: 2}, 2) for i in ("a", "b", "c", "d")]
    )
    assert {i: d["n"] for i, d in _docs(coll).items()} == {"a": 2, "b": 9, "c": 2, "d": 2}
