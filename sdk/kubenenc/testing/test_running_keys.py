"""KeyUsage.running_keys: which running-limit keys hold slots now, and who holds them."""

from __future__ import annotations

import pytest

import kubenenc
from kubenenc.backends.browse import KeyUsage, RunningKey
from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId
from kubenenc.testing.helpers import W1, W2, add, claim_ids, pause, record, running, succeed

pytestmark = pytest.mark.kubenenc_role("KeyUsage")

KA = "t:tests.f#aaaa"
KB = "t:tests.f#bbbb"


def _usage(backend: Backend) -> KeyUsage:
    assert isinstance(backend, KeyUsage), f"{type(backend).__name__} does not offer KeyUsage"
    return backend


def _two_keys(backend: Backend) -> tuple[list[InvocationId], InvocationId, InvocationId]:
    """Three calls on KA (limit 2: two run, one waits), one on KB, one with no key."""
    a = [add(backend, 1.0 + i, args=f"a{i}", running_key=KA, running_limit=2) for i in range(3)]
    b = add(backend, 5.0, args="b", running_key=KB, running_limit=1)
    free = add(backend, 6.0, args="free")
    claimed = claim_ids(backend, W1, 10, 10.0)
    assert set(claimed) == {a[0], a[1], b, free}
    return a, b, free


def test_keys_with_slots_held_and_their_holders(backend: Backend) -> None:
    u = _usage(backend)
    assert u.running_keys().keys == []
    a, b, _ = _two_keys(backend)
    got = u.running_keys()
    assert got.keys == [
        RunningKey(KA, 2, tuple(sorted(a[:2]))),  # most slots first
        RunningKey(KB, 1, (b,)),
    ]
    assert not got.more


def test_counts_follow_finishes_claims_and_pauses(backend: Backend) -> None:
    u = _usage(backend)
    a, b, free = _two_keys(backend)
    succeed(backend, a[0])
    assert claim_ids(backend, W2, 10, 21.0) == [a[2]]  # the freed slot goes to the waiting one
    assert u.running_keys().keys[0] == RunningKey(KA, 2, tuple(sorted([a[1], a[2]])))
    pause(backend, b, [free], W1, 22.0)  # a paused call gives its slot away
    assert [k.key for k in u.running_keys().keys] == [KA]
    for id, worker in ((a[1], W1), (a[2], W2), (free, W1)):
        succeed(backend, id, worker, 30.0)
    assert backend.resume([b], W1, 1, 31.0).resumed == (b,)  # it takes its slot again
    assert u.running_keys().keys == [RunningKey(KB, 1, (b,))]


def test_limit_holders_and_budget_bound_the_answer(backend: Backend) -> None:
    u = _usage(backend)
    a, _, _ = _two_keys(backend)
    first = u.running_keys(limit=1, holders=1)
    assert [k.key for k in first.keys] == [KA] and first.more
    assert first.keys[0].running == 2 and len(first.keys[0].holders) == 1
    assert first.keys[0].holders[0] in a[:2]
    # The budget bounds the held invocations read, never the counts.
    starved = u.running_keys(budget=1)
    assert [(k.key, k.running) for k in starved.keys] == [(KA, 2), (KB, 1)]
    assert sum(len(k.holders) for k in starved.keys) <= 1
    assert all(not k.holders for k in u.running_keys(budget=0).keys)


def test_rate_limits_are_not_running_keys(backend: Backend) -> None:
    u = _usage(backend)
    only_rate = running(backend, 1.0, args="r", rate_key="t:tests.f#rrrr", rate="5/1/5")
    both = running(backend, 2.0, args="rb", rate_key="t:tests.f#ssss", rate="5/1/5",
                   running_key=KB, running_limit=1)  # fmt: skip
    assert record(backend, only_rate).status is kubenenc.Status.RUNNING
    assert u.running_keys().keys == [RunningKey(KB, 1, (both,))]


def charge(customer: str, amount: int) -> int:
    return amount


def test_the_keys_an_app_computes_are_listed(backend: Backend) -> None:
    u = _usage(backend)
    app = kubenenc.App("t", backend=backend)
    policy = kubenenc.ConcurrencyPolicy(running_limit=1, key=("customer",), rate="9/s")
    task = app.task(concurrency=policy)(charge)
    ann, bob, ann2 = task("ann", 1), task("bob", 2), task("ann", 3)
    claimed = claim_ids(backend, W1, 10, 10.0, app.queue("default"))
    assert claimed == [ann.id, bob.id]  # ann's second charge waits for her first
    got = {k.key: k for k in u.running_keys().keys}
    for inv in (ann, bob):
        key = record(backend, inv.id).running_key
        assert key is not None and got[key] == RunningKey(key, 1, (inv.id,))
    assert len(got) == 2
    assert record(backend, ann2.id).running_key == record(backend, ann.id).running_key
