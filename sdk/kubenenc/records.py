"""Plain data that crosses the backend contract.

Backends store and return these; they never see user objects (arguments and results arrive
already serialized as text) and never compute keys (the SDK did, see
:mod:`kubenenc.concurrency`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from kubenenc.ids import InvocationId, TaskId, WorkerId
from kubenenc.status import Status


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded status change: when, by which worker (if any), and why."""

    status: Status
    at: float
    worker: WorkerId | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as it travels: ``type`` is ``module.QualName`` of its class."""

    type: str
    message: str
    traceback: str = ""


class NewInvocation(NamedTuple):
    """Everything a backend needs to register one invocation.

    A named tuple rather than a frozen dataclass: as immutable and as typed, but built about
    ten times faster, and the SDK builds one per call (``parallelize`` of many calls).
    """

    id: InvocationId
    app: str
    task: TaskId
    args: str
    """The bound arguments, ``{name: value}``, serialized."""
    call_key: str
    display: str
    """``task(args)`` as a human reads it, used in cycle errors (truncated)."""
    pool: str = "default"
    priority: int = 0
    max_retries: int = 0
    timeout: float | None = None
    running_key: str | None = None
    running_limit: int | None = None
    registration_key: str | None = None
    registration: str = "allow"
    depends_on: tuple[InvocationId, ...] = ()
    parent: InvocationId | None = None
    serializer: str = "json"
    not_before: float = 0.0
    """Seconds since the epoch before which no claim takes it (a delayed call: ``countdown``
    or ``eta``); 0: claimable at once."""
    rate_key: str | None = None
    rate: str | None = None
    """``"N/window/burst"`` (see :attr:`kubenenc.ConcurrencyPolicy.rate_spec`): at most N
    claims per sliding window of ``window`` seconds on ``rate_key``, and ``burst`` per
    ``window * burst / N``."""
    callbacks: str | None = None
    """What a finish registers with its outcome, JSON (see :mod:`kubenenc.callbacks`)."""
    headers: Mapping[str, str] | None = None
    """Text metadata carried with the call and stored as given (trace context, the id a
    ``kubenenc retry`` re-registers): every backend keeps it in the record."""


@dataclass(slots=True)
class InvocationRecord:
    """A stored invocation as read back from a backend (a snapshot, not a live object)."""

    id: InvocationId
    app: str
    task: TaskId
    args: str
    call_key: str
    display: str
    pool: str
    priority: int
    status: Status
    created_at: float
    updated_at: float
    max_retries: int = 0
    timeout: float | None = None
    running_key: str | None = None
    running_limit: int | None = None
    registration_key: str | None = None
    depends_on: tuple[InvocationId, ...] = ()
    parent: InvocationId | None = None
    serializer: str = "json"
    rate_key: str | None = None
    rate: str | None = None
    callbacks: str | None = None
    attempt: int = 0
    """Tries that ended in a failure (RETRY or FAILED); a success does not count one."""
    lost: int = 0
    """How many times a dead worker's hold on it was handed back."""
    worker: WorkerId | None = None
    waiters: int = 0
    """How many invocations are paused on this one (claim order: more waiters first)."""
    not_before: float = 0.0
    result: str | None = None
    error: ErrorInfo | None = None
    history: list[Transition] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    """The call's :attr:`NewInvocation.headers` (empty when it had none)."""

    @property
    def is_final(self) -> bool:
        """Whether the status is final."""
        return self.status.is_final


class RegisterKind(StrEnum):
    """What registering a call did."""

    CREATED = "created"
    DEDUPLICATED = "deduplicated"
    """An equal non-final invocation existed; its id is returned instead."""
    REJECTED = "rejected"
    """An equal non-final invocation existed and the policy is ``reject``."""


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """The outcome of registering one :class:`NewInvocation`."""

    kind: RegisterKind
    id: InvocationId
    """The new invocation's id, or the existing one's when deduplicated or rejected."""


class OutcomeKind(StrEnum):
    """How a run ended, as the worker reports it."""

    SUCCESS = "success"
    FAILED = "failed"
    RETRY = "retry"
    HANDED_BACK = "handed_back"
    """Not run to the end (drain): back to PENDING, no try counted."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished run, to store with :meth:`~kubenenc.backends.contract.Queue.finish`."""

    id: InvocationId
    kind: OutcomeKind
    result: str | None = None
    error: ErrorInfo | None = None
    retry_at: float = 0.0
    reason: str | None = None


class PauseKind(StrEnum):
    """What asking to wait did."""

    READY = "ready"
    """Every target is already final: no pause, keep running."""
    PAUSED = "paused"
    """Now PAUSED, slot released; resume with ``resume`` once the targets are final."""
    CYCLE = "cycle"
    """The wait would close a loop; still RUNNING; ``loop`` describes it."""
    GONE = "gone"
    """The waiter is no longer RUNNING here (cancelled, failed or handed back): abort it."""


@dataclass(frozen=True, slots=True)
class PauseResult:
    """The outcome of :meth:`~kubenenc.backends.contract.Coordination.pause`."""

    kind: PauseKind
    loop: tuple[str, ...] = ()
    """For CYCLE: ``task(args)`` lines from the waited-on call up to the waiter."""


@dataclass(frozen=True, slots=True)
class ResumeResult:
    """The outcome of :meth:`~kubenenc.backends.contract.Coordination.resume`."""

    resumed: tuple[InvocationId, ...] = ()
    """Now RUNNING again on the worker: continue them."""
    gone: tuple[InvocationId, ...] = ()
    """No longer PAUSED on the worker (cancelled, failed, handed back): abort them."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's heartbeat: who it is and what it holds right now."""

    id: WorkerId
    pool: str
    slots: int
    running: int
    paused: int
    at: float
    host: str = ""
