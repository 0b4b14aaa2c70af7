"""Schedules: a tick is claimed once (a compare-and-set that registers its calls in the same
step), whatever the number of processes; missed ticks follow ``catch_up``; ``overlap="skip"``
drops a tick while the previous call is not final (see :mod:`kubenenc.schedules`).

The clock is the scheduler's own (``Scheduler.clock``), moved by the tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

import kubenenc
from kubenenc.backends.contract import Backend, TickClaims
from kubenenc.errors import ConfigurationError
from kubenenc.records import RegisterKind
from kubenenc.schedules import MAX_CATCH_UP, Scheduler
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, new, nonzero

pytestmark = pytest.mark.kubenenc_role("TickClaims")

T0 = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC).timestamp()
"""A tick of every schedule below (10:00 UTC)."""


def ticks(backend: Backend) -> TickClaims:
    assert isinstance(backend, TickClaims)
    return backend


def test_a_tick_is_claimed_once_with_its_calls(backend: Backend) -> None:
    b = ticks(backend)
    assert b.last_tick("s") is None
    first = new("tick", "1")
    done = b.claim_tick("s", None, 600, [first], 601.0)
    assert done is not None and [(r.kind, r.id) for r in done] == [(RegisterKind.CREATED, first.id)]
    assert b.last_tick("s") == 600
    # Another process that read "none" before, or asks for the same tick, writes nothing.
    assert b.claim_tick("s", None, 600, [new("tick", "2")], 602.0) is None
    assert b.claim_tick("s", 600, 600, [new("tick", "3")], 602.0) is None
    assert b.claim_tick("s", 600, 540, [new("tick", "4")], 602.0) is None
    assert nonzero(backend.counts(task="tests.tick")) == {Status.PENDING: 1}
    assert b.claim_tick("s", 600, 660, [], 661.0) == []  # a tick claimed with no call
    assert b.last_tick("s") == 660
    assert b.last_tick("other") is None


def numbers(total: int) -> int:
    return total


def make_app(backend: Backend, **options: object) -> tuple[kubenenc.App, Scheduler]:
    app = kubenenc.App("sched", backend=backend)
    app.task(schedule="*/5 * * * *", **options)(numbers_of)
    return app, app.schedules


def numbers_of() -> int:
    return 1


def at(app: kubenenc.App, seconds: float) -> None:
    app.schedules.clock = lambda: T0 + seconds


def calls(app: kubenenc.App) -> int:
    return sum(app.counts(task=app.tasks[next(iter(app.tasks))]).values())


def finish_all(backend: Backend, app: kubenenc.App, now: float) -> None:
    from kubenenc.records import Outcome, OutcomeKind

    for rec in backend.claim(app.queue("default"), W1, 100, now):
        backend.finish([Outcome(rec.id, OutcomeKind.SUCCESS, result="1")], W1, now)


def test_several_schedulers_call_once_per_tick(backend: Backend) -> None:
    apps = [make_app(backend, overlap="allow")[0] for _ in range(3)]
    for minute in range(0, 31):
        for app in apps:
            at(app, minute * 60 + 3)
            app.schedules.run_due()
    # Ticks 10:00, 10:05, ..., 10:30: seven, one call each, whoever claimed them.
    assert calls(apps[0]) == 7


def test_a_restarted_scheduler_does_not_call_a_claimed_tick_again(backend: Backend) -> None:
    app, _ = make_app(backend, overlap="allow")
    at(app, 2)
    assert app.schedules.run_due() == 1
    again, _ = make_app(backend, overlap="allow")  # a new process: nothing remembered
    at(again, 30)
    assert again.schedules.run_due() == 0
    at(again, 301)
    assert again.schedules.run_due() == 1
    assert calls(app) == 2


@pytest.mark.parametrize(("catch_up", "expected"), [("none", 0), ("last", 1), ("all", 6)])
def test_missed_ticks_follow_catch_up(backend: Backend, catch_up: str, expected: int) -> None:
    app, _ = make_app(backend, catch_up=catch_up, overlap="allow")
    at(app, 1)
    assert app.schedules.run_due() == 1
    assert calls(app) == 1
    # No worker from 10:01 to 10:32: ticks 10:05 ... 10:30 (six) were missed.
    later, _ = make_app(backend, catch_up=catch_up, overlap="allow")
    at(later, 32 * 60)
    later.schedules.run_due()
    assert calls(later) == 1 + expected
    assert ticks(backend).last_tick(later.schedules.key(later.schedules.entries[
        next(iter(later.schedules.entries))])) == T0 + 30 * 60  # fmt: skip


def test_catch_up_all_is_bounded(backend: Backend) -> None:
    app = kubenenc.App("sched", backend=backend)
    app.schedule(app.task(numbers), cron="* * * * *", kwargs={"total": 1}, catch_up="all",
                 overlap="allow")  # fmt: skip
    at(app, 0)
    app.schedules.run_due()
    later = kubenenc.App("sched", backend=backend)
    later.schedule(later.task(numbers), cron="* * * * *", kwargs={"total": 1}, catch_up="all",
                   overlap="allow")  # fmt: skip
    at(later, 10 * 3600)  # ten hours later: 600 missed ticks
    later.schedules.run_due()
    assert sum(later.counts().values()) == 1 + MAX_CATCH_UP


def test_a_new_schedule_does_not_call_a_tick_it_never_had(backend: Backend) -> None:
    app, _ = make_app(backend)
    at(app, 4 * 60)  # the last tick, 10:00, is four minutes old
    app.schedules.run_due()
    assert calls(app) == 0
    at(app, 5 * 60 + 1)
    app.schedules.run_due()
    assert calls(app) == 1


def test_overlap_skip_waits_for_the_previous_call(backend: Backend) -> None:
    app, _ = make_app(backend)  # overlap="skip" by default
    at(app, 1)
    app.schedules.run_due()
    at(app, 301)  # 10:05: the 10:00 call is still pending
    app.schedules.run_due()
    assert calls(app) == 1
    finish_all(backend, app, T0 + 302)
    at(app, 601)
    app.schedules.run_due()
    assert nonzero(app.counts()) == {Status.SUCCESS: 1, Status.PENDING: 1}


def test_scheduled_calls_take_their_arguments(backend: Backend) -> None:
    app = kubenenc.App("sched", backend=backend)
    task = app.task(numbers)
    app.schedule(task, cron="0 * * * *", args=[7], timezone="Europe/Madrid")
    at(app, 30)
    app.schedules.run_due()
    [inv] = app.invocations(task=task)
    assert app.serializer.loads(inv.record().args) == {"total": 7}


def test_bad_schedules_are_refused_when_declared(backend: Backend) -> None:
    app = kubenenc.App("sched", backend=backend)
    task = app.task(numbers)
    bad: Sequence[dict[str, object]] = (
        {"cron": "61 * * * *"}, {"cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"cron": "* * * * *", "catch_up": "some"}, {"cron": "* * * * *", "overlap": "queue"},
        {"cron": "* * * * *", "kwargs": {"nope": 1}},
    )  # fmt: skip
    for options in bad:
        with pytest.raises((ConfigurationError, TypeError)):
            app.schedule(task, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timezone needs schedule"):
        app.task(timezone="Europe/Madrid")(numbers_of)
