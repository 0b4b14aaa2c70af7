"""The Records side of the MongoDB backend: where each read finds its data.

On MongoDB every document is current: reads go to the collections. On FerretDB (the append
layout, see :mod:`kubenenc_mongodb.layout`) a change that leaves an invocation non-final
lives in the log only, so the records that are not final are read from this process's
replica, brought up to the last committed step from the log without the lock
(:meth:`~kubenenc_mongodb.steps.Steps.observe`; reloaded in a step that writes nothing when
it cannot be), and final ones from the replica's recent finals or from ``<p>_final``.
``wait_final`` polls the same way: FerretDB has no change streams.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status
from pymongo.collection import Collection

from kubenenc_mongodb.layout import Doc, Layout
from kubenenc_mongodb.link import Conn, Link
from kubenenc_mongodb.replica import Replica, doc_to_record
from kubenenc_mongodb.steps import FINAL_VALUES

T = TypeVar("T")

_FINAL = FINAL_VALUES
_WAIT_FIRST = 0.002
_WAIT_MAX = 0.01
"""``wait_final`` polls with back-off from :data:`_WAIT_FIRST` to this (seconds): a poll
costs one read of a tiny document, and a result is seen at most this late."""
_SCAN_ABOVE = 32
"""Above this many ids, one collection scan beats one ``_id`` lookup per id."""


class MongoRecords:
    """The read operations of the contract (the Records role and ``wait_final``) over one
    backend's :class:`~kubenenc_mongodb.link.Link`; :class:`~kubenenc_mongodb.MongoBackend`
    adds the rest of the contract."""

    def __init__(self, link: Link) -> None:
        self._link = link

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        """Polls with back-off (2 ms to 10 ms, see :data:`_WAIT_MAX`): FerretDB has no
        change streams. Each poll follows the step log into this process's replica, where
        every invocation that is not final is held, so a poll costs one read of a tiny marker
        (plus one per new step) however many ids are waited on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(dict.fromkeys(ids))
        delay = _WAIT_FIRST
        committed = False
        while True:
            if not committed:
                pending = self._from_replica(
                    "wait_final", functools.partial(_open, pending), relaxed=True,
                    enough=functools.partial(_all_final, pending),
                )  # fmt: skip
                if not pending and self._link.shards > 1:
                    # Readers take non-final records from the replica and final ones from
                    # it or from <p>_final, written before any later step could start.
                    return True
                if not pending:
                    # Final in the log; now wait until the documents say so too (the
                    # committing step may still be writing them), so reads that follow agree.
                    committed = True
                    pending = list(dict.fromkeys(ids))
            if committed:
                check = functools.partial(self._not_final, ids=pending)
                pending = self._link.retrying("wait_final", check)
            if not pending:
                return True
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(delay, left))
            else:
                time.sleep(delay)
            delay = min(delay * 1.5, _WAIT_MAX)

    def _from_replica(
        self,
        what: str,
        read: Callable[[Replica], T],
        *,
        relaxed: bool = False,
        enough: Callable[[Replica], bool] | None = None,
    ) -> T:
        """``read`` over this process's replica brought up to the last committed step: from
        the log without the lock, or, when it cannot be (never loaded, or too far behind),
        reloaded in a step that writes nothing. ``relaxed``, ``enough``: for polls, see
        :meth:`~kubenenc_mongodb.steps.Steps.observe`."""

        def attempt(conn: Conn) -> tuple[bool, T | None]:
            with conn.mutex:
                if conn.steps.observe(relaxed=relaxed, enough=enough):
                    return True, read(conn.replica)
            return False, None

        ok, found = self._link.retrying(what, attempt)
        if ok:
            return found  # type: ignore[return-value]
        return self._link.step(what, lambda t: read(t.r))

    def _not_final(self, conn: Conn, ids: list[InvocationId]) -> list[InvocationId]:
        """Those of ``ids`` whose stored document is not final (unknown ones count as final);
        one collection holds every invocation here (MongoDB)."""
        inv = conn.layout.shards[0]
        if len(ids) > _SCAN_ABOVE:
            where = {"_id": {"$in": ids}, "status": {"$nin": _FINAL}}
            open_ids = {d["_id"] for d in inv.find(where, {"_id": 1})}
            return [i for i in ids if i in open_ids]
        found = ((i, inv.find_one({"_id": i}, {"status": 1})) for i in ids)
        return [i for i, d in found if d is not None and d["status"] not in _FINAL]

    def _final_docs(self, conn: Conn, ids: list[InvocationId], projection: Doc | None) -> list[Doc]:
        """Documents of ``ids`` in ``<p>_final`` (FerretDB layout); above :data:`_SCAN_ABOVE`
        ids one scan instead of one ``_id`` lookup each."""
        final = conn.layout.final
        assert final is not None
        if len(ids) > _SCAN_ABOVE:
            return list(final.find({"_id": {"$in": ids}}, projection))
        found = (final.find_one({"_id": i}, projection) for i in ids)
        return [d for d in found if d is not None]

    # -- Records ----------------------------------------------------------------------------
    #
    # On MongoDB every document is current: read them. On FerretDB the records that are not
    # final are read from the replica (their changes may be in the log only) and final ones
    # from the replica's recent finals or from <p>_final.

    def get(self, id: InvocationId) -> InvocationRecord | None:
        if self._link.shards == 1:
            doc = self._link.retrying("get", lambda c: c.layout.shards[0].find_one({"_id": id}))
            return doc_to_record(doc) if doc is not None else None

        # A final record never changes: one this process saw in the log needs no read.
        recent = self._link.conn().replica.recent.get(id)
        if recent is not None:
            return doc_to_record(recent)

        def pick(r: Replica) -> InvocationRecord | Doc | None:
            rec = r.records.get(id)
            return replace(rec, history=list(rec.history)) if rec is not None else r.recent.get(id)

        found = self._from_replica("get", pick)
        if isinstance(found, InvocationRecord):
            return found
        if found is None:
            docs = self._link.retrying("get", lambda c: self._final_docs(c, [id], None))
            found = docs[0] if docs else None
        return doc_to_record(found) if found is not None else None

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        if not ids:
            return []
        unique = list(dict.fromkeys(ids))

        def pick(r: Replica) -> dict[str, InvocationRecord]:
            out: dict[str, InvocationRecord] = {}
            for i in unique:
                rec = r.records.get(i)
                if rec is not None:
                    out[i] = replace(rec, history=[])
                elif (doc := r.recent.get(i)) is not None:
                    out[i] = doc_to_record(doc)
            return out

        if self._link.shards > 1:
            recent = self._link.conn().replica.recent
            if all(i in recent for i in unique):  # final: they change no more
                return [doc_to_record(recent[i]) for i in ids]
            found = self._from_replica("get_many", pick)
            rest = [i for i in unique if i not in found]
            if rest:
                docs = self._link.retrying("get_many", lambda c: self._final_docs(c, rest, None))
                found.update((d["_id"], doc_to_record(d)) for d in docs)
            return [found.get(i) for i in ids]

        def read(conn: Conn) -> dict[str, InvocationRecord]:
            out: dict[str, InvocationRecord] = {}
            with conn.mutex:
                # Invocations that are not final are in the replica, as of the last step.
                if conn.steps.observe():
                    out = pick(conn.replica)
            rest = [i for i in unique if i not in out]
            inv = conn.layout.shards[0]
            if len(rest) > _SCAN_ABOVE:
                docs = list(inv.find({"_id": {"$in": rest}}, {"history": 0}))
            else:
                docs = [d for i in rest if (d := inv.find_one({"_id": i}, {"history": 0}))]
            out.update((d["_id"], doc_to_record(d)) for d in docs)
            return out

        found = self._link.retrying("get_many", read)
        return [found.get(i) for i in ids]

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        where: dict[str, Any] = {}
        for field, value in (("app", app), ("task", task), ("status", status)):
            if value is not None:
                where[field] = str(value)

        def read(coll: Collection[Doc]) -> Callable[[Conn], list[Doc]]:
            return lambda c: list(coll.find(where).sort("seq", -1).limit(limit))

        if self._link.shards == 1:
            docs = self._link.retrying("query", lambda c: read(c.layout.shards[0])(c))
            return [doc_to_record(d) for d in docs]

        def pick(r: Replica) -> list[tuple[int, InvocationRecord]]:
            return [
                (r.seq.get(i, 0), replace(rec, history=[]))
                for i, rec in r.records.items()
                if all(str(getattr(rec, k)) == v for k, v in where.items())
            ]

        found = self._from_replica("query", pick)
        finals = self._link.retrying("query", lambda c: read(_final_of(c.layout))(c))
        found.extend((int(d["seq"]), doc_to_record(d)) for d in finals)
        found.sort(key=lambda pair: pair[0], reverse=True)
        return [rec for _, rec in found[:limit]]

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        if task is not None:
            return dict(self.counts_by_task(app=app, pool=pool, task=task).get(task, {}))
        where: dict[str, Any] = {}
        if app is not None:
            where["app"] = app
        if pool is not None:
            where["pool"] = pool

        def read(conn: Conn) -> dict[Status, int] | None:
            if len(conn.layout.shards) > 1:
                # Several collections cannot be scanned at one instant: count the replica,
                # brought up to the last committed step (from the log, no lock needed).
                with conn.mutex:
                    if not conn.steps.observe():
                        return None
                    return conn.replica.counts(app, pool)
            rows = conn.layout.shards[0].aggregate(
                [{"$match": where}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
            )
            return {Status(r["_id"]): int(r["n"]) for r in rows}

        found = self._link.retrying("counts", read)
        if found is None:  # the replica needs a reload, which needs the lock
            return self._link.step("counts", lambda t: t.r.counts(app, pool))
        return found

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        """See :meth:`kubenenc.backends.contract.Records.counts_by_task`: one aggregation.

        With several collections, the non-final invocations come from the replica (brought
        up to the last committed step) and the final ones from one aggregation per
        collection: each part is exact, but they are not read at one instant.
        """
        where = {k: v for k, v in (("app", app), ("pool", pool), ("task", task)) if v is not None}
        group = {"_id": {"t": "$task", "s": "$status"}, "n": {"$sum": 1}}

        def add(out: dict[str, dict[Status, int]], task: str, status: Status, n: int) -> None:
            by_status = out.setdefault(task, {})
            by_status[status] = by_status.get(status, 0) + n

        def live(records: Iterable[InvocationRecord]) -> dict[str, dict[Status, int]]:
            out: dict[str, dict[Status, int]] = {}
            for r in records:
                if all(getattr(r, k) == v for k, v in where.items()):
                    add(out, r.task, r.status, 1)
            return out

        def read(conn: Conn) -> dict[str, dict[Status, int]] | None:
            match: dict[str, Any] = dict(where)
            out: dict[str, dict[Status, int]] = {}
            collections = conn.layout.shards
            if len(collections) > 1:
                with conn.mutex:
                    if not conn.steps.observe():
                        return None
                    out = live(conn.replica.records.values())
                match["status"] = {"$in": _FINAL}
                # Final documents live in their own collection in a layout that has one.
                final = getattr(conn.layout, "final", None)
                collections = [final] if final is not None else collections
            for inv in collections:
                for row in inv.aggregate([{"$match": match}, {"$group": group}]):
                    add(out, row["_id"]["t"], Status(row["_id"]["s"]), int(row["n"]))
            return out

        found = self._link.retrying("counts_by_task", read)
        if found is None:  # the replica needs a reload, which needs the lock
            self._link.step("counts_by_task", lambda t: None)
            found = self._link.retrying("counts_by_task", read)
        return found or {}


def _final_of(layout: Layout) -> Collection[Doc]:
    assert layout.final is not None
    return layout.final


def _open(ids: list[InvocationId], replica: Replica) -> list[InvocationId]:
    """Those of ``ids`` that are not final in ``replica``."""
    return [i for i in ids if i in replica.records]


def _all_final(ids: list[InvocationId], replica: Replica) -> bool:
    """Whether none of ``ids`` is held in ``replica`` as not final."""
    records = replica.records
    return not any(i in records for i in ids)
