"""Small builders shared by the conformance tests (not a test module).

They only use the public contract, so every backend is driven the same way. Times are
explicit: each test passes its own ``now`` values. A plugin's own tests may use them too:
they are part of the kit's public face (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId, TaskId, WorkerId, new_invocation_id
from kubenenc.records import (
    ErrorInfo,
    InvocationRecord,
    NewInvocation,
    Outcome,
    OutcomeKind,
    PauseKind,
    RegisterKind,
    WorkerInfo,
)
from kubenenc.status import Status

W1 = WorkerId("host:1:w1")
W2 = WorkerId("host:2:w2")
W3 = WorkerId("host:3:w3")


def new(
    name: str = "f",
    args: str = "",
    *,
    app: str = "t",
    call_key: str | None = None,
    **fields: Any,
) -> NewInvocation:
    """A NewInvocation of task ``tests.<name>`` called with ``args``.

    The call key is ``name(args)`` (so two calls with equal name and args have equal keys,
    as the SDK would compute them); ``display`` is the same text.
    """
    display = f"{name}({args})"
    return NewInvocation(
        id=new_invocation_id(),
        app=app,
        task=TaskId(f"tests.{name}"),
        args=f'{{"x":"{args}"}}',
        call_key=call_key if call_key is not None else f"tests.{name}#{args}",
        display=display,
        **fields,
    )


def add(
    backend: Backend, now: float = 1.0, name: str = "f", args: str = "", **fields: Any
) -> InvocationId:
    """Register one invocation and return its id (it must be created)."""
    item = new(name, args, **fields)
    [res] = backend.register([item], now)
    assert res.kind is RegisterKind.CREATED, res
    assert res.id == item.id
    return item.id


def claim_ids(
    backend: Backend,
    worker: WorkerId = W1,
    limit: int = 100,
    now: float = 10.0,
    pool: str = "default",
) -> list[InvocationId]:
    """Claim and return the ids, in the order the backend gave them."""
    return [r.id for r in backend.claim(pool, worker, limit, now)]


def start(backend: Backend, id: InvocationId, worker: WorkerId = W1, now: float = 10.0) -> None:
    """Claim until ``id`` is RUNNING on ``worker``; fail if the backend never gives it.

    Only use when ``id`` is the single claimable invocation of its pool.
    """
    rec = backend.get(id)
    assert rec is not None
    got = claim_ids(backend, worker, 1, now, rec.pool)
    assert got == [id], f"expected to claim {id}, got {got}"


def running(
    backend: Backend, now: float = 1.0, name: str = "f", args: str = "", **fields: Any
) -> InvocationId:
    """Register one invocation in its own pool and claim it on ``W1``."""
    pool = fields.pop("pool", f"solo-{name}-{args}")
    worker = fields.pop("worker", W1)
    id = add(backend, now, name, args, pool=pool, **fields)
    start(backend, id, worker, now + 1)
    return id


def succeed(
    backend: Backend, id: InvocationId, worker: WorkerId = W1, now: float = 20.0, result: str = "1"
) -> None:
    assert backend.finish([Outcome(id, OutcomeKind.SUCCESS, result=result)], worker, now) == [True]


def failed(
    backend: Backend, id: InvocationId, worker: WorkerId = W1, now: float = 20.0
) -> ErrorInfo:
    error = ErrorInfo("builtins.ValueError", "boom", "Traceback ...\nValueError: boom\n")
    assert backend.finish([Outcome(id, OutcomeKind.FAILED, error=error)], worker, now) == [True]
    return error


def pause(
    backend: Backend,
    id: InvocationId,
    targets: Sequence[InvocationId],
    worker: WorkerId = W1,
    now: float = 15.0,
) -> None:
    """Pause ``id`` on ``targets``; it must become PAUSED."""
    res = backend.pause(id, worker, targets, now)
    assert res.kind is PauseKind.PAUSED, res


def status(backend: Backend, id: InvocationId) -> Status | None:
    rec = backend.get(id)
    return None if rec is None else rec.status


def record(backend: Backend, id: InvocationId) -> InvocationRecord:
    rec = backend.get(id)
    assert rec is not None, f"{id} is not stored"
    return rec


def beat(backend: Backend, worker: WorkerId, at: float, pool: str = "default") -> WorkerInfo:
    info = WorkerInfo(worker, pool, slots=4, running=1, paused=0, at=at, host="host")
    backend.heartbeat(info)
    return info


def nonzero(counts: Mapping[Status, int]) -> dict[Status, int]:
    """``counts`` without the statuses counted 0 (a backend may list or omit those)."""
    return {s: n for s, n in counts.items() if n}
