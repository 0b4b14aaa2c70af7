"""The claim over shards (kubenenc_redis.shards.ShardedBackend.claim) keeps one claim order:
a shard whose head is held back by a running limit does not hand out its later calls ahead
of another shard's older head; calls another process put on a shard are found by a short
claim, and within the head hints' refresh bound by full ones (no shard starves)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubenenc.ids import InvocationId
from kubenenc.records import Outcome, OutcomeKind
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


def test_a_steady_stream_on_one_shard_does_not_starve_another_shards_older_calls(
    rediscluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls another process put on shard 1 are unknown to this process's head hints,
    while a stream of its own calls on shard 0 fills every claim on hints. They are read
    (and then claimed first, in order, being older) within REFRESH_CLAIMS claims."""
    from kubenenc_redis import hints
    from kubenenc_redis.shards import ShardedBackend

    monkeypatch.setattr(hints, "HINT_AGE", 3600.0)  # the claim count alone bounds it here
    mine, other = (
        ShardedBackend.from_url(rediscluster_url),
        ShardedBackend.from_url(rediscluster_url),
    )
    try:
        stream = key_on(0)

        def one(k: int) -> InvocationId:
            item = new(f"s{k}", pool="p")._replace(running_key=stream, running_limit=1)
            mine.register([item], 10.0 + k)
            [got] = mine.claim("p", W1, 1, 10.0 + k + 0.5)
            mine.finish([Outcome(got.id, OutcomeKind.SUCCESS, result="1")], W1, 10.0 + k + 0.6)
            return got.id

        one(-1)  # this process has read every shard's head: all empty
        old = [add_on(other, 2.0 + j, f"old{j}", 1, keyed=False) for j in range(3)]
        taken = [one(k) for k in range(hints.REFRESH_CLAIMS + 6)]
        assert set(old) <= set(taken)
        first = taken.index(old[0])
        assert first <= hints.REFRESH_CLAIMS
        assert taken[first : first + 3] == old  # once read, taken before the newer stream
    finally:
        mine.close()
        other.close()


def test_a_claim_short_on_hints_reads_every_head(rediscluster_url: str) -> None:
    """Another process's calls on another shard, unknown to this process's hints, are
    found by a claim that the hints cannot fill (short): it reads every head."""
    from kubenenc_redis.shards import ShardedBackend

    mine, other = (
        ShardedBackend.from_url(rediscluster_url),
        ShardedBackend.from_url(rediscluster_url),
    )
    try:
        assert ids(mine, W1, 5, 1.0) == []  # every head read: all empty
        own = add_on(mine, 3.0, "own", 0, keyed=False)
        theirs = add_on(other, 2.0, "theirs", 2, keyed=False)
        assert sorted(ids(mine, W1, 5, 4.0)) == sorted([theirs, own])
        late = add_on(other, 5.0, "late", 1, keyed=False)
        assert ids(mine, W1, 5, 6.0) == [late]  # its hints say empty: every head is read
    finally:
        mine.close()
        other.close()
