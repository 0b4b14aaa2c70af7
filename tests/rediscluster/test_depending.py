"""Declared dependencies across shards (kubenenc_redis.depending): dependents on another
shard than their dependencies, the interleavings of a dependency's finish with the
dependent's registration, and a settle cut short by a dying process (mended by recover)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubenenc.ids import InvocationId
from kubenenc.records import NewInvocation, Outcome, OutcomeKind, PauseKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, beat, failed, new, record, start, succeed

from tests.rediscluster.placing import key_on, on_shard

DEPENDENCY_FAILED = "kubenenc.errors.DependencyFailed"


@pytest.fixture
def sharded(rediscluster_backend: Any) -> Iterator[Any]:
    yield rediscluster_backend


def root(backend: Any, shard: int, name: str) -> InvocationId:
    """A keyless root call registered on ``shard``, alone in its pool."""
    item = new(name, pool=f"p-{name}")._replace(id=on_shard(shard))
    [res] = backend.register([item], 1.0)
    assert res.id == item.id
    return item.id


def dependent(shard: int, name: str, *deps: InvocationId) -> NewInvocation:
    """A call landing on ``shard`` (by its running key) that depends on ``deps``."""
    return new(name, pool=f"p-{name}", running_key=key_on(shard), running_limit=5,
               depends_on=deps)  # fmt: skip


def where(backend: Any, id: InvocationId) -> int:
    return int(backend.locate([id])[id])


def outbox(backend: Any, shard: int) -> set[str]:
    s = backend.shards[shard]
    return set(s._r.smembers(s._keys.fixed("K_XOUT")))


def dependents(backend: Any) -> list[str]:
    return [id for id, _ in backend.crossing.dependents()]


def test_the_test_places_calls_where_it_wants(sharded: Any) -> None:
    a = root(sharded, 0, "a")
    [res] = sharded.register([dependent(2, "d", a)], 2.0)
    assert (where(sharded, a), where(sharded, res.id)) == (0, 2)


def test_dependencies_on_two_other_shards(sharded: Any) -> None:
    a, b = root(sharded, 0, "a"), root(sharded, 1, "b")
    d = dependent(2, "d", a, b)
    sharded.register([d], 2.0)
    assert record(sharded, d.id).status is Status.WAITING_DEPENDENCIES
    assert dependents(sharded) == [d.id]  # in the coordination slot while it waits
    start(sharded, a, W1, 3.0)
    succeed(sharded, a, W1, 4.0)
    assert record(sharded, d.id).status is Status.WAITING_DEPENDENCIES
    start(sharded, b, W1, 5.0)
    succeed(sharded, b, W1, 6.0)
    rec = record(sharded, d.id)
    assert rec.status is Status.PENDING
    assert [h.status for h in rec.history] == [
        Status.REGISTERED, Status.WAITING_DEPENDENCIES, Status.PENDING,
    ]  # fmt: skip
    assert dependents(sharded) == []
    assert all(outbox(sharded, i) == set() for i in range(3))


def test_a_failure_cascades_over_three_shards(sharded: Any) -> None:
    a = root(sharded, 0, "a")
    d = dependent(1, "d", a)
    e = dependent(2, "e", d.id)
    sharded.register([d, e], 2.0)  # one batch: e's dependency is registered first
    assert record(sharded, e.id).status is Status.WAITING_DEPENDENCIES
    start(sharded, a, W1, 3.0)
    failed(sharded, a, W1, 4.0)
    for id, names in ((d.id, a), (e.id, d.id)):
        rec = record(sharded, id)
        assert rec.status is Status.FAILED
        assert rec.error is not None and rec.error.type == DEPENDENCY_FAILED
        assert names in rec.error.message
    assert dependents(sharded) == []


def _between_depend_and_register(
    sharded: Any, monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]
) -> None:
    """Run ``meanwhile`` after the dependency's shard recorded the dependent (step 3) and
    before the dependent is registered (step 4)."""
    from kubenenc_redis import depending

    real = depending.prepare

    def prepare(*args: Any) -> bool:
        open = real(*args)
        meanwhile()
        return open

    monkeypatch.setattr(depending, "prepare", prepare)


def test_dependency_succeeds_between_depend_and_register(
    sharded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The news reaches the dependent's shard before the dependent does: it waits there
    and the registration reads it, so the dependent is PENDING at once."""
    a = root(sharded, 0, "a")
    start(sharded, a, W1, 2.0)
    _between_depend_and_register(sharded, monkeypatch, lambda: succeed(sharded, a, W1, 3.0))
    d = dependent(1, "d", a)
    sharded.register([d], 3.0)
    assert record(sharded, a).status is Status.SUCCESS
    assert record(sharded, d.id).status is Status.PENDING
    assert dependents(sharded) == []
    assert outbox(sharded, 0) == set()


def test_dependency_fails_between_depend_and_register(
    sharded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = root(sharded, 0, "a")
    _between_depend_and_register(sharded, monkeypatch, lambda: sharded.cancel(a, 3.0))
    d = dependent(1, "d", a)
    sharded.register([d], 3.0)
    rec = record(sharded, d.id)
    assert rec.status is Status.FAILED
    assert rec.error is not None and rec.error.type == DEPENDENCY_FAILED and a in rec.error.message
    assert dependents(sharded) == []


@pytest.mark.parametrize("kind", [OutcomeKind.SUCCESS, OutcomeKind.FAILED])
def test_worker_dies_between_finish_and_settle(sharded: Any, kind: OutcomeKind) -> None:
    """The dependency's shard finished it (the news in its outbox) but the process died
    before telling the dependent: the dependent still waits, and ``recover`` delivers the
    news; delivering it once more changes nothing."""
    a = root(sharded, 0, "a")
    d = dependent(1, "d", a)
    sharded.register([d], 2.0)
    start(sharded, a, W1, 3.0)
    assert sharded.shards[0].finish([Outcome(a, kind, result="1")], W1, 4.0) == [True]
    news = outbox(sharded, 0)
    assert len(news) == 1
    assert record(sharded, d.id).status is Status.WAITING_DEPENDENCIES
    beat(sharded, W1, 5.0)
    sharded.recover(5.0, 100.0, 3)
    want = Status.PENDING if kind is OutcomeKind.SUCCESS else Status.FAILED
    rec = record(sharded, d.id)
    assert rec.status is want
    assert outbox(sharded, 0) == set()
    assert dependents(sharded) == []
    s0 = sharded.shards[0]
    s0._r.sadd(s0._keys.fixed("K_XOUT"), *news)  # a second process settling the same news
    sharded.recover(6.0, 100.0, 3)
    assert record(sharded, d.id) == rec
    assert outbox(sharded, 0) == set()


def test_a_loop_through_a_dependency_on_another_shard(sharded: Any) -> None:
    """a (shard 0) waits on b (shard 1); d (shard 2) may start only after a ends; b waiting
    on d would close a loop: refused in the coordination slot."""
    a, b = root(sharded, 0, "a"), root(sharded, 1, "b")
    start(sharded, a, W1, 2.0)
    assert sharded.pause(a, W1, [b], 3.0).kind is PauseKind.PAUSED
    start(sharded, b, W2, 4.0)
    d = dependent(2, "d", a)
    sharded.register([d], 5.0)
    res = sharded.pause(b, W2, [d.id], 6.0)
    assert res.kind is PauseKind.CYCLE
    assert res.loop == ("d()", "a()", "b()", "d()")
    assert record(sharded, d.id).status is Status.WAITING_DEPENDENCIES
    assert record(sharded, b).status is Status.RUNNING


def test_no_loop_once_the_dependent_stopped_waiting(sharded: Any) -> None:
    """x waits on d, which waits for a to end. Once d is cancelled, a waiting on x is no
    loop (d no longer waits on a): d left the coordination slot with its cancel."""
    a, x = root(sharded, 0, "a"), root(sharded, 1, "x")
    start(sharded, a, W1, 2.0)
    start(sharded, x, W2, 2.0)
    d = dependent(2, "d", a)
    sharded.register([d], 3.0)
    assert sharded.pause(x, W2, [d.id], 4.0).kind is PauseKind.PAUSED
    assert sharded.pause(a, W1, [x], 5.0).kind is PauseKind.CYCLE  # a -> x -> d -> a
    assert sharded.cancel(d.id, 6.0)
    assert dependents(sharded) == []
    assert sharded.pause(a, W1, [x], 7.0).kind is PauseKind.PAUSED


def test_the_sweep_drops_a_dependent_never_registered(sharded: Any) -> None:
    """Steps 1-3 written, the process gone before the registration: the record in the
    coordination slot stays within the grace, then recover drops it."""
    from kubenenc_redis import depending

    a = root(sharded, 0, "a")
    d = dependent(1, "d", a)
    assert depending.prepare(sharded, d, 1, 2.0) is True
    grace = sharded.crossing.grace
    beat(sharded, W1, 2.0 + grace + 1)
    sharded.recover(2.0 + grace - 1, 10_000.0, 3)
    assert dependents(sharded) == [d.id]
    sharded.recover(2.0 + grace + 1, 10_000.0, 3)
    assert dependents(sharded) == []
    start(sharded, a, W1, 3.0)
    succeed(sharded, a, W1, 4.0)  # the news for the missing dependent is harmless
    assert outbox(sharded, 0) == set()
    assert sharded.get(d.id) is None


def test_keyed_dependent_on_another_shard_runs_after_its_dependency(sharded: Any) -> None:
    a = root(sharded, 0, "a")
    d = dependent(1, "d", a)
    sharded.register([d], 2.0)
    assert [r.id for r in sharded.claim("p-d", W2, 5, 3.0)] == []
    start(sharded, a, W1, 4.0)
    succeed(sharded, a, W1, 5.0)
    assert [r.id for r in sharded.claim("p-d", W2, 5, 6.0)] == [d.id]


def test_finish_racing_registration_on_threads(sharded: Any) -> None:
    """Real threads, many rounds: whichever of the dependency's finish and the dependent's
    registration runs first, the dependent ends PENDING and nothing is left behind."""
    import threading

    for round in range(12):
        a = root(sharded, round % 3, f"a{round}")
        start(sharded, a, W1, 2.0)
        d = dependent((round + 1) % 3, f"d{round}", a)
        gate = threading.Barrier(2)

        def finish(a: InvocationId = a) -> None:
            gate.wait()
            succeed(sharded, a, W1, 3.0)

        def register(d: NewInvocation = d) -> None:
            gate.wait()
            sharded.register([d], 3.0)

        threads = [threading.Thread(target=finish), threading.Thread(target=register)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert record(sharded, d.id).status is Status.PENDING, round
    assert dependents(sharded) == []
    assert all(outbox(sharded, i) == set() for i in range(3))
