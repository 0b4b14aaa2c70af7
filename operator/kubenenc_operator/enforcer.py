"""The enforcer: what only time reveals, swept by the elected leader.

Every check that decides correctness runs inline and atomically in the backends (the cycle
check when a wait edge is written, running limits when a claim is made, dependents failed
with what they depend on). What is left needs a clock: work held by workers whose heartbeat
expired (handed back by :meth:`~kubenenc.backends.contract.Coordination.recover`) and runs
far past their timeout whose worker did not stop them (:func:`fail_overdue`). :func:`sweep`
does both for each backend; the CLI runs it on the leader only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kubenenc.backends.engine import error_path
from kubenenc.backends.roles import Roles
from kubenenc.errors import TaskTimeout
from kubenenc.ids import InvocationId
from kubenenc.settings import Liveness
from kubenenc.status import Status

from kubenenc_operator.context import Ctx

log = logging.getLogger(__name__)


def fail_overdue(roles: Roles, now: float, grace: float) -> list[InvocationId]:
    """Fail (TaskTimeout) the RUNNING invocations that ran past their ``timeout`` by more than
    ``grace`` seconds, and return their ids.

    Their worker should have stopped them at the timeout; one that did not is hung (its loop
    stuck while a thread still sends heartbeats, so :meth:`recover` never fires) and holds
    the invocation's running slot for ever. Failing it releases the slot, fails its
    dependents and wakes its waiters; the worker, if it ever looks, sees it is no longer its
    own and stops it. No retry: the worker that would schedule it is the one not working.
    The start is the last change of the record (the claim, or the resume after a pause), so
    the paused time is never counted against it.
    """
    backend = roles.backend
    if roles.overdue is not None:  # reads only the work in flight
        late = roles.overdue.overdue(now, grace)
    else:  # walks the index of every invocation kept: slow with many
        running = backend.counts().get(Status.RUNNING, 0)
        late = backend.query(status=Status.RUNNING, limit=running) if running else []
    failed: list[InvocationId] = []
    for r in late:
        if r.timeout is None or now - r.updated_at <= r.timeout + grace:
            continue
        message = (
            f"{r.display} ran past its timeout of {r.timeout:g} s by more than {grace:g} s and "
            f"its worker {r.worker} did not stop it (hung?): failed by the operator's enforcer"
        )
        if backend.fail(r.id, error_path(TaskTimeout), message, now):
            failed.append(r.id)
    return failed


def sweep(ctx: Ctx, urls: Iterable[str], *, overdue: bool = True) -> int:
    """One enforcer pass over each backend: hand back the work of workers whose heartbeat
    expired (:meth:`~kubenenc.backends.contract.Coordination.recover`) and, with ``overdue``,
    fail the invocations their live worker left running past their timeout
    (:func:`fail_overdue`). Returns how many invocations it moved.

    The other checks the design lists are done inline, atomically, by every backend, so a
    sweep would find nothing: ``pause`` checks the whole wait chain (edges and declared
    dependencies) and writes the edge in one atomic step, so no loop can form between two
    workers' pauses; ``finish``/``cancel``/``fail`` of an invocation wake its waiters and
    fail its declared dependents in the same step, so no wait is left on a failed one. A
    paused invocation is a suspended call inside its worker's process: only that worker can
    resume it, and when the worker dies ``recover`` hands it back. See operator/README.md.
    """
    total = 0
    for url in urls:
        live = ctx.liveness_of(url)  # what the pools on it give their workers

        def one(roles: Roles, live: Liveness = live) -> int:
            now = ctx.clock()
            moved = roles.backend.recover(now, live.heartbeat_timeout, live.max_lost)
            ctx.metrics.inc("kubenenc_operator_recovered_total", len(moved))
            if not overdue:
                return len(moved)
            late = fail_overdue(roles, now, ctx.settings.timeout_grace)
            ctx.metrics.inc("kubenenc_operator_overdue_failed_total", len(late))
            for id in late:
                log.warning("invocation %s ran past its timeout: failed", id)
            return len(moved) + len(late)

        try:
            total += ctx.backends.use_roles(url, one)
        except Exception:
            log.exception("enforcer sweep failed")
    return total
