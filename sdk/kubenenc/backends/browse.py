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

Counts by status and task, workers and one invocation's history come from
:class:`~kubenenc.backends.contract.Records` and
:class:`~kubenenc.backends.contract.Coordination` as they are.

What a filter means is written once, in :func:`matches`; a backend may push any part of it
into its store, but must give the same answer. The conformance suite checks every backend.
"""

from __future__ import annotations

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
