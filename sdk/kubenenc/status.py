"""The lifecycle of an invocation, as data.

One table (:data:`TRANSITIONS`) lists every allowed move and :func:`check_transition` is the
single place that enforces it; backends call it before writing a status, so no backend can
invent its own lifecycle.

- ``REGISTERED -> PENDING -> RUNNING -> SUCCESS | FAILED | RETRY -> PENDING``
- ``RUNNING -> PAUSED -> RUNNING`` while the invocation waits on others (its slot is freed)
- ``REGISTERED -> WAITING_DEPENDENCIES -> PENDING`` for declared ``depends_on``
- ``RUNNING | PAUSED -> PENDING`` when a dead worker's work is handed back (at-least-once)
- any non-final status -> ``CANCELLED`` or ``FAILED`` (cycle, failed dependency, timeout,
  worker lost too often)
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from kubenenc.errors import InvalidTransition


class Status(StrEnum):
    """Where an invocation stands. Values are stable strings stored by every backend."""

    REGISTERED = "REGISTERED"
    WAITING_DEPENDENCIES = "WAITING_DEPENDENCIES"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        """True for SUCCESS, FAILED and CANCELLED: nothing moves such an invocation again."""
        return self in FINAL


FINAL: frozenset[Status] = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELLED})

_ABORT = frozenset({Status.FAILED, Status.CANCELLED})

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.REGISTERED: frozenset({Status.PENDING, Status.WAITING_DEPENDENCIES}) | _ABORT,
    Status.WAITING_DEPENDENCIES: frozenset({Status.PENDING}) | _ABORT,
    Status.PENDING: frozenset({Status.RUNNING}) | _ABORT,
    Status.RUNNING: frozenset({Status.SUCCESS, Status.RETRY, Status.PAUSED, Status.PENDING})
    | _ABORT,
    Status.PAUSED: frozenset({Status.RUNNING, Status.PENDING}) | _ABORT,
    Status.RETRY: frozenset({Status.PENDING}) | _ABORT,
    Status.SUCCESS: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def can_transition(src: Status, dst: Status) -> bool:
    """Whether ``src -> dst`` is in the table."""
    return dst in TRANSITIONS[src]


def check_transition(src: Status, dst: Status) -> None:
    """Raise :class:`InvalidTransition` unless ``src -> dst`` is allowed."""
    if dst not in TRANSITIONS[src]:
        allowed = ", ".join(sorted(TRANSITIONS[src])) or "none (final)"
        raise InvalidTransition(f"{src} -> {dst} is not allowed; from {src}: {allowed}")
