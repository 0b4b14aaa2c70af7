"""Ids and keys that land where a test wants them (the routing of kubenenc_redis.shards)."""

from __future__ import annotations

import zlib

from kubenenc.ids import InvocationId, new_invocation_id


def on_shard(shard: int, shards: int = 3) -> InvocationId:
    """A fresh id whose keyless root call lands on ``shard``."""
    while True:
        id = new_invocation_id()
        if zlib.crc32(id.encode()) % shards == shard:
            return id


def key_on(shard: int, shards: int = 3) -> str:
    """A running key whose calls land on ``shard`` (the part before ``#`` decides)."""
    n = 0
    while zlib.crc32(f"k{n}".encode()) % shards != shard:
        n += 1
    return f"k{n}#x"
