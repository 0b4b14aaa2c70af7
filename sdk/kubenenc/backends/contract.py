"""The backend contract: four small role interfaces, the class that joins them, and the
optional roles a backend may add.

- :class:`Queue` moves invocations through their lifecycle (register, claim, finish, cancel).
- :class:`Coordination` is what makes waiting safe across workers: pause with cycle check,
  resume, heartbeats, recovery of dead workers' work, blocking until results exist.
- :class:`Records` reads what is stored.
- :class:`Policies` holds named concurrency policies (written by the operator).

Optional roles, each a declared protocol, found once per backend object by
:func:`kubenenc.backends.roles.roles_of` (never by ``getattr`` at each use):
:class:`FinishAndClaim`, :class:`ResumeEarly`, :class:`WorkNotifier`, :class:`Admin`,
:class:`BatchRegister`, :class:`ValueLimit`, and
:class:`kubenenc.backends.browse.Browse` (a module of its own: bounded, cursor-paginated
reads for the dashboard). Every bundled backend offers Admin and Browse.

Every method is **atomic** on its own: the state it leaves is as if it ran alone, even with
many processes calling it at once. Policy lives in the SDK (keys, statuses, cycle rules,
retry timing); a backend only applies it, and must use :func:`kubenenc.status.check_transition`
and :func:`kubenenc.waitgraph.find_loop` rather than its own rules. Times are passed in
(``now``: seconds since the epoch) so tests can control them; a server-backed backend
judges heartbeats on the server's clock (see :meth:`Coordination.recover`).

Ordering of claims: among claimable PENDING invocations of a pool, more waiters first (what
others wait on runs first), then higher priority, then older. An invocation is claimable
when ``not_before <= now`` and its running key is below its limit (skipped ones stay queued
in place).

``NewInvocation.call_key`` always starts with the task id and ``#`` (it is built by
:func:`kubenenc.concurrency.call_key`), so a backend may derive the task from it.

The conformance suite (:mod:`kubenenc.testing`, ``docs/plugins.md``) checks all of this for
every backend.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import ClassVar, Protocol, runtime_checkable

from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    NewInvocation,
    Outcome,
    PauseResult,
    RegisterResult,
    ResumeResult,
    WorkerInfo,
)
from kubenenc.status import Status


class Queue(Protocol):
    """Moving invocations through their lifecycle."""

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        """Store each invocation, in order, applying its registration policy atomically.

        A ``dedupe``/``reject`` invocation whose ``registration_key`` is held by a non-final
        invocation is not stored (DEDUPLICATED / REJECTED with the holder's id); later items
        of the same batch see earlier ones. A stored one goes REGISTERED -> PENDING, or ->
        WAITING_DEPENDENCIES while any ``depends_on`` is not SUCCESS (and straight to FAILED,
        reason DependencyFailed, when one already failed or was cancelled, or is unknown).
        """
        ...

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        """Take up to ``limit`` claimable invocations of ``pool``: PENDING -> RUNNING.

        Each taken invocation holds one slot of its running key until it pauses or ends. The
        returned records may leave ``history`` empty (the worker does not need it).
        """
        ...

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """Store each outcome of an invocation RUNNING on ``worker``; release its slot.

        SUCCESS/FAILED store the result/error (FAILED also releases dependents with
        DependencyFailed; SUCCESS moves dependents whose dependencies all succeeded to
        PENDING). RETRY stores the error, counts a try and requeues with
        ``not_before=retry_at`` (RUNNING -> RETRY -> PENDING). HANDED_BACK requeues at once
        without counting a try or a loss; it also takes an invocation PAUSED on ``worker``
        (a draining worker gives back its waiting calls: their wait edges and waiter counts
        are dropped, as recovery would, but ``lost`` is not counted). Returns, per outcome,
        False when the invocation was not RUNNING (or, for HANDED_BACK, PAUSED) on this
        worker any more (cancelled, recovered): that outcome is dropped.
        """
        ...

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        """Move a non-final invocation to CANCELLED; False if it was already final/unknown.

        Releases its slot and registration key, fails its dependents (DependencyFailed).
        A worker running it notices through :meth:`Records.get_many` and stops it.
        """
        ...

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        """Move a non-final invocation to FAILED with an error of type ``error`` (a path)."""
        ...


class Coordination(Protocol):
    """Waiting, resuming, and knowing which workers are alive."""

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        """Make ``id`` (RUNNING on ``worker``) wait until every target is final.

        In one atomic step: if ``id`` is not RUNNING on ``worker`` -> GONE. If every target
        is final -> READY. If :func:`~kubenenc.waitgraph.find_loop` finds a loop -> CYCLE
        (nothing written, except that a target that is not itself in the chain and not
        final is failed with CycleDetectedError so the loop spawns nothing further).
        Otherwise write the edges, count one more waiter on each non-final target, move
        RUNNING -> PAUSED and release the running slot -> PAUSED. Unknown targets count as
        final (the caller will find no result).

        The chain walked for loops includes declared dependencies: an invocation that is
        WAITING_DEPENDENCIES on ``x`` waits on ``x`` too, but as it runs no code yet it closes
        a loop only by id, never by call key.
        """
        ...

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """Resume up to ``limit`` of ``ids`` (PAUSED on ``worker``) whose targets are all
        final and whose running key has a free slot: PAUSED -> RUNNING, edges removed.

        Also reports as ``gone`` the ``ids`` that are no longer PAUSED on this worker
        (cancelled, failed, handed back); the rest stay paused.
        """
        ...

    def heartbeat(self, info: WorkerInfo) -> None:
        """Record that a worker is alive, with what it holds.

        A backend with a clock of its own (a server) stamps the beat with that clock rather
        than ``info.at``, so that liveness does not depend on the workers' clocks agreeing
        (:meth:`workers` still shows ``info`` as given)."""
        ...

    def unregister_worker(self, worker: WorkerId) -> None:
        """Forget a worker that stopped cleanly (it handed back or finished its work)."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """The last heartbeat of every known worker."""
        ...

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        """Hand back the work of workers silent for longer than ``heartbeat_timeout``.

        Their RUNNING and PAUSED invocations go back to PENDING (edges removed, slots
        released, ``lost`` counted), or to FAILED with WorkerLost once ``lost`` exceeds
        ``max_lost``; the silent workers are forgotten. A holder with no heartbeat at all
        counts as silent. Safe to call from every worker at once, and called on every
        heartbeat of every worker, so it must be cheap when there is nothing to recover.
        Returns the ids handed back or failed.

        A backend with a clock of its own measures silence on it (``now`` then only stamps
        the history), and may leave out of it the stretches in which no heartbeat and no
        recovery reached it at all (an outage every worker saw is not everyone's death).
        Redis and MongoDB do both (the URL option ``clock=caller`` judges on the callers'
        times instead, for tests that make time up).
        """
        ...

    def release_unheld(
        self, worker: WorkerId, held: Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        """Hand back what the backend says ``worker`` holds but ``worker`` itself does not.

        Every RUNNING or PAUSED invocation of ``worker`` whose id is not in ``held`` goes
        back as :meth:`recover` would give it back (``lost`` counted, FAILED with WorkerLost
        past ``max_lost``). A live worker calls it with everything it holds -- running,
        paused, and finished but not yet written -- at a moment when none of its own calls
        is in flight. It closes the gap that heartbeats cannot: a server that lost a
        finish (or a claim's reply) in a crash keeps the call on a worker that is alive and
        no longer has it. Returns the ids handed back or failed.
        """
        ...

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        """Block until every one of ``ids`` is final (True) or ``timeout`` passes (False).

        Unknown ids count as final. Once it returns True, ``get``/``get_many`` from the same
        process show the final records (with their result or error).
        """
        ...


class Records(Protocol):
    """Reading what is stored."""

    def get(self, id: InvocationId) -> InvocationRecord | None:
        """One invocation with its history, or None."""
        ...

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        """Several invocations, in the order asked (history may be left empty)."""
        ...

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        """Invocations matching every given filter, newest first (history may be left empty)."""
        ...

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        """Exact number of invocations matching every given filter, by status (statuses with
        none may be left out)."""
        ...

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        """``{task: counts(app=app, pool=pool, task=task)}`` for every task, in one read
        (tasks and statuses with none may be left out). The operator reads every
        TaskDefinition's numbers with one call per backend and pool."""
        ...


class Policies(Protocol):
    """Named concurrency policies stored in the backend.

    The operator writes a ``ConcurrencyPolicy`` custom resource here; a task declared with
    ``concurrency="name"`` reads it at each call (briefly cached), so a change takes effect
    without restarting anything. Specs are JSON text of :class:`~kubenenc.ConcurrencyPolicy`.
    """

    def set_policy(self, name: str, spec: str | None) -> None:
        """Store (or, with None, delete) the policy called ``name``."""
        ...

    def get_policy(self, name: str) -> str | None:
        """The stored spec of ``name``, or None."""
        ...

    def policies(self) -> dict[str, str]:
        """Every stored policy, by name."""
        ...


@runtime_checkable
class FinishAndClaim(Protocol):
    """Optional fast path: :meth:`Queue.finish` then :meth:`Queue.claim` in one atomic step.

    A worker that has outcomes to store and free slots does both at once, halving round
    trips on the hot path. Backends may offer it.
    """

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """``(finish(outcomes, worker, now), claim(pool, worker, limit, now))``, atomically."""
        ...


@runtime_checkable
class ResumeEarly(Protocol):
    """Optional: resume paused invocations whose wait timed out before its targets ended.

    ``inv.result(timeout=...)`` inside a task pauses like any wait; when the timeout passes
    first, the worker resumes the caller with this step and raises ResultTimeout in it. A
    backend without it cannot end a pause early, so on it a timed wait keeps its slot
    while it waits (see the worker).
    """

    def resume_early(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """:meth:`Coordination.resume`, whether or not the targets are final: up to
        ``limit`` of ``ids`` (PAUSED on ``worker``, running key with a free slot) go PAUSED
        -> RUNNING, their wait edges removed and the waiter count of each non-final target
        lowered by one. ``gone`` as in :meth:`Coordination.resume`."""
        ...


@runtime_checkable
class Overdue(Protocol):
    """Optional: find runs past their timeout by reading only the work in flight.

    The enforcer fails RUNNING invocations whose worker let them run past their timeout
    (a hung worker). Without this role it reads every RUNNING invocation through
    :meth:`Records.query`, which walks the index of every invocation kept for retention;
    a backend that knows what its workers hold offers this instead. Checked with
    ``isinstance``.
    """

    def overdue(self, now: float, grace: float) -> list[InvocationRecord]:
        """RUNNING invocations with a ``timeout`` whose run started (``updated_at``: the
        claim, or the resume after a pause) more than ``timeout + grace`` seconds before
        ``now``; at most a thousand per call (the enforcer calls again later)."""
        ...


@runtime_checkable
class WorkNotifier(Protocol):
    """Optional: lets an idle worker block until there may be work, instead of polling.

    A worker with such a backend runs one thread that waits here and wakes its loop, so new
    work is claimed one hop after it is registered (without it the loop polls, backing off
    while idle). A True may be spurious.
    """

    def wait_for_work(self, pool: str, timeout: float) -> bool:
        """Block until invocations may have become claimable in ``pool`` (True), or
        ``timeout`` seconds pass (False)."""
        ...


@runtime_checkable
class DueTimes(Protocol):
    """Optional: when the next call of a pool that waits on time comes due.

    With a :class:`WorkNotifier` it lets an idle worker sleep until that moment or a wake-up
    instead of polling: a backend that offers both must wake waiting workers when a call
    that is due later is registered (a sleeper may have read an earlier ``next_due``).
    """

    def next_due(self, pool: str, now: float) -> float | None:
        """The earliest ``not_before`` later than ``now`` among PENDING invocations of
        ``pool`` (delayed calls, retries backing off, calls over their rate), or None."""
        ...


@runtime_checkable
class TickClaims(Protocol):
    """Optional: schedules' ticks, each claimed once across every worker (and the operator).

    A schedule (:mod:`kubenenc.schedules`) is known by a stored name; the backend keeps the
    last tick claimed for it (whole seconds since the epoch). Every process that runs the
    schedule reads it, works out which ticks are due and which calls they submit, and then
    claims them with a compare-and-set that registers those calls in the same atomic step:
    two workers that saw the same tick cannot both submit it, and a worker that dies between
    the claim and the registration cannot lose it (there is no between). Every built-in
    backend offers it (``kubenenc/testing/test_schedules.py``).
    """

    def last_tick(self, schedule: str) -> int | None:
        """The last tick claimed for ``schedule``, or None when none ever was."""
        ...

    def claim_tick(
        self,
        schedule: str,
        previous: int | None,
        tick: int,
        new: Sequence[NewInvocation],
        now: float,
    ) -> list[RegisterResult] | None:
        """If the last tick claimed for ``schedule`` is still ``previous`` (None: none) and
        ``tick`` is later, make ``tick`` the last one and register ``new`` (as
        :meth:`Queue.register` would, policies applied) in the same step, returning their
        results; otherwise write nothing and return None."""
        ...


@runtime_checkable
class Admin(Protocol):
    """Optional: bulk selection and deletion for the admin commands (``kubenenc cancel``,
    ``retry``, ``purge``). Every built-in backend offers it (see
    ``kubenenc/testing/test_admin.py``); the commands say so when a backend does not."""

    def select(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        statuses: Collection[Status] | None = None,
        updated_before: float | None = None,
    ) -> list[InvocationId]:
        """Ids of every invocation matching every given filter (``updated_before``: last
        changed before that time), oldest registration first. Not atomic with what follows:
        the caller re-checks each one as it acts (cancel, purge and re-register do)."""
        ...

    def oldest_pending(self, pool: str) -> float | None:
        """``created_at`` of the oldest PENDING invocation of ``pool`` (due or not, parked
        behind a running limit or not), or None when it has none. For the queue-age metric:
        read every few seconds, so it must not walk finished invocations."""
        ...

    def purge(self, ids: Sequence[InvocationId]) -> int:
        """Delete the records of those ``ids`` that are final (with their history and index
        entries); non-final and unknown ids are left alone. Returns how many were deleted.
        Counts by status may keep counting them, as after the retention sweep."""
        ...


@runtime_checkable
class BatchRegister(Protocol):
    """Optional: :meth:`Queue.register` takes batches of up to ``register_batch`` items in
    one call (a backend that pipelines its own round trips, reading the sequence a slice at
    a time as it sends). The SDK then hands it that many at once instead of its own batches
    of 1,000 sent from a second thread."""

    register_batch: ClassVar[int]


@runtime_checkable
class ValueLimit(Protocol):
    """Optional: the largest encoded arguments or result the backend can store, in bytes
    (a class attribute, so it is read without connecting). The SDK lowers its own limit to
    it."""

    max_value_bytes: ClassVar[int]


@runtime_checkable
class Backend(Queue, Coordination, Records, Policies, Protocol):
    """A complete backend: the four roles plus lifecycle.

    Implementations are registered under the entry-point group ``kubenenc.backends`` and
    built with ``from_url``. ``shared_across_processes`` is False for a backend whose state
    lives in one process (memory): process-mode workers refuse it.
    """

    shared_across_processes: ClassVar[bool]

    @classmethod
    def from_url(cls, url: str) -> Backend:
        """Open the backend that ``url`` names; raise ConfigurationError on a bad URL and
        BackendUnavailable when it cannot be reached."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...
