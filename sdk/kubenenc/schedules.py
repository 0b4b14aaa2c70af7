"""Schedules in code: ``@app.task(schedule="*/5 * * * *", timezone="Europe/Madrid")`` and
``app.schedule(task, cron=..., args=..., kwargs=...)``.

No operator and no elected leader: every worker of the app runs its schedules (each second,
from its heartbeat thread), and each tick is submitted once because the backend claims it
atomically (:class:`~kubenenc.backends.contract.TickClaims`): a compare-and-set of the
schedule's last tick that registers the tick's calls in the same step. Three workers that
see the same tick make one call; a worker that restarts finds the tick already claimed; a
worker that dies while claiming either claimed and registered, or did neither.

Missed ticks (no worker ran at their time), ``catch_up``:

- ``"last"`` (the default): one call for the latest missed tick. A schedule usually stands
  for "keep this up to date" (a report, a sync, a clean-up): after an outage it should run
  once soon, not as many times as it missed, and not wait for the next tick. It is also what
  the operator's ``schedule`` always did.
- ``"all"``: one call per missed tick, at most :data:`MAX_CATCH_UP` (the latest ones), so a
  ``* * * * *`` schedule back from a week's outage does not flood the queue.
- ``"none"``: only a tick noticed within :data:`ON_TIME` seconds of its time is submitted.

A schedule seen for the first time (nothing stored for it) submits its latest tick only if
that tick is on time: deploying a new schedule does not call it for a tick it never had.

Overlap, ``overlap``: ``"skip"`` (the default) drops a tick while the schedule's previous
call is not final (pending, running, waiting or retrying), so a slow task never builds a
backlog of its own schedule; it is the registration policy ``reject`` on a key of the
schedule's own (it replaces the task's own registration policy for these calls).
``"allow"`` submits every tick.

Scheduled calls are made as ``task(*args, **kwargs)`` would be: the task's pool, priority,
retries and concurrency policy apply.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kubenenc.backends.contract import TickClaims
from kubenenc.cron import Cron, CronError, parse
from kubenenc.errors import ConfigurationError
from kubenenc.records import NewInvocation, RegisterResult

if TYPE_CHECKING:
    from kubenenc.backends.roles import Roles
    from kubenenc.runtime import Runtime
    from kubenenc.task import Task

log = logging.getLogger("kubenenc.schedules")

CATCH_UP = ("none", "last", "all")
OVERLAP = ("skip", "allow")
MAX_CATCH_UP = 100
"""The most calls one claim makes for missed ticks with ``catch_up="all"``."""
ON_TIME = 60.0
"""Seconds after its time within which a tick counts as on time, not missed (workers look
every second; the margin covers a busy machine or a short restart)."""
CLAIM_TRIES = 3
"""Compare-and-set tries of one tick: a lost race means another process claimed it."""


def check(expression: str, timezone: str, catch_up: str, overlap: str) -> Cron:
    """The parsed schedule; ConfigurationError naming what is wrong."""
    if catch_up not in CATCH_UP:
        raise ConfigurationError(f"catch_up must be one of {', '.join(CATCH_UP)}, not {catch_up!r}")
    if overlap not in OVERLAP:
        raise ConfigurationError(f"overlap must be one of {', '.join(OVERLAP)}, not {overlap!r}")
    if not isinstance(expression, str):
        raise ConfigurationError(f"schedule must be a cron expression, not {expression!r}")
    try:
        return parse(expression, timezone)
    except CronError as exc:
        raise ConfigurationError(f"schedule {expression!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What one claim does: the tick it claims, and the ticks it submits a call for."""

    claim: int
    submit: tuple[int, ...]


def plan_ticks(cron: Cron, previous: int | None, now: float, catch_up: str) -> TickPlan | None:
    """The claim to make at ``now`` when ``previous`` is the last tick claimed (None: never),
    or None when no tick is newer. Pure (ticks are whole seconds since the epoch)."""
    after = None if previous is None else dt.datetime.fromtimestamp(previous, dt.UTC)
    limit = MAX_CATCH_UP if catch_up == "all" else 1
    ticks = [
        int(t.timestamp()) for t in cron.ticks(after, dt.datetime.fromtimestamp(now, dt.UTC), limit)
    ]
    if not ticks:
        return None
    if previous is None or catch_up == "none":
        submit = tuple(t for t in ticks if now - t <= ON_TIME)
    else:
        submit = tuple(ticks)
    return TickPlan(ticks[-1], submit)


@dataclass(frozen=True, slots=True)
class Fired:
    """A tick this process claimed, the ticks it submitted, and the registrations."""

    tick: int
    submitted: tuple[int, ...]
    results: list[RegisterResult]


def fire(
    backend: TickClaims,
    key: str,
    cron: Cron,
    catch_up: str,
    build: Callable[[Sequence[int]], list[NewInvocation]],
    now: float,
) -> Fired | None:
    """Claim the due tick of the schedule stored as ``key`` and register the calls
    ``build`` makes for the ticks to submit, in one backend step; None when no tick is due
    or another process claimed it first. Used by workers and by the operator."""
    for _ in range(CLAIM_TRIES):
        previous = backend.last_tick(key)
        p = plan_ticks(cron, previous, now, catch_up)
        if p is None:
            return None
        new = build(p.submit) if p.submit else []
        results = backend.claim_tick(key, previous, p.claim, new, now)
        if results is not None:
            return Fired(p.claim, p.submit, results)
    return None


def skip_overlap(new: Sequence[NewInvocation], guard: str) -> list[NewInvocation]:
    """``new`` made to be refused while a call holding ``guard`` is not final
    (``overlap="skip"``): the registration policy ``reject`` on the schedule's own key."""
    return [n._replace(registration_key=guard, registration="reject") for n in new]


def tick_claims(roles: Roles) -> TickClaims:
    """The backend of ``roles`` as :class:`TickClaims`; ConfigurationError when it cannot
    claim ticks."""
    if roles.tick_claims is None:
        raise ConfigurationError(
            f"{type(roles.backend).__name__} cannot claim schedule ticks (TickClaims); "
            "schedules need a backend that can"
        )
    return roles.tick_claims


@dataclass(frozen=True, slots=True, eq=False)
class Schedule:
    """One schedule of an app: call ``task(*args, **kwargs)`` at every tick of ``cron``."""

    name: str
    """Unique in the app; the backend keeps the last tick under it."""
    task: Task[Any, Any]
    expression: str
    timezone: str
    cron: Cron
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    catch_up: str = "last"
    overlap: str = "skip"


class Scheduler:
    """The schedules of one app, run by its workers (:meth:`run_due`, every second)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        """The app's backend and scope (the Scheduler, like tasks, does not hold the App)."""
        self.entries: dict[str, Schedule] = {}
        self.clock: Callable[[], float] = time.time
        """Where :meth:`run_due` reads the time (tests move it)."""
        self._seen: dict[str, int] = {}
        """Per schedule, the latest tick this process has handled (claimed or found claimed):
        the backend is asked only when a newer one is due."""

    def add(self, entry: Schedule) -> Schedule:
        """Add ``entry`` (made by :meth:`kubenenc.app.App.schedule`, its one public face),
        named, when its ``name`` is empty, by its task and a digest of the rest; returns it
        as added. A call that cannot bind fails here, not at every tick."""
        entry.task._bind(entry.args, entry.kwargs)
        if not entry.name:
            text = json.dumps([entry.expression, entry.timezone, entry.args, entry.kwargs],
                              sort_keys=True, default=repr)  # fmt: skip
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            entry = replace(entry, name=f"{entry.task.id}@{digest}")
        existing = self.entries.get(entry.name)
        if existing is not None and existing.task is not entry.task:
            raise ConfigurationError(
                f"schedule {entry.name!r} is already defined on {self.runtime.name}"
            )
        self.entries[entry.name] = entry
        return entry

    def key(self, entry: Schedule) -> str:
        """The name the backend keeps ``entry``'s last tick under (scoped like queues)."""
        return f"{self.runtime.scope}:{entry.name}"

    def calls(self, entry: Schedule, ticks: Sequence[int]) -> list[NewInvocation]:
        """The invocations ``entry`` submits for ``ticks`` (one each)."""
        from kubenenc.task import CallOptions  # task imports this module

        new = entry.task._built([(entry.args, entry.kwargs)] * len(ticks), CallOptions())
        if entry.overlap == "skip":
            new = skip_overlap(new, f"{self.runtime.scope}#schedule:{entry.name}")
        return new

    def run_due(self) -> int:
        """Submit the calls of every schedule whose tick is due and not yet claimed; the
        number of ticks this process claimed. A schedule that fails is logged and left for
        the next round (the others still run)."""
        if not self.entries:
            return 0
        backend = tick_claims(self.runtime.roles)
        now = self.clock()
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        claimed = 0
        for entry in list(self.entries.values()):
            latest = entry.cron.last_tick(at)
            if latest is None or self._seen.get(entry.name, 0) >= latest.timestamp():
                continue
            try:
                fired = fire(
                    backend, self.key(entry), entry.cron, entry.catch_up,
                    lambda ticks, e=entry: self.calls(e, ticks), now,  # type: ignore[misc]
                )  # fmt: skip
            except Exception:
                log.exception("schedule %s: could not claim its tick", entry.name)
                continue
            self._seen[entry.name] = int(latest.timestamp())
            if fired is not None:
                claimed += 1
                log.info(
                    "schedule %s: tick %s, %d call(s)", entry.name,
                    dt.datetime.fromtimestamp(fired.tick, dt.UTC).isoformat(), len(fired.results),
                )  # fmt: skip
        return claimed
