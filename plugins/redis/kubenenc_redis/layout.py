"""How many shards a sharded app's data is spread over, recorded in the data itself.

Where an invocation of a ``redis+cluster://`` app lives is computed from ``N`` (see
:mod:`kubenenc_redis.shards`), so a process that opened the data with another ``N`` would
look for every call in the wrong place, and write new ones where the others never look. The
layout record (``{prefix:meta}``, :func:`kubenenc_redis.keys.meta_key`, a hash in a slot of
its own) says ``shards``: the first process to open an app's data writes its ``N`` there
(``HSETNX``, so two first openers agree), and every later one compares: a different ``N``
is refused with a :class:`~kubenenc.errors.ConfigurationError` that names the right one.
While a reshard (:mod:`kubenenc_redis.reshard`) moves the data, the record also holds
``to`` (the new ``N``) and ``run`` (that reshard's id), and the data is refused to every
``N`` until the reshard finished: a process that wrote into either layout meanwhile could
leave calls where no one would find them.

Data written before this record existed gets the ``N`` of the first process that opens it
after the upgrade; open it with the ``N`` it was written with.
"""

from __future__ import annotations

from typing import Any

from kubenenc.errors import ConfigurationError

from kubenenc_redis.cluster import ClusterURL, SlotMap
from kubenenc_redis.keys import meta_key

SHARDS = "shards"
TO = "to"
RUN = "run"


def read_layout(slots: SlotMap, prefix: str) -> dict[str, str]:
    """The layout record of ``prefix`` (empty when none was written)."""
    found: dict[Any, Any] = slots.run(lambda c: c.hgetall(meta_key(prefix)))
    return {str(k): str(v) for k, v in found.items()}


def check_layout(slots: SlotMap, url: ClusterURL) -> None:
    """Refuse ``url`` when its ``shards`` is not the data's (or a reshard is under way);
    record it when the data has no layout record yet (see the module docstring)."""
    meta = read_layout(slots, url.prefix)
    if not meta:
        key = meta_key(url.prefix)
        if slots.run(lambda c: c.hsetnx(key, SHARDS, str(url.shards))):
            return
        meta = read_layout(slots, url.prefix)
    refuse_layout(meta, url)


def refuse_layout(meta: dict[str, str], url: ClusterURL) -> None:
    """ConfigurationError saying what to do when ``meta`` does not allow ``url``."""
    if TO in meta:
        raise ConfigurationError(
            f"Redis Cluster at {url.shown}: a reshard of this app's data from "
            f"{meta.get(SHARDS, '?')} to {meta[TO]} shards is under way or was interrupted; "
            f"finish it with `kubenenc reshard --backend URL --to {meta[TO]}` (it resumes "
            f"where it stopped), then use shards={meta[TO]}"
        )
    stored = meta.get(SHARDS)
    if stored is not None and stored != str(url.shards):
        raise ConfigurationError(
            f"Redis Cluster at {url.shown}: this app's data (prefix {url.prefix!r}) is spread "
            f"over {stored} shards but the URL says shards={url.shards}: use shards={stored}, "
            f"or move the data first with `kubenenc reshard --backend URL --to {url.shards}`"
        )


def write_layout(
    slots: SlotMap, prefix: str, fields: dict[str, str], drop: tuple[str, ...] = ()
) -> None:
    """Set ``fields`` of the layout record and delete ``drop``, in one transaction."""
    key = meta_key(prefix)

    def write(c: Any) -> None:
        pipe = c.pipeline(transaction=True)
        if fields:
            pipe.hset(key, mapping=fields)
        if drop:
            pipe.hdel(key, *drop)
        pipe.execute()

    slots.run(write)


__all__ = ["RUN", "SHARDS", "TO", "check_layout", "read_layout", "refuse_layout", "write_layout"]
