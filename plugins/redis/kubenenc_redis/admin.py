"""The optional :class:`kubenenc.backends.contract.Admin` role on Redis: bulk selection and
deletion for ``kubenenc cancel``/``retry``/``purge``.

Kept apart from :mod:`kubenenc_redis.backend` (the hot path): selection walks the id index
(``P:ix`` or ``P:ix:a:<app>``, by sequence) a page at a time and reads three fields of each
record in one pipeline; deletion is the ``purge`` script (``lua/purge.lua``), which removes a
final record with everything the retention sweep removes (record, edges, dependents,
``done`` list, index entries), so the two stay the same. As after retention, the
counters in ``P:counts`` keep counting purged invocations.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kubenenc.ids import InvocationId
from kubenenc.status import Status

if TYPE_CHECKING:
    import redis

    from kubenenc_redis.keys import Keys
    from kubenenc_redis.link import Caller
    from kubenenc_redis.readahead import ReadAhead

PAGE = 1000


class _Host(Protocol):
    """What these functions use of :class:`kubenenc_redis.backend.RedisBackend`."""

    _r: redis.Redis
    _keys: Keys
    _caller: Caller
    _ahead: ReadAhead


def select(
    self: _Host,
    *,
    app: str | None = None,
    task: str | None = None,
    statuses: Collection[Status] | None = None,
    updated_before: float | None = None,
) -> list[InvocationId]:
    """See :class:`kubenenc.backends.contract.Admin`."""
    index = self._keys.per("k_ixa", app) if app is not None else self._keys.fixed("K_IX")
    wanted = None if statuses is None else {s.value for s in statuses}
    prefix = None if task is None else task + "#"
    out: list[InvocationId] = []
    start = 0
    while True:
        texts = _page(self, index, start)
        if not texts:
            return out
        pipe = self._r.pipeline(transaction=False)
        for id in texts:
            pipe.hmget(self._keys.per("k_inv", id), "s", "u", "ck")
        rows = self._caller.retrying("select", pipe.execute)
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
    found, _ = self._caller.run("oldest_pending", time.time(), pool)
    return None if found is None else float(_text(found))


def purge(self: _Host, ids: Sequence[InvocationId]) -> int:
    """See :class:`kubenenc.backends.contract.Admin`."""
    unique = list(dict.fromkeys(ids))
    deleted = 0
    for start in range(0, len(unique), PAGE):
        found, _ = self._caller.run("purge", time.time(), *unique[start : start + PAGE])
        deleted += int(found)
    if deleted:  # a deleted id may be registered again: no kept read answers for it
        self._ahead.forgotten()
    return deleted


def _page(host: _Host, index: str, start: int) -> list[str]:
    """Ids ``start`` to ``start + PAGE - 1`` of ``index``, by sequence."""
    found: list[Any] = host._caller.retrying(
        "select", lambda: list(host._r.zrange(index, start, start + PAGE - 1))
    )
    return [_text(i) for i in found]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
