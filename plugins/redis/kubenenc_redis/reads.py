"""The :class:`~kubenenc.backends.browse.Browse` queries on Redis: bounded reads for people.

Two read-only scripts do the work on the server, each one round trip (key schema in
:mod:`kubenenc_redis.scripts`):

- ``browse`` walks an id index below the cursor's sequence (``P:failed`` for FAILED,
  ``P:ix:a:<app>`` for one app, else ``P:ix``), at most ``budget`` entries, and checks the
  fields the records keep apart (status, pool, worker, app, task from the call key, and
  the text in the display when both are ASCII) with one ``HMGET`` each; it returns the
  candidates' ids, sequences and display texts. The client checks the text again with
  Python's ``casefold`` (which Lua has not) and then reads whole records, a few at a time,
  until the page is full, checking the rest of the filter (creation time) on them.
- ``activity`` counts ``P:fin`` (final invocations by the time they ended) per bucket with
  ``ZCOUNT``, and reads the status (and app) of up to ``SAMPLE`` members of each bucket: a
  bucket with more finished work than that has its failures (and, with an app filter, its
  total) scaled from the sample, and says so.

- ``running_keys`` reads the running keys' slot counts (``P:running``) and, through the held
  sets of the holding workers, the running key of at most ``budget`` held invocations.

Children are kept by the register script in ``P:ch:<id>`` and failures by the finishing
steps in ``P:failed`` (see :mod:`kubenenc_redis.keys`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from kubenenc.backends.browse import (
    DEFAULT_BUDGET,
    ActivityBucket,
    InvocationFilter,
    InvocationPage,
    Relations,
    RunningKeys,
    cursor_of,
    matches,
    running_keys_of,
    seq_of,
)
from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status

from kubenenc_redis.keys import Keys
from kubenenc_redis.link import Caller

SAMPLE = 100
"""Finished invocations per activity bucket whose status is read; more are estimated."""
READ_AT_ONCE = 64
"""Whole records read per round trip while a page fills."""


class RedisBrowse:
    """The Browse queries, mixed into :class:`~kubenenc_redis.RedisBackend` (which
    supplies the client, the key builder, the retry loop and record reads)."""

    _r: redis.Redis
    _p: str
    _keys: Keys
    _caller: Caller

    def _read(self, ids: Sequence[str], history: bool) -> list[InvocationRecord | None]:
        raise NotImplementedError

    def _query(self, op: str, *args: str | int) -> list[Any]:
        """Run read-only script ``op`` (no request id: nothing to apply twice)."""
        argv = ["0", "0", "", *args]
        reply: list[Any] = self._caller.retrying(op, lambda: self._caller.script(op, argv))
        return reply

    def browse(
        self,
        where: InvocationFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = DEFAULT_BUDGET,
    ) -> InvocationPage:
        """See :meth:`kubenenc.backends.browse.Browse.browse`."""
        top = seq_of(cursor)
        index = "failed" if where.status is Status.FAILED else "app" if where.app else "all"
        text = where.text.casefold() if where.text is not None else ""
        # Checked here again: creation times, and the text where Lua could not (non-ASCII).
        later = not text.isascii() or where.since is not None or where.until is not None
        want = budget if later else limit
        reply = self._query(
            "browse", index, "" if top is None else str(top), budget, want,
            where.status or "", where.pool or "", where.worker or "", where.task or "",
            where.app or "", text if text.isascii() else "",
        )  # fmt: skip
        scanned, last = int(reply[0]), str(reply[1])
        rows = [(str(reply[i]), int(float(reply[i + 1])), str(reply[i + 2]))
                for i in range(2, len(reply), 3)]  # fmt: skip
        if where.text is not None:
            text = where.text.casefold()
            rows = [r for r in rows if text in r[2].casefold()]
        items: list[InvocationRecord] = []
        for start in range(0, len(rows), READ_AT_ONCE):
            chunk = rows[start : start + READ_AT_ONCE]
            recs = self._read([r[0] for r in chunk], False)
            for (_, seq, _), rec in zip(chunk, recs, strict=True):
                if rec is not None and matches(rec, where):
                    items.append(rec)
                    if len(items) >= limit:
                        return InvocationPage(items, cursor_of(seq), scanned)
        if len(rows) >= want and not later:  # stopped at the page, not at the end
            return InvocationPage(items, cursor_of(rows[-1][1]), scanned)
        more = scanned >= budget and last != ""
        return InvocationPage(items, cursor_of(int(float(last))) if more else None, scanned)

    def activity(
        self, *, since: float, width: float, buckets: int, app: str | None = None
    ) -> list[ActivityBucket]:
        """See :meth:`kubenenc.backends.browse.Browse.activity`."""
        reply = self._query(
            "activity", repr(float(since)), repr(float(width)), buckets, SAMPLE, app or ""
        )
        out: list[ActivityBucket] = []
        for b in range(buckets):
            count, sampled, of_app, failed = (int(x) for x in reply[4 * b : 4 * b + 4])
            start = since + b * width
            if sampled >= count:
                out.append(ActivityBucket(start, of_app if app else count, failed))
            else:
                scale = count / sampled
                total = round(of_app * scale) if app else count
                out.append(ActivityBucket(start, total, round(failed * scale), estimated=True))
        return out

    def relations(self, id: InvocationId, *, limit: int = 200) -> Relations | None:
        """See :meth:`kubenenc.backends.browse.Browse.relations`."""

        def read() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            pipe.hmget(self._keys.per("k_inv", id), ["s", "pa", "dn"])
            pipe.zrange(self._keys.per("k_ch", id), 0, limit)
            pipe.smembers(self._keys.per("k_tg", id))
            pipe.smembers(self._keys.per("k_wt", id))
            return pipe.execute()

        (status, parent, deps), children, targets, waiters = self._caller.retrying(
            "relations", read
        )
        if status is None:
            return None
        return Relations(
            parent=InvocationId(parent) if parent else None,
            children=[InvocationId(c) for c in children[:limit]],
            more_children=len(children) > limit,
            waits_on=sorted(InvocationId(t) for t in targets),
            waited_by=sorted(InvocationId(w) for w in waiters),
            depends_on=tuple(InvocationId(d) for d in deps.split(",") if d) if deps else (),
        )

    def running_keys(
        self, *, limit: int = 100, holders: int = 10, budget: int = DEFAULT_BUDGET
    ) -> RunningKeys:
        """See :meth:`kubenenc.backends.browse.KeyUsage.running_keys` (one read-only script,
        so counts and holders are one snapshot)."""
        reply = [str(x) for x in self._query("running_keys", budget)]
        n = int(reply[0])
        counts = [(reply[1 + 2 * i], int(reply[2 + 2 * i])) for i in range(n)]
        rest = reply[1 + 2 * n :]
        held = [(InvocationId(rest[i]), rest[i + 1]) for i in range(0, len(rest), 2)]
        return running_keys_of(counts, held, limit, holders)
