"""Queue.register: storing invocations and applying the registration policy."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId, TaskId
from kubenenc.records import PauseKind, RegisterKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    add,
    failed,
    new,
    nonzero,
    record,
    start,
    status,
    succeed,
)


def test_register_creates_pending_with_every_field_stored(backend: Backend) -> None:
    dep = add(backend, 1.0, "dep")
    start(backend, dep)
    succeed(backend, dep)
    parent = add(backend, 1.0, "parent", pool="elsewhere")
    item = new(
        "f",
        "7",
        app="shop",
        pool="fast",
        priority=-3,
        max_retries=2,
        timeout=4.5,
        running_key="rk",
        running_limit=2,
        registration_key="reg",
        registration="dedupe",
        depends_on=(dep,),
        parent=parent,
        serializer="pickle",
    )
    [res] = backend.register([item], 30.0)
    assert res.kind is RegisterKind.CREATED
    assert res.id == item.id

    rec = record(backend, item.id)
    assert rec.status is Status.PENDING
    assert (rec.app, rec.task, rec.args, rec.call_key, rec.display) == (
        "shop",
        TaskId("tests.f"),
        '{"x":"7"}',
        "tests.f#7",
        "f(7)",
    )
    assert (rec.pool, rec.priority, rec.max_retries, rec.timeout) == ("fast", -3, 2, 4.5)
    assert (rec.running_key, rec.running_limit, rec.registration_key) == ("rk", 2, "reg")
    assert rec.depends_on == (dep,)
    assert rec.parent == parent
    assert rec.serializer == "pickle"
    assert rec.created_at == 30.0
    assert rec.updated_at == 30.0
    assert (rec.attempt, rec.lost, rec.worker, rec.result, rec.error) == (0, 0, None, None, None)
    assert [(h.status, h.at) for h in rec.history] == [
        (Status.REGISTERED, 30.0),
        (Status.PENDING, 30.0),
    ]


def test_register_batch_returns_one_result_per_item_in_order(backend: Backend) -> None:
    items = [new("f", str(i)) for i in range(5)]
    results = backend.register(items, 1.0)
    assert [r.kind for r in results] == [RegisterKind.CREATED] * 5
    assert [r.id for r in results] == [i.id for i in items]
    assert [status(backend, i.id) for i in items] == [Status.PENDING] * 5


def test_register_empty_batch(backend: Backend) -> None:
    assert backend.register([], 1.0) == []


def test_allow_registers_equal_calls_separately(backend: Backend) -> None:
    a, b = new("f", "1"), new("f", "1")
    results = backend.register([a, b], 1.0)
    assert [r.kind for r in results] == [RegisterKind.CREATED, RegisterKind.CREATED]
    assert {r.id for r in results} == {a.id, b.id}


@pytest.mark.parametrize("policy", ["dedupe", "reject"])
def test_equal_key_returns_the_holder_and_stores_nothing(backend: Backend, policy: str) -> None:
    holder = add(backend, 1.0, registration_key="k", registration="dedupe")
    dup = new(registration_key="k", registration=policy)
    [res] = backend.register([dup], 2.0)
    expected = RegisterKind.DEDUPLICATED if policy == "dedupe" else RegisterKind.REJECTED
    assert res.kind is expected
    assert res.id == holder
    assert backend.get(dup.id) is None
    assert nonzero(backend.counts()) == {Status.PENDING: 1}


def test_dedupe_holds_while_running_and_paused(backend: Backend) -> None:
    holder = add(backend, 1.0, registration_key="k", registration="dedupe", pool="p")
    start(backend, holder)
    [res] = backend.register([new(registration_key="k", registration="dedupe")], 2.0)
    assert (res.kind, res.id) == (RegisterKind.DEDUPLICATED, holder)
    target = add(backend, 2.0, "target", pool="q")
    assert backend.pause(holder, W1, [target], 3.0).kind is PauseKind.PAUSED
    [res] = backend.register([new(registration_key="k", registration="reject")], 4.0)
    assert (res.kind, res.id) == (RegisterKind.REJECTED, holder)


def test_different_registration_keys_do_not_interfere(backend: Backend) -> None:
    a = add(backend, 1.0, registration_key="k1", registration="dedupe")
    b = add(backend, 1.0, registration_key="k2", registration="dedupe")
    assert a != b


@pytest.mark.parametrize("ending", ["success", "failed", "cancelled", "fail"])
def test_key_is_freed_once_the_holder_is_final(backend: Backend, ending: str) -> None:
    holder = add(backend, 1.0, registration_key="k", registration="dedupe")
    if ending == "cancelled":
        assert backend.cancel(holder, 5.0)
    elif ending == "fail":
        assert backend.fail(holder, "kubenenc.errors.TaskTimeout", "too slow", 5.0)
    else:
        start(backend, holder)
        (succeed if ending == "success" else failed)(backend, holder)
    again = new(registration_key="k", registration="dedupe")
    [res] = backend.register([again], 30.0)
    assert res.kind is RegisterKind.CREATED
    assert res.id == again.id
    # ... and the new one holds the key in turn.
    [res] = backend.register([new(registration_key="k", registration="reject")], 31.0)
    assert (res.kind, res.id) == (RegisterKind.REJECTED, again.id)


def test_later_items_of_a_batch_see_earlier_ones(backend: Backend) -> None:
    first = new("f", "1", registration_key="k", registration="dedupe")
    second = new("f", "1", registration_key="k", registration="dedupe")
    third = new("f", "1", registration_key="k", registration="reject")
    other = new("f", "2", registration_key="k2", registration="reject")
    results = backend.register([first, second, third, other], 1.0)
    assert [(r.kind, r.id) for r in results] == [
        (RegisterKind.CREATED, first.id),
        (RegisterKind.DEDUPLICATED, first.id),
        (RegisterKind.REJECTED, first.id),
        (RegisterKind.CREATED, other.id),
    ]
    assert backend.get(second.id) is None
    assert backend.get(third.id) is None


def test_allow_item_with_key_does_not_take_the_key_from_a_holder(backend: Backend) -> None:
    holder = add(backend, 1.0, registration_key="k", registration="dedupe")
    # An 'allow' call never consults the key (the SDK gives it none); a later dedupe call
    # still finds the first holder.
    add(backend, 2.0)
    [res] = backend.register([new(registration_key="k", registration="dedupe")], 3.0)
    assert (res.kind, res.id) == (RegisterKind.DEDUPLICATED, holder)


def test_unknown_ids_read_as_none(backend: Backend) -> None:
    assert backend.get(InvocationId("0" * 32)) is None


def test_registering_an_existing_id_answers_it_and_rewrites_nothing(backend: Backend) -> None:
    # Ids are unique per call, so an id that exists was stored by an earlier try of the same
    # registration whose answer was lost; whichever try this one is, it is answered CREATED
    # and the stored call (running by now) is left as it is, not reset to PENDING.
    item = new("f", "1")
    [first] = backend.register([item], 1.0)
    start(backend, item.id, now=2.0)
    counts = nonzero(backend.counts())
    [again] = backend.register([item], 3.0)
    assert (again.kind, again.id) == (first.kind, first.id) == (RegisterKind.CREATED, item.id)
    rec = record(backend, item.id)
    assert (rec.status, rec.worker, rec.created_at) == (Status.RUNNING, W1, 1.0)
    assert nonzero(backend.counts()) == counts == {Status.RUNNING: 1}
