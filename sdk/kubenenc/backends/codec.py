"""Records to JSON and back, for backends that store a record as one document or blob.

The layout is versioned by field names only; unknown fields are ignored on read so that a
newer writer does not break an older reader during a rolling upgrade.
"""

from __future__ import annotations

import json
from typing import Any

from kubenenc.ids import InvocationId, TaskId, WorkerId
from kubenenc.records import ErrorInfo, InvocationRecord, Transition, WorkerInfo
from kubenenc.status import Status


def record_to_dict(rec: InvocationRecord) -> dict[str, Any]:
    """A JSON-ready dict of ``rec`` (history as ``[status, at, worker, reason]`` lists;
    ``headers`` only when there are some)."""
    out: dict[str, Any] = {
        "id": rec.id, "app": rec.app, "task": rec.task, "args": rec.args,
        "call_key": rec.call_key, "display": rec.display, "pool": rec.pool,
        "priority": rec.priority, "status": rec.status.value, "created_at": rec.created_at,
        "updated_at": rec.updated_at, "max_retries": rec.max_retries, "timeout": rec.timeout,
        "running_key": rec.running_key, "running_limit": rec.running_limit,
        "registration_key": rec.registration_key, "depends_on": list(rec.depends_on),
        "parent": rec.parent, "serializer": rec.serializer, "attempt": rec.attempt,
        "lost": rec.lost, "worker": rec.worker, "waiters": rec.waiters,
        "not_before": rec.not_before, "result": rec.result,
        "error": None if rec.error is None
        else [rec.error.type, rec.error.message, rec.error.traceback],
        "history": [[h.status.value, h.at, h.worker, h.reason] for h in rec.history],
    }  # fmt: skip
    if rec.headers:
        out["headers"] = rec.headers
    if rec.rate is not None:
        out["rate_key"], out["rate"] = rec.rate_key, rec.rate
    if rec.callbacks is not None:
        out["callbacks"] = rec.callbacks
    return out


def record_from_dict(d: dict[str, Any]) -> InvocationRecord:
    """Inverse of :func:`record_to_dict`."""
    err = d.get("error")
    return InvocationRecord(
        id=InvocationId(d["id"]), app=d["app"], task=TaskId(d["task"]), args=d["args"],
        call_key=d["call_key"], display=d["display"], pool=d["pool"], priority=d["priority"],
        status=Status(d["status"]), created_at=d["created_at"], updated_at=d["updated_at"],
        max_retries=d.get("max_retries", 0), timeout=d.get("timeout"),
        running_key=d.get("running_key"), running_limit=d.get("running_limit"),
        registration_key=d.get("registration_key"),
        depends_on=tuple(InvocationId(x) for x in d.get("depends_on", ())),
        parent=InvocationId(d["parent"]) if d.get("parent") else None,
        serializer=d.get("serializer", "json"), attempt=d.get("attempt", 0),
        lost=d.get("lost", 0), worker=WorkerId(d["worker"]) if d.get("worker") else None,
        waiters=d.get("waiters", 0), not_before=d.get("not_before", 0.0),
        result=d.get("result"), rate_key=d.get("rate_key"), rate=d.get("rate"),
        callbacks=d.get("callbacks"),
        error=ErrorInfo(err[0], err[1], err[2]) if err else None,
        history=[
            Transition(Status(h[0]), h[1], WorkerId(h[2]) if h[2] else None, h[3])
            for h in d.get("history", ())
        ],
        headers=decode_headers(d.get("headers")),
    )  # fmt: skip


def decode_headers(value: Any) -> dict[str, str]:
    """Stored headers, text to text (anything else in them is dropped)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def dumps_record(rec: InvocationRecord) -> str:
    """``rec`` as compact JSON text."""
    return json.dumps(record_to_dict(rec), separators=(",", ":"))


def loads_record(text: str | bytes) -> InvocationRecord:
    """Inverse of :func:`dumps_record`."""
    return record_from_dict(json.loads(text))


def dumps_worker(info: WorkerInfo) -> str:
    """A heartbeat as JSON text."""
    return json.dumps(
        [info.id, info.pool, info.slots, info.running, info.paused, info.at, info.host]
    )


def loads_worker(text: str | bytes) -> WorkerInfo:
    """Inverse of :func:`dumps_worker`."""
    w = json.loads(text)
    return WorkerInfo(WorkerId(w[0]), w[1], w[2], w[3], w[4], w[5], w[6])
