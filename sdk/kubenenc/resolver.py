"""The options a task is called with: the decorator's, under what the backend stores.

The operator writes two kinds of settings into the backend that change how calls are made
without restarting anything: named concurrency policies (``concurrency="name"``) and a
TaskDefinition's options over the decorator's (see :mod:`kubenenc.task_defaults`). An
:class:`OptionsResolver` reads them for one app, in its own namespace only, and reuses what
it read for ``POLICY_TTL`` seconds. It also finds the app's tasks by id (callbacks name
theirs), from the App's task table, which it reads but does not own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubenenc.concurrency import ConcurrencyPolicy
from kubenenc.errors import ConfigurationError
from kubenenc.ids import TaskId
from kubenenc.task_defaults import TaskDefaults, scoped_name, task_defaults_name

if TYPE_CHECKING:
    from kubenenc.runtime import Runtime
    from kubenenc.task import Task, TaskOptions

POLICY_TTL = 2.0
"""Seconds a named policy or a task's TaskDefinition options read from the backend are reused
before they are read again."""


class OptionsResolver:
    """Stored policies and task options of one app, briefly cached (see the module)."""

    def __init__(
        self, runtime: Runtime, namespace: str | None, tasks: Mapping[TaskId, Task[Any, Any]]
    ) -> None:
        self._runtime = runtime
        self.namespace = namespace
        self._tasks = tasks
        self._policies: dict[str, tuple[float, ConcurrencyPolicy]] = {}
        self._options: dict[TaskId, tuple[float, TaskOptions]] = {}

    @property
    def tasks(self) -> Mapping[TaskId, Task[Any, Any]]:
        """The app's registered tasks, by id (read-only view of the App's table)."""
        return self._tasks

    def clear(self) -> None:
        """Forget what was read (the backend changed)."""
        self._policies.clear()
        self._options.clear()

    def get_task(self, task_id: str) -> Task[Any, Any]:
        """The task registered under ``task_id``.

        ``task_id`` comes from stored data, so it is looked up among the app's registered
        tasks only: never imported, never resolved as an attribute of a module.
        """
        task = self._tasks.get(TaskId(task_id))
        if task is None:
            raise LookupError(
                f"task {task_id[:200]} is not registered on app {self._runtime.name!r}; is "
                "its module imported by the app module the worker loads?"
            )
        return task

    def named_policy(self, name: str) -> ConcurrencyPolicy:
        """The policy stored in the backend as ``name`` (scoped to the namespace, see
        :mod:`kubenenc.task_defaults`), cached for ``POLICY_TTL`` seconds."""
        now = time.monotonic()
        cached = self._policies.get(name)
        if cached is not None and now - cached[0] < POLICY_TTL:
            return cached[1]
        stored_as, spec = self._stored(name)
        if spec is None:
            hint = (
                f"apply the ConcurrencyPolicy {name!r} in namespace {self.namespace!r}"
                if self.namespace
                else "a program outside the workers' pods must set KUBENENC_NAMESPACE to the "
                "workers' namespace (policies resolve only in the caller's own namespace); "
                "without Kubernetes, store it with backend.set_policy"
            )
            raise ConfigurationError(
                f"concurrency policy {name!r} is not stored in the backend (as "
                f"{stored_as!r}): {hint}"
            )
        policy = ConcurrencyPolicy.model_validate_json(spec)
        self._policies[name] = (now, policy)
        return policy

    def task_options(self, task: Task[Any, Any]) -> TaskOptions:
        """The options in force for ``task`` now: what its TaskDefinition stored in the
        backend sets, over the decorator's (see :mod:`kubenenc.task_defaults`); read at most
        every ``POLICY_TTL`` seconds, so a change applies to later calls without restarts."""
        now = time.monotonic()
        cached = self._options.get(task.id)
        if cached is not None and now - cached[0] < POLICY_TTL:
            return cached[1]
        _, text = self._stored(task_defaults_name(task.id, None))
        options = task.options
        if text is not None:
            try:
                options = TaskDefaults.model_validate_json(text).over(task.options)
            except (ValueError, ConfigurationError) as exc:
                raise ConfigurationError(
                    f"task {task.id}: the options its TaskDefinition stored are invalid: {exc}"
                ) from None
        self._options[task.id] = (now, options)
        return options

    def _stored(self, name: str) -> tuple[str, str | None]:
        """``(stored name, text)`` of ``name`` as seen from this app: in its own namespace
        only, never another's (a caller without a namespace reads unscoped names; see
        :mod:`kubenenc.task_defaults`)."""
        namespace = self.namespace
        owner, slash, _ = name.partition("/")
        if slash and owner != namespace:
            raise ConfigurationError(
                f"{name!r} names another namespace than this program's "
                f"({namespace or 'none: KUBENENC_NAMESPACE is unset'}); stored policies and "
                "options resolve only in the caller's own namespace: use the bare name and set "
                "KUBENENC_NAMESPACE to the namespace that holds it"
            )
        stored_as = scoped_name(name, namespace)
        return stored_as, self._runtime.backend.get_policy(stored_as)
