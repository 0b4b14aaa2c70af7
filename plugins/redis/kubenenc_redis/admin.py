"""The optional :class:`kubenenc.backends.contract.Admin` role on Redis: bulk selection and
deletion for ``kubenenc cancel``/``retry``/``purge``.

Kept apart from :mod:`kubenenc_redis.backend` (the hot path) and from its scripts: selection
walks the id index (``P:ix`` or ``P:ix:a:<app>``, by sequence) a page at a time and reads
three fields of each record in one pipeline; deletion is one small script of its own that
removes a final record with everything the retention sweep removes (record, edges,
dependents, ``done`` list, index entries), so the two stay the same. As after retention, the
counters in ``P:counts`` keep counting purged invocations.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kubenenc.ids import InvocationId
from kubenenc.status import FINAL, Status

if TYPE_CHECKING:
    import redis

PAGE = 1000

PURGE = r"""
-- KEYS[1] the prefix P; ARGV ids. Deletes each final record as the retention sweep does.
local P = KEYS[1]
local US = '\31'
local FINAL = __FINAL__
local deleted = 0
for _, id in ipairs(ARGV) do
  local k = P .. ':inv:' .. id
  local fields = redis.call('HMGET', k, 's', 'a')
  local s, app = fields[1], fields[2]
  if s and FINAL[s] then
    redis.call('DEL', k, P .. ':tg:' .. id, P .. ':wt:' .. id, P .. ':dep:' .. id,
               P .. ':done:' .. id)
    redis.call('ZREM', P .. ':ix', id)
    if app then
      redis.call('ZREM', P .. ':ix:a:' .. app, id)
      redis.call('ZREM', P .. ':fin', id .. US .. app)
    end
    deleted = deleted + 1
  end
end
return deleted
""".replace("__FINAL__", "{" + ", ".join(f"{s.value}=true" for s in sorted(FINAL)) + "}")


OLDEST = r"""
-- KEYS[1] the prefix P; ARGV[1] a pool. created_at of its oldest PENDING invocation: the
-- least sequence among the members of its ready queue, its delayed queue and its parked
-- queues (one per running key), whose characters 21-35 are the sequence, then the id.
local P, pool = KEYS[1], ARGV[1]
local US = '\31'
local best, best_m = nil, nil
local function scan(key)
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local sq = tonumber(string.sub(m, 21, 35))
    if sq and (best == nil or sq < best) then best, best_m = sq, m end
  end
end
scan(P .. ':q:' .. pool)
scan(P .. ':dl:' .. pool)
for _, k in ipairs(redis.call('HKEYS', P .. ':running')) do
  scan(P .. ':park:' .. pool .. US .. k)
end
if not best_m then return false end
local d = redis.call('HGET', P .. ':inv:' .. string.sub(best_m, 36), 'd')
if not d then return false end
return cjson.encode(cjson.decode(d).created_at)
"""


class _Host(Protocol):
    """What these functions use of :class:`kubenenc_redis.backend.RedisBackend`."""

    _r: redis.Redis
    _p: str

    def _key(self, *parts: str) -> str: ...

    def _retrying(self, op: str, call: Any) -> Any: ...


def select(
    self: _Host,
    *,
    app: str | None = None,
    task: str | None = None,
    statuses: Collection[Status] | None = None,
    updated_before: float | None = None,
) -> list[InvocationId]:
    """See :class:`kubenenc.backends.contract.Admin`."""
    index = self._key("ix", "a", app) if app is not None else self._key("ix")
    wanted = None if statuses is None else {s.value for s in statuses}
    prefix = None if task is None else task + "#"
    out: list[InvocationId] = []
    start = 0
    while True:
        ids = self._retrying("select", lambda s=start: self._r.zrange(index, s, s + PAGE - 1))
        if not ids:
            return out
        texts = [i.decode() if isinstance(i, bytes) else i for i in ids]
        pipe = self._r.pipeline(transaction=False)
        for id in texts:
            pipe.hmget(self._key("inv", id), "s", "u", "ck")
        rows = self._retrying("select", pipe.execute)
        for id, (s, u, ck) in zip(texts, rows, strict=True):
            if s is None:
                continue  # deleted meanwhile
            if wanted is not None and _text(s) not in wanted:
                continue
            if prefix is not None and not _text(ck or b"").startswith(prefix):
                continue
            if updated_before is not None and float(_text(u or b"0")) >= updated_before:
                continue
            out.append(InvocationId(id))
        start += PAGE


def oldest_pending(self: _Host, pool: str) -> float | None:
    """See :class:`kubenenc.backends.contract.Admin` (reads the pool's queues, not the
    finished invocations)."""
    script = self._r.register_script(OLDEST)
    found = self._retrying("oldest_pending", lambda: script(keys=[self._p], args=[pool]))
    return None if found is None else float(_text(found))


def purge(self: _Host, ids: Sequence[InvocationId]) -> int:
    """See :class:`kubenenc.backends.contract.Admin`."""
    script = self._r.register_script(PURGE)
    unique = list(dict.fromkeys(ids))
    deleted = 0
    for start in range(0, len(unique), PAGE):
        chunk = unique[start : start + PAGE]
        deleted += int(self._retrying("purge", lambda c=chunk: script(keys=[self._p], args=c)))
    return deleted


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
