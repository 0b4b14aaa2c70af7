"""The App: a name, a backend, a serializer, and the tasks registered on it.

An App holds its own task table (no global registry). What its tasks and invocation handles
use of it lives in two parts they hold instead of the App (so nothing below the App reaches
back up to it): a :class:`~kubenenc.runtime.Runtime` (the backend, opened lazily, and the
serializers) and an :class:`~kubenenc.resolver.OptionsResolver` (stored policies and task
options). Importing a module that defines an App never connects anywhere, so a worker can
import it before forking.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from kubenenc.backends.contract import Backend
from kubenenc.batching import Batch, open_for
from kubenenc.concurrency import ConcurrencyPolicy
from kubenenc.decodable import DecodableTypes
from kubenenc.errors import ConfigurationError
from kubenenc.events import arguments_for, matches
from kubenenc.ids import InvocationId, TaskId
from kubenenc.invocation import Invocation
from kubenenc.records import NewInvocation
from kubenenc.resolver import OptionsResolver
from kubenenc.runtime import Runtime
from kubenenc.schedules import Schedule, Scheduler, check
from kubenenc.scope import scope
from kubenenc.serializers import JsonSerializer, PickleSerializer
from kubenenc.settings import Settings
from kubenenc.status import Status
from kubenenc.task import CallOptions, Task, TaskOptions, make_options

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """An application: ``App("shop")`` uses ./kubenenc.db; pass ``backend=`` a URL or a
    backend object to choose another. ``serializer="pickle"`` opts in to pickle (see
    :mod:`kubenenc.serializers` for why that is a risk).

    Stored enums, dataclasses and pydantic models decode only to the classes the app
    declares: those its tasks' annotations name, plus ``allowed_types`` (see
    :mod:`kubenenc.decodable`)."""

    def __init__(
        self,
        name: str,
        backend: str | Backend | None = None,
        *,
        serializer: str | None = None,
        settings: Settings | None = None,
        allowed_types: Iterable[type] = (),
        max_value_bytes: int | None = None,
    ) -> None:
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigurationError(
                f"app name {name!r} must be non-empty letters, digits, '-', '_' or '.'"
            )
        self.name = name
        self.settings = settings if settings is not None else Settings()
        if max_value_bytes is not None and max_value_bytes < 1:
            raise ConfigurationError(f"max_value_bytes must be >= 1, not {max_value_bytes}")
        self.types = DecodableTypes(allowed_types)
        self.tasks: dict[TaskId, Task[Any, Any]] = {}
        self.runtime = Runtime(
            name,
            scope(name, self.settings.namespace),
            backend if isinstance(backend, str) else self.settings.backend,
            None if isinstance(backend, str) else backend,
            serializer=serializer or self.settings.serializer,
            types=self.types,
            max_value_bytes=max_value_bytes or self.settings.max_value_bytes,
        )
        """The backend and serializers, as tasks and handles use them."""
        self.resolver = OptionsResolver(self.runtime, self.settings.namespace, self.tasks)
        """Stored policies and task options, as tasks use them."""
        self.schedules = Scheduler(self.runtime)
        """This app's schedules, run by its workers (see :mod:`kubenenc.schedules`)."""

    def __repr__(self) -> str:
        return f"<App {self.name} backend={self.runtime.describe()}>"

    @property
    def scope(self) -> str:
        """What this app's queues and keys are named in (see :mod:`kubenenc.scope`)."""
        return self.runtime.scope

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use."""
        return self.runtime.backend

    @property
    def backend_url(self) -> str:
        """The URL the backend is (or will be) opened from (unused while the app was given
        a backend object)."""
        return self.runtime.backend_url

    @backend_url.setter
    def backend_url(self, url: str) -> None:
        # Before the first use only (a child process, a demo): an open backend stays open.
        self.runtime.backend_url = url

    @property
    def serializer(self) -> JsonSerializer | PickleSerializer:
        """The serializer new values are written with."""
        return self.runtime.serializer

    @property
    def max_value_bytes(self) -> int:
        """The app's limit on encoded arguments and results (see :meth:`value_limit`)."""
        return self.runtime.max_value_bytes

    def configure(self, backend: str | Backend) -> None:
        """Point the app at another backend (URL or object), closing the current one.

        For programs and tests that import a module-level App and choose the backend later.
        """
        self.resolver.clear()
        self.runtime.configure(backend)

    def close(self) -> None:
        """Close the backend's connections (it reopens on next use)."""
        self.runtime.close()

    def queue(self, pool: str) -> str:
        """The stored queue name of this app's pool ``pool`` (see :mod:`kubenenc.scope`)."""
        return self.runtime.queue(pool)

    def value_limit(self, task_limit: int | None = None) -> int:
        """The largest encoded arguments or result allowed: the task's limit (else the
        app's), lowered to what the backend can store (its optional ``max_value_bytes``)."""
        return self.runtime.value_limit(task_limit)

    def serializer_for(self, name: str) -> JsonSerializer | PickleSerializer:
        """The serializer that wrote a stored value; pickle only if this app opted in."""
        return self.runtime.serializer_for(name)

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, func: Callable[P, R] | None = None, /, **options: Any
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task: ``@app.task`` or ``@app.task(retries=2, ...)``.

        Options are :class:`~kubenenc.task.TaskOptions`; an unknown one raises
        ConfigurationError at once.
        """

        def decorate(f: Callable[P, R]) -> Task[P, R]:
            name = getattr(f, "__qualname__", repr(f))
            task = Task(self.runtime, self.resolver, f, make_options(name, options))
            existing = self.tasks.get(task.id)
            if existing is not None and existing.func is not f:
                raise ConfigurationError(f"task {task.id} is already registered on {self.name}")
            self.tasks[task.id] = task
            self.types.add_annotations_of(f)
            for error in task.options.retry_on:
                self.types.add_error(error)
            opts = task.options
            if opts.schedule is not None:
                self.schedule(
                    task, cron=opts.schedule, timezone=opts.timezone, catch_up=opts.catch_up,
                    overlap=opts.overlap, name=task.id,
                )  # fmt: skip
            return task

        if func is not None:
            if options:
                raise ConfigurationError("use @app.task or @app.task(**options), not both")
            return decorate(func)
        make_options("task", options)  # refuse unknown options at decoration time
        return decorate

    def schedule(
        self,
        task: Task[Any, Any],
        *,
        cron: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        catch_up: str = "last",
        overlap: str = "skip",
        name: str | None = None,
    ) -> Schedule:
        """Call ``task(*args, **kwargs)`` at every tick of ``cron`` (read in ``timezone``),
        once per tick across every worker of this app; see :mod:`kubenenc.schedules` for
        ``catch_up`` and ``overlap``. ``name`` (default: the task and a digest of the rest)
        is what the backend remembers the last tick under."""
        parsed = check(cron, timezone, catch_up, overlap)
        args, kwargs = tuple(args), dict(kwargs or {})
        return self.schedules.add(
            Schedule(name or "", task, cron, timezone, parsed, args, kwargs, catch_up, overlap)
        )

    def batch(self) -> Batch:
        """``with app.batch():`` — calls made in the block return at once and are registered
        together; see :mod:`kubenenc.batching` for when they are durable."""
        return Batch(self.runtime)

    def emit(self, event: str, payload: Mapping[str, Any] | None = None) -> list[Invocation[Any]]:
        """Call every task of this app subscribed to ``event`` (``on_event=``, with an
        ``event_filter`` the payload matches) once, all in one backend step; returns their
        invocations (none when nothing subscribes). See :mod:`kubenenc.events`."""
        data = dict(payload or {})
        new: list[NewInvocation] = []
        for task in list(self.tasks.values()):
            opts = self.task_options(task)
            if opts.on_event != event or not matches(opts.event_filter, data):
                continue
            new += task._built([((), arguments_for(task, data))], CallOptions())
        if not new:
            return []
        batch = open_for(self.runtime)
        if batch is not None:
            batch.flush()  # registered at once, after the calls made before it
        results = self.backend.register(new, time.time())
        return [Invocation(self.runtime, r.id) for r in results]

    def named_policy(self, name: str) -> ConcurrencyPolicy:
        """The policy stored in the backend as ``name`` (see
        :meth:`~kubenenc.resolver.OptionsResolver.named_policy`)."""
        return self.resolver.named_policy(name)

    def task_options(self, task: Task[Any, Any]) -> TaskOptions:
        """The options in force for ``task`` now (see
        :meth:`~kubenenc.resolver.OptionsResolver.task_options`)."""
        return self.resolver.task_options(task)

    def get_task(self, task_id: str) -> Task[Any, Any]:
        """The task registered under ``task_id`` (see
        :meth:`~kubenenc.resolver.OptionsResolver.get_task`)."""
        return self.resolver.get_task(task_id)

    def invocation(self, id: str) -> Invocation[Any]:
        """A handle on an existing invocation."""
        return Invocation(self.runtime, InvocationId(id))

    def invocations(
        self,
        *,
        task: Task[Any, Any] | str | None = None,
        status: Status | str | None = None,
        limit: int = 100,
    ) -> list[Invocation[Any]]:
        """This app's invocations, newest first, filtered by task and/or status."""
        task_id = task.id if isinstance(task, Task) else task
        found = self.backend.query(
            app=self.name,
            task=task_id,
            status=Status(status) if status is not None else None,
            limit=limit,
        )
        return [Invocation(self.runtime, rec.id) for rec in found]

    def counts(self, *, task: Task[Any, Any] | str | None = None) -> dict[Status, int]:
        """Exact counts of this app's invocations (of one task, if given) by status."""
        task_id = task.id if isinstance(task, Task) else task
        return dict(self.backend.counts(app=self.name, task=task_id))


def load_app(path: str) -> App:
    """Import ``module:attr`` and return the App it names; clear errors otherwise."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"--app {path!r}: expected module:attribute, e.g. shop.tasks:app")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"--app {path!r}: cannot import module {module_name!r}: {exc}. Is it on "
            "PYTHONPATH (or in the current directory)?"
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigurationError(
            f"--app {path!r}: {module_name}.{attr} is "
            f"{'missing' if app is None else type(app).__name__}, not a kubenenc.App"
        )
    return app
