"""``with app.batch():`` on each backend: calls return at once, are registered together in
call order, and the durability rule of :mod:`kubenenc.batching` holds."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import kubenenc
from kubenenc import batching
from kubenenc.backends.contract import Backend
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, claim_ids, nonzero

ONE_AT_A_TIME = kubenenc.ConcurrencyPolicy(running_limit=1, key=("a",))


def add(a: int, b: int) -> int:
    return a + b


def mul(a: int, b: int) -> int:
    return a * b


def square(a: int) -> int:
    return a * a


def stored(backend: Backend, *invs: kubenenc.Invocation[Any]) -> list[bool]:
    return [backend.get(inv.id) is not None for inv in invs]


def test_calls_are_registered_when_the_block_exits_in_call_order(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    with app.batch() as batch:
        invs = [task(i, 1) for i in range(5)]
        assert len(batch) == 5
        assert stored(backend, *invs) == [False] * 5
        assert nonzero(app.counts()) == {}
    assert stored(backend, *invs) == [True] * 5
    assert nonzero(app.counts()) == {Status.PENDING: 5}
    assert claim_ids(backend, W1, 10, 10.0, app.queue("default")) == [i.id for i in invs]
    rec = invs[3].record()
    assert app.serializer.loads(rec.args) == {"a": 3, "b": 1}
    assert rec.status is Status.RUNNING


def test_reading_a_handle_registers_every_call_made_so_far(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    with app.batch() as batch:
        first, second = task(1, 2), task(3, 4)
        assert second.status is Status.PENDING  # reading it registered both
        assert stored(backend, first, second) == [True, True]
        assert len(batch) == 0
        third = task(5, 6)
        [rec] = backend.claim(app.queue("default"), W1, 1, 10.0)
        assert rec.id == first.id
        text = app.serializer.dumps(3)
        assert backend.finish([Outcome(first.id, OutcomeKind.SUCCESS, result=text)], W1, 11.0)
        assert first.result(timeout=5) == 3
        assert stored(backend, third) == [True]


def test_a_call_that_cannot_wait_registers_the_pending_ones_first(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    plain = app.task(add)
    limited = app.task(concurrency=ONE_AT_A_TIME)(mul)
    app.task(on_event="paid")(square)
    with app.batch():
        before = plain(1, 1)
        now = limited(2, 2)  # a policy: registered at once, after what was pending
        assert stored(backend, before, now) == [True, True]
        group = plain.parallelize([(3, 3), (4, 4)])  # one step already: at once too
        assert [backend.get(i) is not None for i in group.ids] == [True, True]
        after = plain(5, 5)
        assert stored(backend, after) == [False]
        [event] = app.emit("paid", {"a": 6})  # one step too: at once, after what was pending
        assert stored(backend, after, event) == [True, True]
    order = claim_ids(backend, W1, 10, 10.0, app.queue("default"))
    assert order == [before.id, now.id, *group.ids, after.id, event.id]


def test_calls_made_before_an_exception_are_registered(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    with pytest.raises(ZeroDivisionError), app.batch():
        inv = task(1, 2)
        _ = 1 / 0
    assert stored(backend, inv) == [True]


def test_a_wrong_argument_raises_at_the_call_and_leaves_the_batch_as_it_was(
    backend: Backend,
) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    with app.batch() as batch:
        good = task(1, 2)
        with pytest.raises(TypeError):
            task(1, 2, 3)  # type: ignore[call-arg]
        assert len(batch) == 1
    assert nonzero(app.counts()) == {Status.PENDING: 1}
    assert stored(backend, good) == [True]


def test_other_threads_and_nested_blocks(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    elsewhere: list[kubenenc.Invocation[int]] = []
    with app.batch() as outer:
        mine = task(1, 1)
        thread = threading.Thread(target=lambda: elsewhere.append(task(2, 2)))
        thread.start()
        thread.join()
        assert stored(backend, *elsewhere) == [True]  # not this thread's batch
        with app.batch() as inner:
            assert inner is outer
            nested = task(3, 3)
        assert stored(backend, mine, nested) == [False, False]  # the outer exit registers
    assert stored(backend, mine, nested) == [True, True]


def test_a_full_batch_registers_and_goes_on(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batching, "MAX_PENDING", 3)
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    with app.batch() as batch:
        invs = [task(i, 0) for i in range(4)]
        assert stored(backend, *invs) == [True, True, True, False]
        assert len(batch) == 1
    assert nonzero(app.counts()) == {Status.PENDING: 4}
