"""The optional :class:`kubenenc.backends.contract.Admin` role on MongoDB: bulk selection and
deletion for ``kubenenc cancel``/``retry``/``purge``.

Kept apart from :mod:`kubenenc_mongodb.backend`. Selection reads through ``query`` (the
replica for non-final invocations, the collections for final ones), all matches at once.
Deletion is one step whose redo is the retention sweep's ``forget`` (see
:mod:`kubenenc_mongodb.layout`): the documents go, and the replica's counts of final
invocations stay exact on every server.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status

from kubenenc_mongodb.link import Link

_ALL = 1 << 62
"""``query``'s limit when every match is wanted."""


class _Host(Protocol):
    """What these functions use of :class:`kubenenc_mongodb.backend.MongoBackend`."""

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]: ...

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]: ...

    @property
    def _link(self) -> Link: ...

    def _from_replica(self, what: str, read: Callable[[Any], Any]) -> Any: ...


def select(
    self: _Host,
    *,
    app: str | None = None,
    task: str | None = None,
    statuses: Collection[Status] | None = None,
    updated_before: float | None = None,
) -> list[InvocationId]:
    """See :class:`kubenenc.backends.contract.Admin`."""
    found: list[InvocationRecord] = []
    for status in list(Status) if statuses is None else list(statuses):
        found += self.query(app=app, task=task, status=status, limit=_ALL)
    if updated_before is not None:
        found = [r for r in found if r.updated_at < updated_before]
    found.sort(key=lambda r: (r.created_at, r.id))
    return [r.id for r in found]


def oldest_pending(self: _Host, pool: str) -> float | None:
    """See :class:`kubenenc.backends.contract.Admin`: from this process's replica, which
    holds every invocation that is not final, brought up to the last committed step."""

    def oldest(replica: Any) -> float | None:
        return min(
            (
                r.created_at
                for r in replica.records.values()
                if r.status is Status.PENDING and r.pool == pool
            ),
            default=None,
        )

    found: float | None = self._from_replica("oldest_pending", oldest)
    return found


def purge(self: _Host, ids: Sequence[InvocationId]) -> int:
    """See :class:`kubenenc.backends.contract.Admin`."""
    unique = list(dict.fromkeys(ids))
    deleted = 0
    for start in range(0, len(unique), 1000):
        recs = self.get_many(unique[start : start + 1000])
        docs = [
            {"_id": r.id, "app": r.app, "pool": r.pool, "status": r.status.value}
            for r in recs
            if r is not None and r.is_final  # final records never change again
        ]
        if not docs:
            continue

        def forget(txn: Any, docs: list[dict[str, Any]] = docs) -> int:
            txn.forgotten.extend(docs)
            return len(docs)

        deleted += int(self._link.step("purge", forget))
    return deleted
