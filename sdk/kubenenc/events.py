"""Events: ``app.emit("order.paid", {"order": 7})`` calls every task subscribed with
``@app.task(on_event="order.paid")`` once.

The subscribers are the emitting app's tasks (the process that emits must import the
modules that define them, as a worker does); each gets the payload's entries that its
function takes, as keyword arguments (all of them when it takes ``**kwargs``), and an
``event_filter`` mapping, if given, must match entries of the payload exactly. All the calls
of one event are registered in one backend step, so an event is either handled by every
subscriber or by none, and, being stored invocations, they are durable: an event emitted
while no worker runs is handled when one starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubenenc.task import Task


def matches(event_filter: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> bool:
    """Whether every entry of ``event_filter`` is in ``payload`` with an equal value."""
    if not event_filter:
        return True
    return all(k in payload and payload[k] == v for k, v in event_filter.items())


def arguments_for(task: Task[Any, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload's entries that ``task``'s function takes (all with ``**kwargs``)."""
    params = task.signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(payload)
    names = {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    return {k: v for k, v in payload.items() if k in names}
