"""Which optional roles a backend offers, found once.

The optional roles are declared protocols (see :mod:`kubenenc.backends.contract` and
:class:`~kubenenc.backends.browse.Browse`). A part that uses one asks :func:`roles_of` once,
when it gets the backend, and keeps the answer: an ``isinstance`` check against a protocol
walks its members, and a ``getattr`` at each use hides which roles exist at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubenenc.backends.browse import Browse, KeyUsage
from kubenenc.backends.contract import (
    Admin,
    Backend,
    BatchRegister,
    DueTimes,
    FinishAndClaim,
    Overdue,
    ResumeEarly,
    TickClaims,
    ValueLimit,
    WorkNotifier,
)


@dataclass(frozen=True, slots=True)
class Roles:
    """The optional roles of one backend object: each is the backend itself, typed as the
    role, or None when it does not offer it."""

    backend: Backend
    finish_and_claim: FinishAndClaim | None
    resume_early: ResumeEarly | None
    notifier: WorkNotifier | None
    due_times: DueTimes | None
    tick_claims: TickClaims | None
    key_usage: KeyUsage | None
    admin: Admin | None
    overdue: Overdue | None
    browse: Browse | None
    register_batch: int
    """Largest batch :meth:`~kubenenc.backends.contract.Queue.register` takes in one call
    (0: the SDK's own batching; see :class:`~kubenenc.backends.contract.BatchRegister`)."""
    max_value_bytes: int | None
    """See :class:`~kubenenc.backends.contract.ValueLimit`; None: no limit of its own."""


def roles_of(backend: Backend) -> Roles:
    """The optional roles ``backend`` offers."""
    return Roles(
        backend=backend,
        finish_and_claim=backend if isinstance(backend, FinishAndClaim) else None,
        resume_early=backend if isinstance(backend, ResumeEarly) else None,
        notifier=backend if isinstance(backend, WorkNotifier) else None,
        due_times=backend if isinstance(backend, DueTimes) else None,
        tick_claims=backend if isinstance(backend, TickClaims) else None,
        key_usage=backend if isinstance(backend, KeyUsage) else None,
        admin=backend if isinstance(backend, Admin) else None,
        overdue=backend if isinstance(backend, Overdue) else None,
        browse=backend if isinstance(backend, Browse) else None,
        register_batch=backend.register_batch if isinstance(backend, BatchRegister) else 0,
        max_value_bytes=value_limit_of(backend),
    )


def value_limit_of(kind: object) -> int | None:
    """The :class:`~kubenenc.backends.contract.ValueLimit` of a backend object or class
    (read from the class when the backend is not open: reading it must not connect)."""
    return kind.max_value_bytes if isinstance(kind, ValueLimit) else None
