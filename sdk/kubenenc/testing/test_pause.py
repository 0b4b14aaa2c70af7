"""Coordination.pause and resume: waiting without a slot, and cycle detection."""

from __future__ import annotations

import time

import pytest

from kubenenc.backends.contract import Backend, ResumeEarly
from kubenenc.ids import InvocationId
from kubenenc.records import Outcome, OutcomeKind, PauseKind, RegisterKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    W2,
    add,
    claim_ids,
    new,
    pause,
    record,
    running,
    start,
    status,
    succeed,
)

CYCLE_ERROR = "kubenenc.errors.CycleDetectedError"
GHOST = InvocationId("9" * 32)


def test_ready_when_every_target_is_final_or_unknown(backend: Backend) -> None:
    done = running(backend, 1.0, "done")
    succeed(backend, done)
    cancelled = add(backend, 1.0, "c")
    assert backend.cancel(cancelled, 2.0)
    waiter = running(backend, 1.0, "w")
    for targets in ([done], [cancelled, GHOST], [GHOST], []):
        assert backend.pause(waiter, W1, targets, 30.0).kind is PauseKind.READY
        rec = record(backend, waiter)
        assert rec.status is Status.RUNNING
        assert rec.worker == W1
    succeed(backend, waiter, now=31.0)


def test_paused_releases_the_slot_and_keeps_the_worker(backend: Backend) -> None:
    waiter = add(backend, 1.0, "w", running_key="k", running_limit=1)
    other = add(backend, 2.0, "o", running_key="k", running_limit=1)
    target = add(backend, 3.0, "t", pool="targets")
    assert claim_ids(backend, W1, 10, 4.0) == [waiter]
    res = backend.pause(waiter, W1, [target], 5.0)
    assert res.kind is PauseKind.PAUSED
    assert res.loop == ()
    rec = record(backend, waiter)
    assert rec.status is Status.PAUSED
    assert rec.history[-1].status is Status.PAUSED
    assert rec.history[-1].worker == W1
    assert claim_ids(backend, W2, 10, 6.0) == [other]
    # Still paused on W1: W2 cannot resume it, W1 can once the target is final.
    start(backend, target, W2, 7.0)
    succeed(backend, target, W2, 8.0)
    assert backend.resume([waiter], W2, 10, 9.0).gone == (waiter,)
    assert status(backend, waiter) is Status.PAUSED


def test_pause_boosts_the_targets_claim_order(backend: Backend) -> None:
    first = add(backend, 1.0, "first", priority=3)
    target = add(backend, 2.0, "target")
    waiter = running(backend, 3.0, "w")
    pause(backend, waiter, [target])
    assert record(backend, target).waiters == 1
    assert claim_ids(backend, W1, 1, 20.0) == [target]
    assert claim_ids(backend, W1, 1, 20.0) == [first]


def test_pause_on_duplicate_targets_counts_once(backend: Backend) -> None:
    target = add(backend, 1.0, "target", pool="t")
    waiter = running(backend, 1.0, "w")
    pause(backend, waiter, [target, target])
    assert record(backend, target).waiters == 1
    start(backend, target)
    succeed(backend, target)
    assert backend.resume([waiter], W1, 10, 30.0).resumed == (waiter,)


def test_gone_when_not_running_on_that_worker(backend: Backend) -> None:
    target = add(backend, 1.0, "target", pool="t")
    pending = add(backend, 1.0, "p")
    on_w2 = running(backend, 1.0, "r", worker=W2)
    cancelled = running(backend, 1.0, "c")
    assert backend.cancel(cancelled, 5.0)
    for id in (pending, on_w2, cancelled, GHOST):
        before = backend.get(id)
        assert backend.pause(id, W1, [target], 10.0).kind is PauseKind.GONE
        assert backend.get(id) == before
    assert record(backend, target).waiters == 0


def test_resume_only_when_every_target_is_final(backend: Backend) -> None:
    b = add(backend, 1.0, "b", pool="b")
    c = add(backend, 1.0, "c", pool="c")
    waiter = running(backend, 1.0, "w")
    pause(backend, waiter, [b, c], now=5.0)
    assert backend.resume([waiter], W1, 10, 6.0).resumed == ()
    start(backend, b)
    succeed(backend, b)
    res = backend.resume([waiter], W1, 10, 21.0)
    assert (res.resumed, res.gone) == ((), ())
    assert status(backend, waiter) is Status.PAUSED
    start(backend, c)
    assert backend.cancel(c, 22.0)  # cancelled is final too
    res = backend.resume([waiter], W1, 10, 23.0)
    assert (res.resumed, res.gone) == ((waiter,), ())
    rec = record(backend, waiter)
    assert rec.status is Status.RUNNING
    assert rec.worker == W1
    assert (rec.history[-1].status, rec.history[-1].at) == (Status.RUNNING, 23.0)
    succeed(backend, waiter, now=24.0)
    assert status(backend, waiter) is Status.SUCCESS


def test_resume_limit(backend: Backend) -> None:
    target = running(backend, 1.0, "t")
    waiters = [running(backend, 1.0, "w", str(i)) for i in range(3)]
    for w in waiters:
        pause(backend, w, [target])
    succeed(backend, target)
    first = backend.resume(waiters, W1, 2, 30.0).resumed
    assert len(first) == 2
    assert set(first) <= set(waiters)
    left = [w for w in waiters if w not in first]
    rest = backend.resume(waiters, W1, 2, 31.0)
    assert rest.resumed == tuple(left)
    assert set(rest.gone) == set(first)  # resumed ones are RUNNING, no longer paused
    assert backend.resume(waiters, W1, 0, 32.0).resumed == ()


def test_resume_respects_the_running_limit(backend: Backend) -> None:
    waiter = add(backend, 1.0, "w", running_key="k", running_limit=1)
    other = add(backend, 2.0, "o", running_key="k", running_limit=1)
    target = add(backend, 3.0, "t", pool="t")
    assert claim_ids(backend, W1, 10, 4.0) == [waiter]
    pause(backend, waiter, [target])
    assert claim_ids(backend, W2, 10, 16.0) == [other]
    start(backend, target, W2)
    succeed(backend, target, W2)
    assert backend.resume([waiter], W1, 10, 21.0).resumed == ()
    assert status(backend, waiter) is Status.PAUSED
    succeed(backend, other, W2, 22.0)
    assert backend.resume([waiter], W1, 10, 23.0).resumed == (waiter,)
    # It holds the slot again.
    third = add(backend, 24.0, "x", running_key="k", running_limit=1)
    assert claim_ids(backend, W2, 10, 25.0) == []
    succeed(backend, waiter, W1, 26.0)
    assert claim_ids(backend, W2, 10, 27.0) == [third]


def test_resume_reports_gone_ones(backend: Backend) -> None:
    target = add(backend, 1.0, "t", pool="t")
    cancelled = running(backend, 1.0, "c")
    failed = running(backend, 1.0, "f")
    still = running(backend, 1.0, "s")
    not_paused = running(backend, 1.0, "n")
    for w in (cancelled, failed, still):
        pause(backend, w, [target])
    assert backend.cancel(cancelled, 20.0)
    assert backend.fail(failed, "kubenenc.errors.TaskTimeout", "late", 20.0)
    res = backend.resume([cancelled, failed, still, not_paused, GHOST], W1, 10, 21.0)
    assert res.resumed == ()
    assert res.gone == (cancelled, failed, not_paused, GHOST)
    assert status(backend, still) is Status.PAUSED
    assert status(backend, not_paused) is Status.RUNNING


# -- cycles --------------------------------------------------------------------------------


def test_cycle_through_a_new_invocation_of_the_same_call(backend: Backend) -> None:
    a = running(backend, 1.0, "a", "1")
    b = add(backend, 2.0, "b", "1", pool="b")
    pause(backend, a, [b], now=3.0)
    start(backend, b, W2, 4.0)
    # b(1) calls a(1) again: a new invocation with the same call key, and waits on it.
    a2 = add(backend, 5.0, "a", "1", pool="a2")
    res = backend.pause(b, W2, [a2], 6.0)
    assert res.kind is PauseKind.CYCLE
    assert res.loop == ("a(1)", "b(1)", "a(1)")
    # The waiter keeps running (it raises), the closing target is failed, a stays paused.
    assert status(backend, b) is Status.RUNNING
    assert status(backend, a) is Status.PAUSED
    rec = record(backend, a2)
    assert rec.status is Status.FAILED
    assert rec.error is not None
    assert rec.error.type == CYCLE_ERROR
    assert "a(1)" in rec.error.message
    assert "b(1)" in rec.error.message
    assert claim_ids(backend, W1, 10, 7.0, pool="a2") == []
    # The chain unwinds normally: b fails, a resumes.
    assert backend.finish([Outcome(b, OutcomeKind.SUCCESS, "1")], W2, 8.0) == [True]
    assert backend.resume([a], W1, 10, 9.0).resumed == (a,)


def test_self_wait_on_the_same_call_key(backend: Backend) -> None:
    a = running(backend, 1.0, "a", "1")
    again = add(backend, 2.0, "a", "1", pool="again")
    res = backend.pause(a, W1, [again], 3.0)
    assert res.kind is PauseKind.CYCLE
    assert res.loop == ("a(1)", "a(1)")
    assert status(backend, a) is Status.RUNNING
    rec = record(backend, again)
    assert rec.status is Status.FAILED
    assert rec.error is not None
    assert rec.error.type == CYCLE_ERROR


def test_loop_through_dedupe_does_not_fail_the_target(backend: Backend) -> None:
    a = running(backend, 1.0, "a", "1", registration_key="a1", registration="dedupe")
    b = add(backend, 2.0, "b", "1", pool="b")
    pause(backend, a, [b], now=3.0)
    start(backend, b, W2, 4.0)
    # b(1) calls a(1): registration deduplicates to a itself.
    [res] = backend.register([new("a", "1", registration_key="a1", registration="dedupe")], 5.0)
    assert res.kind is RegisterKind.DEDUPLICATED
    assert res.id == a
    before = record(backend, b)
    res2 = backend.pause(b, W2, [a], 6.0)
    assert res2.kind is PauseKind.CYCLE
    assert res2.loop == ("a(1)", "b(1)", "a(1)")
    assert status(backend, a) is Status.PAUSED
    # Nothing is written: b keeps running as it was, a gets no waiter.
    assert record(backend, b) == before
    assert record(backend, a).waiters == 0


def test_waiting_on_its_own_id_is_a_cycle_that_fails_nothing(backend: Backend) -> None:
    a = running(backend, 1.0, "a", "1")
    before = record(backend, a)
    res = backend.pause(a, W1, [a], 2.0)
    assert res.kind is PauseKind.CYCLE
    assert res.loop == ("a(1)", "a(1)")
    assert record(backend, a) == before


def test_cancelling_a_waiter_removes_its_boost(backend: Backend) -> None:
    high = add(backend, 1.0, "high", priority=5)
    target = add(backend, 2.0, "target")
    waiter = running(backend, 3.0, "w")
    pause(backend, waiter, [target])
    assert backend.cancel(waiter, 16.0)
    assert record(backend, target).waiters == 0
    assert claim_ids(backend, W2, 1, 17.0) == [high]


def test_loop_through_a_declared_dependency(backend: Backend) -> None:
    a = running(backend, 1.0, "a", "1")
    b = add(backend, 2.0, "b", "1", pool="b")
    pause(backend, a, [b], now=3.0)
    start(backend, b, W2, 4.0)
    # d may start only after a ends; a waits on b; b now waits on d: none can ever finish.
    d = add(backend, 5.0, "d", "1", pool="d", depends_on=(a,))
    assert status(backend, d) is Status.WAITING_DEPENDENCIES
    res = backend.pause(b, W2, [d], 6.0)
    assert res.kind is PauseKind.CYCLE
    assert res.loop == ("d(1)", "a(1)", "b(1)", "d(1)")
    assert status(backend, b) is Status.RUNNING
    assert status(backend, d) is Status.WAITING_DEPENDENCIES  # in the chain: not failed
    assert status(backend, a) is Status.PAUSED


def test_a_dependent_closes_a_loop_by_id_only(backend: Backend) -> None:
    w = running(backend, 1.0, "w", "1")
    # t(1) waits for w to end, and w waits on another t(1): the same call, but the waiting
    # one has run no code, so nothing loops.
    later = add(backend, 2.0, "t", "1", pool="later", depends_on=(w,))
    target = add(backend, 3.0, "t", "1", pool="now")
    pause(backend, w, [target], now=4.0)
    assert status(backend, target) is Status.PENDING
    start(backend, target, W2, 5.0)
    succeed(backend, target, W2, 6.0)
    assert backend.resume([w], W1, 10, 7.0).resumed == (w,)
    succeed(backend, w, W1, 8.0)
    assert status(backend, later) is Status.PENDING


def test_fire_and_forget_calls_are_no_cycle(backend: Backend) -> None:
    a = running(backend, 1.0, "a", "1")
    b = add(backend, 2.0, "b", "1", pool="b")
    pause(backend, a, [b], now=3.0)
    start(backend, b, W2, 4.0)
    a2 = add(backend, 5.0, "a", "1", pool="a2")  # b(1) starts a(1) and does not wait
    c = add(backend, 5.0, "c", "1", pool="c")
    pause(backend, b, [c], W2, 6.0)  # ... and waits on something else
    assert status(backend, a2) is Status.PENDING
    start(backend, c, W1, 7.0)
    succeed(backend, c, W1, 8.0)
    assert backend.resume([b], W2, 10, 9.0).resumed == (b,)
    succeed(backend, b, W2, 10.0)
    assert backend.resume([a], W1, 10, 11.0).resumed == (a,)
    assert claim_ids(backend, W2, 10, 12.0, pool="a2") == [a2]


def test_fib_like_calls_with_different_arguments_are_no_cycle(backend: Backend) -> None:
    # fib(4) waits fib(3) and fib(2); fib(3) waits a second fib(2) and fib(1): the same call
    # twice in different branches, never above itself.
    f4 = running(backend, 1.0, "fib", "4")
    f3 = add(backend, 2.0, "fib", "3", pool="f3")
    f2 = add(backend, 2.0, "fib", "2", pool="f2")
    pause(backend, f4, [f3, f2], now=3.0)
    start(backend, f3, W2, 4.0)
    f2b = add(backend, 5.0, "fib", "2", pool="f2b")
    f1 = add(backend, 5.0, "fib", "1", pool="f1")
    res = backend.pause(f3, W2, [f2b, f1], 6.0)
    assert res.kind is PauseKind.PAUSED
    for leaf in (f2, f2b, f1):
        assert status(backend, leaf) is Status.PENDING
        start(backend, leaf, W1, 7.0)
        succeed(backend, leaf, W1, 8.0)
    assert backend.resume([f3], W2, 10, 9.0).resumed == (f3,)
    succeed(backend, f3, W2, 10.0)
    assert backend.resume([f4], W1, 10, 11.0).resumed == (f4,)


def test_chain_of_fifty(backend: Backend) -> None:
    began = time.monotonic()
    chain = [running(backend, 1.0, "step", "0")]
    for i in range(1, 51):
        nxt = add(backend, 2.0 + i, "step", str(i), pool=f"s{i}")
        pause(backend, chain[-1], [nxt], now=2.5 + i)
        start(backend, nxt, W1, 2.6 + i)
        chain.append(nxt)
    assert [status(backend, x) for x in chain[:-1]] == [Status.PAUSED] * 50
    # The deepest one waits on step(0) again: a loop through all 51.
    again = add(backend, 100.0, "step", "0", pool="again")
    res = backend.pause(chain[-1], W1, [again], 101.0)
    assert res.kind is PauseKind.CYCLE
    assert res.loop == (*[f"step({i})" for i in range(51)], "step(0)")
    assert status(backend, again) is Status.FAILED
    # A fresh call with new arguments at the bottom is fine.
    leaf = add(backend, 102.0, "step", "51", pool="leaf")
    pause(backend, chain[-1], [leaf], now=103.0)
    assert time.monotonic() - began < 20


def test_handed_back_takes_a_paused_invocation_without_counting_a_loss(backend: Backend) -> None:
    target = add(backend, 1.0, "target")
    waiter = running(backend, 1.0, "waiter")
    pause(backend, waiter, [target])
    assert record(backend, target).waiters == 1
    # Only the worker holding it may give it back.
    assert backend.finish([Outcome(waiter, OutcomeKind.HANDED_BACK)], W2, 40.0) == [False]
    # Other outcomes of a paused invocation are still refused.
    assert backend.finish([Outcome(waiter, OutcomeKind.SUCCESS, "1")], W1, 40.0) == [False]
    back = Outcome(waiter, OutcomeKind.HANDED_BACK, reason="drain")
    assert backend.finish([back], W1, 41.0) == [True]
    rec = record(backend, waiter)
    assert (rec.status, rec.worker, rec.lost, rec.attempt) == (Status.PENDING, None, 0, 0)
    assert rec.history[-1].reason == "drain"
    assert record(backend, target).waiters == 0
    # Its wait is gone: the target finishing wakes nothing, and the waiter runs afresh.
    assert backend.finish([back], W1, 42.0) == [False]
    assert claim_ids(backend, W2, 10, 43.0, pool="solo-waiter-") == [waiter]
    assert claim_ids(backend, W2, 10, 43.0) == [target]


@pytest.mark.kubenenc_role("ResumeEarly")
def test_resume_early_gives_up_a_wait_and_lowers_the_waiter_count(backend: Backend) -> None:
    assert isinstance(backend, ResumeEarly)
    waiter = add(backend, 1.0, "w", running_key="k", running_limit=1)
    target = add(backend, 2.0, "t", pool="targets")
    other = add(backend, 3.0, "o", running_key="k", running_limit=1)
    assert claim_ids(backend, W1, 1, 4.0) == [waiter]
    assert backend.pause(waiter, W1, [target], 5.0).kind is PauseKind.PAUSED
    assert record(backend, target).waiters == 1
    assert claim_ids(backend, W2, 10, 6.0) == [other]
    # The key is full: the timed-out wait stays paused until its slot is free.
    assert backend.resume_early([waiter], W1, 10, 7.0).resumed == ()
    succeed(backend, other, W2, 8.0)
    assert backend.resume_early([waiter], W2, 10, 9.0).gone == (waiter,)  # not W2's
    assert backend.resume_early([waiter], W1, 10, 9.0).resumed == (waiter,)
    rec = record(backend, waiter)
    assert rec.status is Status.RUNNING
    assert rec.history[-1].reason == "wait timed out"
    target_rec = record(backend, target)
    assert target_rec.status is Status.PENDING
    assert target_rec.waiters == 0
    # The call goes on as any running one: it can wait again, and finish.
    assert backend.pause(waiter, W1, [target], 10.0).kind is PauseKind.PAUSED
    assert record(backend, target).waiters == 1
    start(backend, target, W2, 11.0)
    succeed(backend, target, W2, 12.0)
    assert backend.resume([waiter], W1, 10, 13.0).resumed == (waiter,)
    succeed(backend, waiter, W1, 14.0)
