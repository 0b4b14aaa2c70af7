"""Results read ahead, per thread: the guess that makes reading a backlog of results one by
one cost about one round trip per window of them instead of one per result.

A caller that submits calls one by one and then reads each result in order (or reads the
results of a queue drained while it waited) asks for one result at a time, and each
``result()`` would be one round trip however far ahead the workers are. This keeps, per
thread, the order in which that thread registered its invocations. When a wait finds its
result final before it asked (the thread is reading behind the workers), the backend reads
the next ids of that order in the same round trip and keeps those that are final; the next
waits on them are then answered here, with no round trip.

A final record does not change, so a kept one is what a read would return, for as long as
the record exists: like the record a single-id ``wait_final`` hands to the next ``get``, a
kept record answers only for ``KEEP_FINAL`` seconds (a purge or an expiry may remove it
meanwhile), and only in the thread that read it. A final call runs again under the same id
only once its record was deleted (registering an existing id writes nothing) and the id
registered anew, so a kept record no longer answers once this thread registers its id
(:meth:`ReadAhead.registered`) or this process deletes records (:meth:`ReadAhead.forgotten`:
a purge, a retention sweep): it would show the old run's result for the new run. A
deletion and a new registration both made by other processes within ``KEEP_FINAL`` of the
read cannot be seen without a round trip, as for any record read a moment ago. Memory: at
most ``ORDER_LIMIT`` ids and one window of records per thread that registers or waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from kubenenc.records import InvocationRecord

WINDOW = 32
"""How many of the following ids one read-ahead asks for (with the one waited on)."""

ORDER_LIMIT = 8192
"""Ids of a thread's registration order kept; past it the older half is forgotten."""

KEEP_FINAL = 1.0
"""Seconds a final record read ahead (or read by a wait) answers a later wait or ``get``."""


class ReadAhead:
    """Per thread: the ids it registered, in order, and the final records read ahead."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.epoch = 0
        """Bumped by :meth:`forgotten`; a record kept under an older one answers nothing."""

    def registered(self, ids: Sequence[str]) -> None:
        """Note ids this thread just registered (in call order)."""
        local = self._local
        order: list[str] | None = getattr(local, "order", None)
        if order is None:
            order = local.order = []
            local.pos = {}
            local.gone = {}
        pos: dict[str, int] = local.pos
        kept = getattr(local, "kept", None)
        if kept:  # registered again (after a deletion: a new run): the kept read is stale
            for id in ids:
                kept.pop(id, None)
        if len(ids) > ORDER_LIMIT // 2:  # a large batch: only its tail can be read ahead
            ids = ids[-(ORDER_LIMIT // 2) :]
        if len(order) + len(ids) > ORDER_LIMIT:
            del order[: len(order) // 2]
            pos.clear()
            local.gone = {}  # positions moved
            pos.update((id, k) for k, id in enumerate(order))
        base = len(order)
        order.extend(ids)
        for k, id in enumerate(ids, base):
            pos[id] = k

    def following(self, id: str) -> list[str]:
        """Of the ``WINDOW`` ids this thread registered next after ``id`` (none if it did
        not register ``id``), those not waited on yet (see :meth:`waited`) nor kept. So a
        thread that reads its results backwards or twice reads nothing ahead."""
        pos: dict[str, int] | None = getattr(self._local, "pos", None)
        at = None if pos is None else pos.get(id, self._local.gone.get(id))
        if at is None or pos is None:
            return []
        kept = self._kept()
        order: list[str] = self._local.order
        return [x for x in order[at + 1 : at + 1 + WINDOW] if x in pos and x not in kept]

    def waited(self, id: str) -> None:
        """Note that this thread waits on ``id`` now: no later read-ahead asks for it."""
        pos: dict[str, int] | None = getattr(self._local, "pos", None)
        if pos is not None:
            at = pos.pop(id, None)
            if at is not None:
                self._local.gone = {id: at}  # where it was, for the following() of it

    def keep(self, records: Sequence[InvocationRecord | None], epoch: int | None = None) -> None:
        """Keep the final ones of ``records`` (read just now) for later waits (beside those
        kept before, which are dropped once stale: about two windows per thread);
        ``epoch``: :attr:`epoch` as it was before the read (default: now)."""
        now, epoch = time.monotonic(), self.epoch if epoch is None else epoch
        kept = self._kept()
        if len(kept) > WINDOW:
            for id in [id for id, (_, t, e) in kept.items() if now - t >= KEEP_FINAL or e != epoch]:
                del kept[id]
        kept.update((r.id, (r, now, epoch)) for r in records if r is not None and r.is_final)

    def take(self, id: str) -> InvocationRecord | None:
        """The final record of ``id`` read ahead by this thread, if still fresh (once): read
        less than ``KEEP_FINAL`` ago, and no deletion by this process since."""
        kept = self._kept()
        found = kept.pop(id, None)
        if found is None or time.monotonic() - found[1] >= KEEP_FINAL or found[2] != self.epoch:
            return None
        return found[0]

    def forgotten(self) -> None:
        """This process deleted final records (any thread): a deleted id may be registered
        again and run anew, so no record kept before answers (in any thread)."""
        self.epoch += 1  # a bump lost to a race with another still changes it

    def _kept(self) -> dict[str, tuple[InvocationRecord, float, int]]:
        kept: dict[str, tuple[InvocationRecord, float, int]] | None = getattr(
            self._local, "kept", None
        )
        if kept is None:
            kept = self._local.kept = {}
        return kept
