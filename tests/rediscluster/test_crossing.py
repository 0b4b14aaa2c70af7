"""Waits across shards (kubenenc_redis.crossing): the interleavings of two pauses that
close a loop, and the sweep that mends a half-done pause."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator

import pytest
from kubenenc.ids import InvocationId, WorkerId, new_invocation_id
from kubenenc.records import PauseKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, beat, new, record, start


def on_shard(shard: int, shards: int = 3) -> InvocationId:
    """A fresh id whose keyless root call lands on ``shard`` (see kubenenc_redis.shards)."""
    while True:
        id = new_invocation_id()
        if zlib.crc32(id.encode()) % shards == shard:
            return id


@pytest.fixture
def sharded(rediscluster_backend: object) -> Iterator[object]:
    yield rediscluster_backend


def running_on(backend: object, shard: int, name: str, worker: WorkerId = W1) -> InvocationId:
    id = on_shard(shard)
    item = new(name, pool=f"p-{name}")._replace(id=id)
    [res] = backend.register([item], 1.0)  # type: ignore[attr-defined]
    assert res.id == id
    start(backend, id, worker, 2.0)  # type: ignore[arg-type]
    return id


def shard_of(backend: object, id: InvocationId) -> int:
    return backend.locate([id])[id]  # type: ignore[attr-defined,no-any-return]


def test_ids_land_where_the_test_wants(sharded: object) -> None:
    a, b = running_on(sharded, 0, "a"), running_on(sharded, 1, "b")
    assert (shard_of(sharded, a), shard_of(sharded, b)) == (0, 1)


def test_a_loop_across_shards_is_refused(sharded: object) -> None:
    a, b = running_on(sharded, 0, "a"), running_on(sharded, 1, "b")
    assert sharded.pause(a, W1, [b], 3.0).kind is PauseKind.PAUSED  # type: ignore[attr-defined]
    res = sharded.pause(b, W1, [a], 4.0)  # type: ignore[attr-defined]
    assert res.kind is PauseKind.CYCLE
    assert len(res.loop) == 3
    assert record(sharded, b).status is Status.RUNNING  # type: ignore[arg-type]
    assert record(sharded, b).waiters == 1  # type: ignore[arg-type]  # a waits on it


def test_both_coordination_steps_first_exactly_one_refused(sharded: object) -> None:
    """The interleaving that matters: both pauses write step 1 before either pauses its
    waiter on its shard. The coordination slot orders them: the second is refused."""
    a, b = running_on(sharded, 0, "a"), running_on(sharded, 1, "b", W2)
    crossing = sharded.crossing  # type: ignore[attr-defined]
    first = crossing.pause(a, "tests.a#", "a()", 0, 3.0, 1000, [(b, "tests.b#", "b()")])
    second = crossing.pause(b, "tests.b#", "b()", 1, 3.0, 1000, [(a, "tests.a#", "a()")])
    assert first == (None, False, [])
    assert second[0] == a and second[1] is True  # a is in the chain: nothing to fail


def test_two_workers_pausing_into_a_loop_at_once(sharded: object) -> None:
    """Real threads, many rounds: each round exactly one of the two pauses is refused."""
    for round in range(15):
        a = running_on(sharded, round % 3, f"a{round}")
        b = running_on(sharded, (round + 1) % 3, f"b{round}", W2)
        gate = threading.Barrier(2)
        kinds: dict[str, PauseKind] = {}

        def wait(me: InvocationId, on: InvocationId, worker: WorkerId, tag: str) -> None:
            gate.wait()
            kinds[tag] = sharded.pause(me, worker, [on], 3.0).kind  # type: ignore[attr-defined]

        threads = [
            threading.Thread(target=wait, args=(a, b, W1, "a")),
            threading.Thread(target=wait, args=(b, a, W2, "b")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(kinds.values()) == sorted([PauseKind.PAUSED, PauseKind.CYCLE]), round


def test_the_sweep_mends_a_half_done_pause(sharded: object) -> None:
    """Step 1 written, the process gone before step 2: the waiter is still RUNNING. Within
    the grace the edge stays (a live pause may be between its steps); after it, recover
    drops it, and the loop it would have closed is allowed."""
    a, b = running_on(sharded, 0, "a"), running_on(sharded, 1, "b", W2)
    crossing = sharded.crossing  # type: ignore[attr-defined]
    assert crossing.pause(a, "tests.a#", "a()", 0, 3.0, 1000, [(b, "tests.b#", "b()")])[0] is None
    for w in (W1, W2):  # both workers alive: recover hands nothing back
        beat(sharded, w, 3.0 + crossing.grace)  # type: ignore[arg-type]
    sharded.recover(3.0 + crossing.grace - 1, 10_000.0, 5)  # type: ignore[attr-defined]
    assert crossing.targets([a]) == [[b]]
    sharded.recover(3.0 + crossing.grace + 1, 10_000.0, 5)  # type: ignore[attr-defined]
    assert crossing.targets([a]) == [[]]
    assert sharded.pause(b, W2, [a], 4.0).kind is PauseKind.PAUSED  # type: ignore[attr-defined]


def test_resume_waits_for_targets_on_other_shards(sharded: object) -> None:
    from kubenenc.testing.helpers import succeed

    a, b = running_on(sharded, 0, "a"), running_on(sharded, 1, "b", W2)
    assert sharded.pause(a, W1, [b], 3.0).kind is PauseKind.PAUSED  # type: ignore[attr-defined]
    assert sharded.resume([a], W1, 5, 4.0).resumed == ()  # type: ignore[attr-defined]
    succeed(sharded, b, W2, 5.0)  # type: ignore[arg-type]
    assert sharded.resume([a], W1, 5, 6.0).resumed == (a,)  # type: ignore[attr-defined]
    assert sharded.crossing.targets([a]) == [[]]  # type: ignore[attr-defined]
