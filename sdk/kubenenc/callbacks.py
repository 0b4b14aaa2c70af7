"""Callbacks: the invocation a finish registers in the same backend step (``on_success=``,
``on_failure=``, ``on_retry=``).

The SDK writes, at the call, what each callback will be (:func:`plan`): the callback task,
its options and the names of its two first parameters, as JSON text on the invocation
(``NewInvocation.callbacks``). The backend, when it stores the outcome, registers the
callback from that plan in the same atomic step (:func:`spawn` for the embedded backends; the
Redis finish script does the same), so a callback exists exactly when the status it follows
does: a worker that dies right after finishing loses nothing, and a finish stored once
registers it once. Its id is derived from the invocation's id, the kind and the try
(:func:`callback_id`), so no step can register it twice either.

The callback is called with the invocation's id and, for ``success``, its result; for
``failure`` (after the last try) and ``retry`` (after each failed try that will be tried
again), the error as ``{"type", "message", "traceback"}``. Backends cannot compute
concurrency keys (they are digests made by the SDK), so a callback task's own
``concurrency`` policy does not apply to callback calls.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId, TaskId
from kubenenc.records import ErrorInfo, NewInvocation

if TYPE_CHECKING:
    from kubenenc.resolver import OptionsResolver
    from kubenenc.runtime import Runtime
    from kubenenc.task import Task

KINDS = ("success", "failure", "retry")
"""The callback kinds, as stored in the plan; the task options are ``on_<kind>``."""

MAX_DEPTH = 8
"""How many callbacks of callbacks a plan holds (a callback's plan is written into its own
record when it is registered, so chains are written whole at the first call)."""


def callback_id(id: str, kind: str, attempt: int) -> InvocationId:
    """The id of the ``kind`` callback of invocation ``id`` after try ``attempt`` (the
    record's ``attempt`` once the outcome is stored): the same in every backend. A status
    trigger's ``kind`` is ``<kind>:<its task id>``."""
    # SHA-1 because Redis scripts have it (``redis.sha1hex``); an id, not a secret.
    text = f"{id}:{kind}:{attempt}".encode()
    return InvocationId(hashlib.sha1(text, usedforsecurity=False).hexdigest()[:32])


def plan(
    runtime: Runtime, resolver: OptionsResolver, task: Task[Any, Any], depth: int = 0
) -> str | None:
    """The JSON text of ``task``'s callbacks and of the status triggers watching it (see
    :mod:`kubenenc.triggers`), None when it has neither."""
    from kubenenc.triggers import watchers  # it imports the task module, which imports this

    opts = resolver.task_options(task)
    out: dict[str, Any] = {}
    for kind in KINDS:
        target = getattr(opts, f"on_{kind}")
        if target is not None:
            out[kind] = _target(runtime, resolver, task, f"on_{kind}", target, depth)
    triggers = {
        kind: [_target(runtime, resolver, task, "on_status", w, depth) for w in ids]
        for kind, ids in watchers(resolver, task.id).items()
    }
    if triggers:
        out["on"] = triggers
    return json.dumps(out, separators=(",", ":")) if out else None


def _target(
    runtime: Runtime,
    resolver: OptionsResolver,
    task: Task[Any, Any],
    option: str,
    target: Task[Any, Any] | str,
    depth: int,
) -> dict[str, Any]:
    """What the backend needs to register a call of ``target`` after ``task``."""
    if depth >= MAX_DEPTH:
        raise ConfigurationError(
            f"task {task.id}: callbacks nest deeper than {MAX_DEPTH} (a callback chain "
            "that calls itself, or a task watching its own status?); end the chain, or call "
            "the next task from the callback"
        )
    cb = resolver.get_task(target) if isinstance(target, str) else target
    if runtime.serializer.name != "json":
        raise ConfigurationError(
            f"task {task.id}: {option} needs the json serializer (the backend writes the "
            "callback's arguments from the stored result)"
        )
    names = list(cb.signature.parameters)
    if len(names) < 2:
        raise ConfigurationError(
            f"task {task.id}: {option}={cb.id} must take two arguments (the invocation's "
            "id and its result or error)"
        )
    cb_opts = resolver.task_options(cb)
    return {
        "task": cb.id, "name": cb.name, "pool": runtime.queue(cb_opts.pool),
        "priority": cb_opts.priority, "max_retries": cb_opts.retries,
        "timeout": cb_opts.timeout, "id_arg": names[0], "value_arg": names[1],
        "callbacks": plan(runtime, resolver, cb, depth + 1),
    }  # fmt: skip


def error_json(error: ErrorInfo | None) -> str:
    """The error as a callback receives it, JSON text."""
    if error is None:
        return "null"
    value = {"type": error.type, "message": error.message, "traceback": error.traceback}
    return json.dumps(value, separators=(",", ":"))


def spawn(
    callbacks: str | None, kind: str, id: str, app: str, attempt: int, value: str | None
) -> list[NewInvocation]:
    """The calls that invocation ``id`` (of ``app``, after try ``attempt``) makes when it
    ends as ``kind``: its ``kind`` callback, then each status trigger watching that kind,
    each with the JSON text ``value`` as its second argument."""
    if callbacks is None:
        return []
    p = json.loads(callbacks)
    out: list[NewInvocation] = []
    t = p.get(kind)
    if t is not None:
        out.append(_call(t, callback_id(id, kind, attempt), id, app, value))
    for t in p.get("on", {}).get(kind, ()):
        out.append(_call(t, callback_id(id, f"{kind}:{t['task']}", attempt), id, app, value))
    return out


def _call(
    t: dict[str, Any], new_id: InvocationId, id: str, app: str, value: str | None
) -> NewInvocation:
    args = (
        "{" + json.dumps(t["id_arg"]) + ":" + json.dumps(id) + ","
        + json.dumps(t["value_arg"]) + ":" + (value if value is not None else "null") + "}"
    )  # fmt: skip
    return NewInvocation(
        id=new_id,
        app=app,
        task=TaskId(t["task"]),
        args=args,
        call_key=f"{t['task']}#cb:{new_id}",
        display=f"{t['name']}({id}, ...)",
        pool=t["pool"],
        priority=t["priority"],
        max_retries=t["max_retries"],
        timeout=t["timeout"],
        callbacks=t["callbacks"],
    )
