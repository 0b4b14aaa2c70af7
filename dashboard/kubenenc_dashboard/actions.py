"""The state-changing actions a signed-in person may take (see :mod:`.security`)."""

from __future__ import annotations

import time

from kubenenc.backends.browse import Browse, InvocationFilter
from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId, TaskId, new_invocation_id
from kubenenc.records import NewInvocation, RegisterKind
from kubenenc.status import Status

CANCEL_ALL_MAX = 1000
"""Pending calls one "cancel all pending" request cancels at most (press again for more)."""
MAX_PAGES = 50
"""Browse pages one such request reads at most (each bounded by the browse budget)."""


def cancel(backend: Backend, id: InvocationId) -> bool:
    """Cancel one non-final invocation."""
    return backend.cancel(id, time.time(), "cancelled from the dashboard")


def retry(backend: Backend, id: InvocationId) -> InvocationId | None:
    """Submit a FAILED (or CANCELLED) invocation again, as a new invocation with the same
    task, arguments and options; None when it is not stored, not failed, or refused by its
    registration policy."""
    rec = backend.get(id)
    if rec is None or rec.status not in (Status.FAILED, Status.CANCELLED):
        return None
    new = NewInvocation(
        id=new_invocation_id(), app=rec.app, task=rec.task, args=rec.args,
        call_key=rec.call_key, display=rec.display, pool=rec.pool, priority=rec.priority,
        max_retries=rec.max_retries, timeout=rec.timeout, running_key=rec.running_key,
        running_limit=rec.running_limit, registration_key=rec.registration_key,
        registration="dedupe" if rec.registration_key else "allow",
        serializer=rec.serializer,
    )  # fmt: skip
    [res] = backend.register([new], time.time())
    if res.kind is RegisterKind.REJECTED:
        return None
    return res.id


def cancel_pending(backend: Backend, task: TaskId, app: str | None) -> int:
    """Cancel up to :data:`CANCEL_ALL_MAX` PENDING invocations of ``task``; how many were."""
    assert isinstance(backend, Browse)
    where = InvocationFilter(app=app, task=task, status=Status.PENDING)
    done, cursor = 0, None
    for _ in range(MAX_PAGES):
        if done >= CANCEL_ALL_MAX:
            break
        page = backend.browse(where, cursor=cursor, limit=CANCEL_ALL_MAX - done)
        done += sum(cancel(backend, r.id) for r in page.items)
        if page.next is None:
            break
        cursor = page.next
    return done
