"""Read queries for people browsing a backend (the dashboard): a role interface of its own.

The hot path (:mod:`kubenenc.backends.contract`) never needs these; a person looking at a
store with a million invocations does, and must never make the backend read all of them.
So every query here is **bounded**:

- :meth:`Browse.browse` pages through invocations newest first with an opaque cursor and
  examines at most ``budget`` stored invocations per call, whatever the filters match (a
  store that filters by app, task, status, pool or worker itself, with its own indexes, may
  count only the invocations those filters let through). A page may hold fewer than
  ``limit`` items (even none) and still have a ``next`` cursor: the caller asks again from
  there. The cursor is the registration order, so pages never repeat
  or skip an invocation that was stored before the first page was read.
- :meth:`Browse.activity` counts finished invocations per time bucket; a backend that cannot
  count failures exactly without reading every record of the window may estimate them from
  a sample, and says so (``estimated``).
- :meth:`Browse.relations` gives the neighbours of one invocation (parent, children,
  wait edges both ways, declared dependencies), children capped at ``limit``.

A second role, :class:`KeyUsage`, says which running-limit keys hold slots right now and who
holds them (:meth:`KeyUsage.running_keys`): bounded by the work in flight (at most the slots
of the live workers), never by the invocations stored.

Counts by status and task, workers and one invocation's history come from
:class:`~kubenenc.backends.contract.Records` and
:class:`~kubenenc.backends.contract.Coordination` as they are.

What a filter means is written once, in :func:`matches`; a backend may push any part of it
into its store, but must give the same answer. The conformance suite checks every backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import InvocationRecord
from kubenenc.status import Status

DEFAULT_BUDGET = 5000
"""Stored invocations one :meth:`Browse.browse` call examines at most."""


@dataclass(frozen=True, slots=True)
class InvocationFilter:
    """Which invocations to list; every field that is set must match.

    ``since``/``until`` bound ``created_at`` (``since <= created_at < until``); ``text`` is a
    case-insensitive substring of ``display`` (the call as a person reads it, ``task(args)``).
    """

    app: str | None = None
    task: str | None = None
    status: Status | None = None
    pool: str | None = None
    worker: WorkerId | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None


def matches(rec: InvocationRecord, where: InvocationFilter) -> bool:
    """Whether ``rec`` passes ``where``: the meaning of a filter, for every backend."""
    return (
        (where.app is None or rec.app == where.app)
        and (where.task is None or rec.task == where.task)
        and (where.status is None or rec.status is where.status)
        and (where.pool is None or rec.pool == where.pool)
        and (where.worker is None or rec.worker == where.worker)
        and (where.since is None or rec.created_at >= where.since)
        and (where.until is None or rec.created_at < where.until)
        and (where.text is None or where.text.casefold() in rec.display.casefold())
    )


@dataclass(frozen=True, slots=True)
class InvocationPage:
    """One page of :meth:`Browse.browse`."""

    items: list[InvocationRecord]
    """Matching invocations, newest first (history may be left empty)."""
    next: str | None
    """Cursor of the next (older) page; None when nothing older is stored."""
    scanned: int
    """How many stored invocations this call examined (at most the budget)."""


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """Invocations that reached a final status in ``[start, start + width)``."""

    start: float
    finished: int
    failed: int
    estimated: bool = False
    """``failed`` was scaled from a sample of the bucket's invocations."""


@dataclass(frozen=True, slots=True)
class Relations:
    """The neighbours of one invocation, by id."""

    parent: InvocationId | None
    children: list[InvocationId]
    """Invocations registered from inside this one (oldest first, at most ``limit``)."""
    more_children: bool
    """True when there are children beyond ``children``."""
    waits_on: list[InvocationId]
    """What it is paused on right now (wait edges)."""
    waited_by: list[InvocationId]
    """Who is paused on it right now."""
    depends_on: tuple[InvocationId, ...] = ()


@runtime_checkable
class Browse(Protocol):
    """Bounded read queries for people (see the module docstring)."""

    def browse(
        self,
        where: InvocationFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = DEFAULT_BUDGET,
    ) -> InvocationPage:
        """Invocations matching ``where``, newest first, starting after ``cursor`` (None:
        the newest); at most ``limit`` items, at most ``budget`` invocations examined."""
        ...

    def activity(
        self, *, since: float, width: float, buckets: int, app: str | None = None
    ) -> list[ActivityBucket]:
        """``buckets`` consecutive buckets of ``width`` seconds from ``since``: how many
        invocations (of ``app``) reached SUCCESS, FAILED or CANCELLED in each, and how many
        of those FAILED. Invocations already deleted by retention are not counted."""
        ...

    def relations(self, id: InvocationId, *, limit: int = 200) -> Relations | None:
        """The neighbours of ``id``, or None when it is not stored."""
        ...


@dataclass(frozen=True, slots=True)
class RunningKey:
    """A running-limit key (see :func:`kubenenc.concurrency.running_key`) with slots held."""

    key: str
    """As stored: ``scope:task#digest``, or ``scope:task#*`` when the limit counts the task."""
    running: int
    """Slots held on it right now: its RUNNING invocations, counted against its limit."""
    holders: tuple[InvocationId, ...]
    """RUNNING invocations holding it (sorted; at most ``holders`` of
    :meth:`KeyUsage.running_keys`; fewer when the ``budget`` ran out before all were found)."""


@dataclass(frozen=True, slots=True)
class RunningKeys:
    """The answer of :meth:`KeyUsage.running_keys`."""

    keys: list[RunningKey]
    """Most slots held first, then by key."""
    more: bool
    """True when more keys hold slots than were returned."""


@runtime_checkable
class KeyUsage(Protocol):
    """Which running-limit keys hold slots now, and who holds them (for the dashboard's
    ConcurrencyPolicies: "customer ann: 1 of 1 running")."""

    def running_keys(
        self, *, limit: int = 100, holders: int = 10, budget: int = DEFAULT_BUDGET
    ) -> RunningKeys:
        """The ``limit`` keys with the most slots held (zero-slot keys are never listed), each
        with up to ``holders`` of its RUNNING invocations, found among at most ``budget``
        invocations that workers hold (RUNNING or PAUSED). A snapshot: it may be stale the
        moment it returns, but each count was true at one moment."""
        ...


def is_running_key(name: str) -> bool:
    """Whether a stored slot counter's ``name`` is a running key. The embedded stores keep
    the rate logs' counters (``rate:<key>:<n>``, see :class:`kubenenc.backends.engine.RateLog`)
    in the same table: a running key ends with ``#`` and a digest or ``*``, never a ``:``."""
    tail = name.rpartition("#")[2]
    return "#" in name and ":" not in tail


def running_keys_of(
    counts: Iterable[tuple[str, int]],
    held: Iterable[tuple[InvocationId, str | None]],
    limit: int,
    holders: int,
) -> RunningKeys:
    """:meth:`KeyUsage.running_keys` from a store's slot counters (``counts``: name, slots)
    and its RUNNING invocations with their running keys (``held``, already cut to the
    budget): the policy written once for every backend."""
    ranked = sorted(
        ((k, n) for k, n in counts if n > 0 and is_running_key(k)), key=lambda kn: (-kn[1], kn[0])
    )
    chosen = ranked[:limit]
    found: dict[str, list[InvocationId]] = {k: [] for k, _ in chosen}
    for id, key in held:
        ids = found.get(key) if key is not None else None
        if ids is not None and len(ids) < holders:
            ids.append(id)
    keys = [RunningKey(k, n, tuple(sorted(found[k]))) for k, n in chosen]
    return RunningKeys(keys, more=len(ranked) > limit)


def bucket_index(at: float, since: float, width: float, buckets: int) -> int | None:
    """Which bucket ``at`` falls in, or None outside ``[since, since + width * buckets)``."""
    if at < since:
        return None
    i = int((at - since) // width)
    return i if i < buckets else None


def cursor_of(seq: int) -> str:
    """The cursor text of a registration sequence number (pages continue below it)."""
    return str(seq)


def seq_of(cursor: str | None) -> int | None:
    """Inverse of :func:`cursor_of`; None for no cursor. A malformed one raises ValueError."""
    if cursor is None or cursor == "":
        return None
    seq = int(cursor)
    if seq < 0:
        raise ValueError(f"bad cursor {cursor!r}")
    return seq
