"""Status triggers: ``@app.task(on_status=(charge, Status.FAILED))`` calls this task whenever
an invocation of ``charge`` ends in that status.

They ride on the callbacks' machinery (:mod:`kubenenc.callbacks`): when ``charge`` is
called, its callbacks plan also lists every task of the app that watches it, by status, and
the backend registers them in the same step that stores the status, so a trigger exists
exactly when the status it follows does (a worker that dies right after finishing loses
nothing; a finish stored once triggers once). Like a callback, a trigger task takes the
invocation's id and its result (SUCCESS) or error (FAILED after the last try, RETRY after
a try that will be tried again) as its two first parameters.

Watching is decided by the process that *calls* ``charge``: it must have imported the
modules that define the watchers (a worker imports the app's modules; a program that
submits should import the same ones), as with events.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubenenc.errors import ConfigurationError
from kubenenc.ids import TaskId
from kubenenc.status import Status

if TYPE_CHECKING:
    from kubenenc.resolver import OptionsResolver
    from kubenenc.task import Task

KIND_OF: dict[Status, str] = {
    Status.SUCCESS: "success",
    Status.FAILED: "failure",
    Status.RETRY: "retry",
}
"""The statuses a trigger may follow (those a finish stores), and the callback kind of each."""


def pairs(on_status: Any) -> list[tuple[Task[Any, Any] | str, Status]]:
    """``on_status`` as a list of ``(task, status)`` pairs; ConfigurationError when it is
    not one pair or a sequence of pairs of a task (or task id) and a status it can follow."""
    if on_status is None:
        return []
    from kubenenc.task import Task  # task imports this module

    items = [on_status] if _is_pair(on_status) else on_status
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise ConfigurationError(
            f"on_status must be (task, Status.FAILED) or a list of such pairs, not {on_status!r}"
        )
    out: list[tuple[Task[Any, Any] | str, Status]] = []
    for item in items:
        if not _is_pair(item) or not isinstance(item[0], Task | str):
            raise ConfigurationError(f"on_status holds {item!r}, not a (task, status) pair")
        try:
            status = Status(item[1])
        except ValueError:
            raise ConfigurationError(f"on_status: {item[1]!r} is not a Status") from None
        if status not in KIND_OF:
            raise ConfigurationError(
                f"on_status: a trigger follows SUCCESS, FAILED or RETRY (what a finish "
                f"stores), not {status.value}"
            )
        out.append((item[0], status))
    return out


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[1], Status | str)
        and not isinstance(value[0], tuple)
    )


_INDEX: weakref.WeakKeyDictionary[
    OptionsResolver, tuple[int, dict[TaskId, dict[str, list[TaskId]]]]
] = weakref.WeakKeyDictionary()


def watchers(resolver: OptionsResolver, task: TaskId) -> dict[str, list[TaskId]]:
    """The tasks of the resolver's app that watch ``task``, by callback kind (empty when
    none). The index is built once per set of registered tasks (tasks are only ever added)."""
    tasks = resolver.tasks
    cached = _INDEX.get(resolver)
    if cached is None or cached[0] != len(tasks):
        index: dict[TaskId, dict[str, list[TaskId]]] = {}
        for watcher in list(tasks.values()):
            for target, status in pairs(watcher.options.on_status):
                watched = TaskId(target if isinstance(target, str) else target.id)
                kinds = index.setdefault(watched, {})
                ids = kinds.setdefault(KIND_OF[status], [])
                if watcher.id not in ids:
                    ids.append(watcher.id)
        cached = (len(tasks), index)
        _INDEX[resolver] = cached
    return cached[1].get(task, {})
