"""The :class:`~kubenenc.backends.browse.Browse` queries on Redis: bounded reads for people.

Two read-only scripts do the work on the server, each one round trip (key schema in
:mod:`kubenenc_redis.scripts`):

- ``browse`` walks an id index below the cursor's sequence (``P:ix:failed`` for FAILED,
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

Children are kept by the register script in ``P:ch:<id>``, by sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from kubenenc.backends.browse import (
    DEFAULT_BUDGET,
    ActivityBucket,
    InvocationFilter,
    InvocationPage,
    Relations,
    cursor_of,
    matches,
    seq_of,
)
from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status

T = TypeVar("T")

SAMPLE = 100
"""Finished invocations per activity bucket whose status is read; more are estimated."""
READ_AT_ONCE = 64
"""Whole records read per round trip while a page fills."""

_BROWSE = r"""
-- KEYS[1] the index; ARGV: P, top sequence (exclusive, '' for none), budget, want,
-- status, pool, worker, task, app, text ('' for any; text: casefolded ASCII, matched here
-- only against display texts that are ASCII, whose casefold is their lower case).
-- Returns {scanned, last_seq, id, seq, dp, ...}.
local P = ARGV[1]
local top = ARGV[2] == '' and '+inf' or ('(' .. ARGV[2])
local budget, want = tonumber(ARGV[3]), tonumber(ARGV[4])
local status, pool, worker, task = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local app, text = ARGV[9], ARGV[10]
local tl = #task
-- Read only the fields a filter needs (status and display always).
local F = {'s', 'dp'}
local function need(on, field)
  if not on then return nil end
  F[#F+1] = field
  return #F
end
local ip, iw, ia, ic = need(pool ~= '', 'p'), need(worker ~= '', 'w'), need(app ~= '', 'a'),
                       need(tl > 0, 'ck')
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], top, '-inf', 'WITHSCORES', 'LIMIT', 0, budget)
local out, found, scanned, last = {0, ''}, 0, 0, ''
for j = 1, #ids, 2 do
  scanned = scanned + 1
  last = ids[j + 1]
  local v = redis.call('HMGET', P .. ':inv:' .. ids[j], unpack(F))
  local dp = v[2] or ''
  if v[1] and (status == '' or v[1] == status) and (not ip or v[ip] == pool)
     and (not iw or v[iw] == worker) and (not ia or v[ia] == app)
     and (not ic or (v[ic] and string.sub(v[ic], 1, tl + 1) == task .. '#'))
     and (text == '' or string.find(dp, '[\128-\255]')
          or string.find(string.lower(dp), text, 1, true)) then
    out[#out+1] = ids[j]
    out[#out+1] = ids[j + 1]
    out[#out+1] = dp
    found = found + 1
    if found >= want then break end
  end
end
out[1] = scanned
out[2] = last
return out
"""

_ACTIVITY = r"""
-- KEYS[1] P:fin; ARGV: P, since, width, buckets, sample, app ('' for any). Returns per
-- bucket {count, sampled, of_app, failed} flattened.
local P = ARGV[1]
local since, width, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local sample, app = tonumber(ARGV[5]), ARGV[6]
local out = {}
for b = 0, n - 1 do
  local lo = string.format('%.17g', since + b * width)
  local hi = '(' .. string.format('%.17g', since + (b + 1) * width)
  local count = redis.call('ZCOUNT', KEYS[1], lo, hi)
  local of_app, failed, sampled = 0, 0, 0
  if count > 0 then
    local ms = redis.call('ZRANGEBYSCORE', KEYS[1], lo, hi, 'LIMIT', 0, sample)
    sampled = #ms
    for _, m in ipairs(ms) do
      local sep = string.find(m, '\31', 1, true)
      if app == '' or string.sub(m, sep + 1) == app then
        of_app = of_app + 1
        if redis.call('HGET', P .. ':inv:' .. string.sub(m, 1, sep - 1), 's') == 'FAILED' then
          failed = failed + 1
        end
      end
    end
  end
  out[#out+1] = count
  out[#out+1] = sampled
  out[#out+1] = of_app
  out[#out+1] = failed
end
return out
"""


class RedisBrowse:
    """The Browse queries, mixed into :class:`~kubenenc_redis.RedisBackend` (which
    supplies the client, the key builder, the retry loop and record reads)."""

    _r: redis.Redis
    _p: str

    def _key(self, *parts: str) -> str:
        raise NotImplementedError

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        raise NotImplementedError

    def _read(self, ids: Sequence[str], history: bool) -> list[InvocationRecord | None]:
        raise NotImplementedError

    def _browse_script(self, name: str, source: str) -> Any:
        scripts: dict[str, Any] = self.__dict__.setdefault("_browse_scripts", {})
        if name not in scripts:
            scripts[name] = self._r.register_script(source)
        return scripts[name]

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
        if where.status is Status.FAILED:
            index = self._key("ix", "failed")
        elif where.app is not None:
            index = self._key("ix", "a", where.app)
        else:
            index = self._key("ix")
        text = where.text.casefold() if where.text is not None else ""
        # Checked here again: creation times, and the text where Lua could not (non-ASCII).
        later = not text.isascii() or where.since is not None or where.until is not None
        want = budget if later else limit
        argv = [
            self._p, "" if top is None else str(top), budget, want,
            where.status or "", where.pool or "", where.worker or "", where.task or "",
            where.app or "", text if text.isascii() else "",
        ]  # fmt: skip
        script = self._browse_script("browse", _BROWSE)
        reply: list[Any] = self._retrying("browse", lambda: script(keys=[index], args=argv))
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
        argv = [self._p, repr(float(since)), repr(float(width)), buckets, SAMPLE, app or ""]
        script = self._browse_script("activity", _ACTIVITY)
        keys = [self._key("fin")]
        reply: list[Any] = self._retrying("activity", lambda: script(keys=keys, args=argv))
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
            pipe.hmget(self._key("inv", id), ["s", "pa", "dn"])
            pipe.zrange(self._key("ch", id), 0, limit)
            pipe.smembers(self._key("tg", id))
            pipe.smembers(self._key("wt", id))
            return pipe.execute()

        (status, parent, deps), children, targets, waiters = self._retrying("relations", read)
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
