"""The claim over shards (kubenenc_redis.shards.ShardedBackend.claim) keeps one claim order:
a shard whose head is held back by a running limit does not hand out its later calls ahead
of another shard's older head."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubenenc.ids import InvocationId
from kubenenc.testing.helpers import W1, W2, new

from tests.rediscluster.placing import key_on, on_shard


@pytest.fixture
def sharded(rediscluster_backend: Any) -> Iterator[Any]:
    yield rediscluster_backend


def add_on(backend: Any, now: float, name: str, shard: int, keyed: bool) -> InvocationId:
    item = new(name, pool="p")
    if keyed:
        item = item._replace(running_key=key_on(shard), running_limit=1)
    else:
        item = item._replace(id=on_shard(shard))
    [res] = backend.register([item], now)
    assert backend.locate([res.id])[res.id] == shard
    return res.id


def ids(backend: Any, worker: Any, limit: int, now: float) -> list[InvocationId]:
    return [r.id for r in backend.claim("p", worker, limit, now)]


def test_a_held_back_head_does_not_let_its_shard_jump_the_queue(sharded: Any) -> None:
    first = add_on(sharded, 1.0, "first", 0, keyed=True)
    assert ids(sharded, W1, 1, 1.5) == [first]  # its key is now full
    blocked = add_on(sharded, 2.0, "blocked", 0, keyed=True)
    older = add_on(sharded, 3.0, "older", 1, keyed=False)
    newer = add_on(sharded, 4.0, "newer", 0, keyed=False)
    assert ids(sharded, W2, 1, 5.0) == [older]
    assert ids(sharded, W2, 1, 6.0) == [newer]
    assert ids(sharded, W2, 5, 7.0) == []  # blocked waits for its key
    assert blocked not in ids(sharded, W2, 5, 8.0)


def test_a_claim_fills_up_from_every_shard_in_order(sharded: Any) -> None:
    made = [add_on(sharded, 1.0 + k, f"c{k}", k % 3, keyed=False) for k in range(7)]
    assert ids(sharded, W1, 4, 10.0) == made[:4]
    assert ids(sharded, W1, 10, 11.0) == made[4:]
