"""The :class:`~kubenenc.backends.browse.Browse` queries on MongoDB and FerretDB (for the
dashboard), over the Records side in :mod:`kubenenc_mongodb.reads`.

Both layouts (see :mod:`kubenenc_mongodb.layout`) are read the way ``query`` reads them: on
MongoDB every document is current, so one ``find`` over ``<p>_invocations``; on FerretDB
the non-final invocations come from this process's replica (brought up to the last
committed step) and the final ones from ``<p>_final``. Every read returns a bounded number
of documents (``budget`` below the cursor, children among ``budget`` after their parent).

Children are found by the parent's id in the record's JSON text (``"parent":"<id>"``)
among the ``DEFAULT_BUDGET`` invocations registered after it (and, on FerretDB, among the
non-final ones in the replica): the documents keep no field of their own for the parent
(each field costs every write on FerretDB), and children are registered while their parent
runs, right after it. Sequence numbers are not dense (``version * SEQ_STRIDE + n``), so
every budget counts documents, not a range of numbers.

Running keys and their holders are the replica's (slots held by key, and the held
invocations, both kept current from the log on either layout): no collection is read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from kubenenc.backends.browse import (
    DEFAULT_BUDGET,
    ActivityBucket,
    InvocationFilter,
    InvocationPage,
    Relations,
    RunningKeys,
    bucket_index,
    cursor_of,
    matches,
    running_keys_of,
    seq_of,
)
from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status
from pymongo.collection import Collection

from kubenenc_mongodb.link import Conn
from kubenenc_mongodb.reads import MongoRecords
from kubenenc_mongodb.replica import Replica, doc_to_record

T = TypeVar("T")
Doc = dict[str, Any]
_FINAL = ["SUCCESS", "FAILED", "CANCELLED"]


def _where(where: InvocationFilter, top: int | None) -> Doc:
    """The part of ``where`` the documents' own fields answer, below sequence ``top``."""
    found: Doc = {} if top is None else {"seq": {"$lt": top}}
    for name, value in (
        ("app", where.app), ("task", where.task), ("pool", where.pool),
        ("worker", where.worker), ("status", where.status),
    ):  # fmt: skip
        if value is not None:
            found[name] = str(value)
    return found


def _own_fields_match(rec: InvocationRecord, where: InvocationFilter) -> bool:
    """What :func:`_where` asks of documents, asked of a record (the replica's)."""
    return matches(rec, InvocationFilter(where.app, where.task, where.status, where.pool,
                                         where.worker))  # fmt: skip


class MongoBrowse(MongoRecords):
    """The Browse queries over the Records side (:class:`~kubenenc_mongodb.MongoBackend`
    builds on this class)."""

    @property
    def _shards(self) -> int:
        return self._link.shards

    def _retrying(self, what: str, fn: Callable[[Conn], T]) -> T:
        return self._link.retrying(what, fn)

    def _collections(self) -> list[Collection[Doc]]:
        """Where final invocations are (every invocation, on MongoDB)."""

        def pick(conn: Any) -> list[Collection[Doc]]:
            final = conn.layout.final
            return [final] if final is not None else [conn.layout.shards[0]]

        return self._retrying("browse", pick)

    def browse(
        self,
        where: InvocationFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = DEFAULT_BUDGET,
    ) -> InvocationPage:
        """See :meth:`kubenenc.backends.browse.Browse.browse`.

        Sequence numbers here are not dense (``version * SEQ_STRIDE + n``), so the budget
        counts documents: the newest ``budget`` below the cursor that match the filters the
        documents' own fields answer (every filter but text and creation time, which are
        checked here; without those, the first ``limit`` are the page).
        """
        top = seq_of(cursor)
        later = where.text is not None or where.since is not None or where.until is not None
        cap = budget if later else limit
        query = _where(where, top)
        found: list[tuple[int, InvocationRecord]] = []
        for coll in self._collections():
            docs = self._retrying(
                "browse",
                lambda c, coll=coll: list(coll.find(query).sort("seq", -1).limit(cap)),  # type: ignore[misc]
            )
            found.extend((int(d["seq"]), doc_to_record(d)) for d in docs)
        if self._shards > 1:

            def live(r: Replica) -> list[tuple[int, InvocationRecord]]:
                out = []
                for id, rec in r.records.items():
                    seq = r.seq.get(id, 0)
                    if (top is None or seq < top) and _own_fields_match(rec, where):
                        out.append((seq, replace(rec, history=[])))
                return out

            found.extend(self._from_replica("browse", live))
        found.sort(key=lambda pair: pair[0], reverse=True)
        examined = found[:cap]
        items: list[InvocationRecord] = []
        for seq, rec in examined:
            if matches(rec, where):
                rec.history = []
                items.append(rec)
                if len(items) >= limit:
                    return InvocationPage(items, cursor_of(seq), len(examined))
        more = len(found) >= cap and examined
        return InvocationPage(items, cursor_of(examined[-1][0]) if more else None, len(examined))

    def activity(
        self, *, since: float, width: float, buckets: int, app: str | None = None
    ) -> list[ActivityBucket]:
        """See :meth:`kubenenc.backends.browse.Browse.activity` (``final_at`` of the final
        documents, which the retention index keeps sorted on MongoDB)."""
        start = dt.datetime.fromtimestamp(since, dt.UTC)
        end = dt.datetime.fromtimestamp(since + width * buckets, dt.UTC)
        query: Doc = {"status": {"$in": _FINAL}, "final_at": {"$gte": start, "$lt": end}}
        if app is not None:
            query["app"] = app
        finished, failed = [0] * buckets, [0] * buckets
        for coll in self._collections():
            docs = self._retrying(
                "activity",
                lambda c, coll=coll: list(coll.find(query, {"final_at": 1, "status": 1})),  # type: ignore[misc]
            )
            for d in docs:
                at = d["final_at"]
                if at.tzinfo is None:
                    at = at.replace(tzinfo=dt.UTC)
                i = bucket_index(at.timestamp(), since, width, buckets)
                if i is not None:
                    finished[i] += 1
                    failed[i] += d["status"] == "FAILED"
        return [ActivityBucket(since + i * width, finished[i], failed[i]) for i in range(buckets)]

    def _record_and_seq(self, id: InvocationId) -> tuple[InvocationRecord, int] | None:
        if self._shards > 1:

            def live(r: Replica) -> tuple[InvocationRecord, int] | None:
                rec = r.records.get(id)
                return None if rec is None else (replace(rec, history=[]), r.seq.get(id, 0))

            found = self._from_replica("relations", live)
            if found is not None:
                return found
        for coll in self._collections():
            doc = self._retrying("relations", lambda c, coll=coll: coll.find_one({"_id": id}))  # type: ignore[misc]
            if doc is not None:
                return doc_to_record(doc), int(doc.get("seq", 0))
        return None

    def relations(self, id: InvocationId, *, limit: int = 200) -> Relations | None:
        """See :meth:`kubenenc.backends.browse.Browse.relations`."""
        found = self._record_and_seq(id)
        if found is None:
            return None
        rec, seq = found
        # Children are registered after their parent: look at the DEFAULT_BUDGET documents
        # that follow it, and let the server keep those whose JSON names it as the parent.
        pipeline: list[Doc] = [
            {"$match": {"seq": {"$gt": seq}}},
            {"$sort": {"seq": 1}},
            {"$limit": DEFAULT_BUDGET},
            {"$match": {"j": {"$regex": re.escape(f'"parent":"{id}"')}}},
            {"$limit": limit + 1},
            {"$project": {"_id": 1, "seq": 1}},
        ]
        children: list[tuple[int, InvocationId]] = []
        for coll in self._collections():
            docs = self._retrying(
                "relations",
                lambda c, coll=coll: list(coll.aggregate(pipeline)),  # type: ignore[misc]
            )
            children.extend((int(d["seq"]), InvocationId(d["_id"])) for d in docs)

        def edges(r: Replica) -> tuple[list[tuple[int, InvocationId]], set[str], set[str]]:
            live = [(r.seq.get(i, 0), i) for i, c in r.records.items() if c.parent == id]
            return live, set(r.targets.get(id, ())), set(r.waiters.get(id, ()))

        live, targets, waiters = self._from_replica("relations", edges)
        if self._shards > 1:
            children.extend(live)
        ordered = [i for _, i in sorted(set(children))]
        return Relations(
            parent=rec.parent,
            children=ordered[:limit],
            more_children=len(ordered) > limit,
            waits_on=sorted(InvocationId(t) for t in targets),
            waited_by=sorted(InvocationId(w) for w in waiters),
            depends_on=rec.depends_on,
        )

    def running_keys(
        self, *, limit: int = 100, holders: int = 10, budget: int = DEFAULT_BUDGET
    ) -> RunningKeys:
        """See :meth:`kubenenc.backends.browse.KeyUsage.running_keys`."""

        def read(r: Replica) -> RunningKeys:
            held: list[tuple[InvocationId, str | None]] = []
            for id in sorted(r.held)[:budget]:
                rec = r.records.get(id)
                if rec is not None and rec.status is Status.RUNNING:
                    held.append((id, rec.running_key))
            return running_keys_of(list(r.running.items()), held, limit, holders)

        return self._from_replica("running_keys", read)
