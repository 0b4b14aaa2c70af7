"""The App: a name, a backend, a serializer, and the tasks registered on it.

An App holds its own task table (no global registry) and opens its backend lazily, on first
use, so importing a module that defines an App never connects anywhere — a worker can import
it before forking.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar, overload
from urllib.parse import urlsplit

from kubenenc.backends.contract import Backend
from kubenenc.backends.registry import backend_class, open_backend, redact_url
from kubenenc.concurrency import ConcurrencyPolicy
from kubenenc.decodable import DecodableTypes
from kubenenc.errors import ConfigurationError
from kubenenc.events import arguments_for, matches
from kubenenc.ids import InvocationId, TaskId
from kubenenc.invocation import Invocation
from kubenenc.records import NewInvocation
from kubenenc.schedules import Schedule, Scheduler
from kubenenc.scope import queue_name, scope
from kubenenc.serializers import JsonSerializer, PickleSerializer, get_serializer
from kubenenc.settings import Settings
from kubenenc.status import Status
from kubenenc.task import CallOptions, Task, TaskOptions, make_options
from kubenenc.task_defaults import TaskDefaults, scoped_name, task_defaults_name

POLICY_TTL = 2.0
"""Seconds a named policy or a task's TaskDefinition options read from the backend are reused
before they are read again."""

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
        self.scope = scope(name, self.settings.namespace)
        """What this app's queues and keys are named in (see :mod:`kubenenc.scope`)."""
        self._backend_obj: Backend | None = backend if not isinstance(backend, str | None) else None
        self.backend_url = backend if isinstance(backend, str) else self.settings.backend
        if max_value_bytes is not None and max_value_bytes < 1:
            raise ConfigurationError(f"max_value_bytes must be >= 1, not {max_value_bytes}")
        self.max_value_bytes = max_value_bytes or self.settings.max_value_bytes
        self.types = DecodableTypes(allowed_types)
        self.serializer: JsonSerializer | PickleSerializer = get_serializer(
            serializer or self.settings.serializer, self.types
        )
        self._json = (
            self.serializer
            if isinstance(self.serializer, JsonSerializer)
            else JsonSerializer(self.types)
        )
        self.tasks: dict[TaskId, Task[Any, Any]] = {}
        self._lock = threading.Lock()
        self._policies: dict[str, tuple[float, ConcurrencyPolicy]] = {}
        self._options: dict[TaskId, tuple[float, TaskOptions]] = {}
        self.schedules = Scheduler(self)
        """This app's schedules, run by its workers (see :mod:`kubenenc.schedules`)."""

    def __repr__(self) -> str:
        shown = self.backend_url if self._backend_obj is None else type(self._backend_obj).__name__
        return f"<App {self.name} backend={redact_url(shown)}>"

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use."""
        if self._backend_obj is None:
            with self._lock:
                if self._backend_obj is None:
                    self._backend_obj = open_backend(self.backend_url)
        return self._backend_obj

    def configure(self, backend: str | Backend) -> None:
        """Point the app at another backend (URL or object), closing the current one.

        For programs and tests that import a module-level App and choose the backend later.
        """
        with self._lock:
            self._policies.clear()
            self._options.clear()
            if self._backend_obj is not None:
                self._backend_obj.close()
            if isinstance(backend, str):
                self._backend_obj = None
                self.backend_url = backend
            else:
                self._backend_obj = backend

    def close(self) -> None:
        """Close the backend's connections (it reopens on next use)."""
        with self._lock:
            if self._backend_obj is not None:
                self._backend_obj.close()

    def queue(self, pool: str) -> str:
        """The stored queue name of this app's pool ``pool`` (see :mod:`kubenenc.scope`)."""
        return queue_name(self.scope, pool)

    def value_limit(self, task_limit: int | None = None) -> int:
        """The largest encoded arguments or result allowed: the task's limit (else the
        app's), lowered to what the backend can store (its optional ``max_value_bytes``)."""
        limit = task_limit or self.max_value_bytes
        backend_limit = getattr(self._backend_kind(), "max_value_bytes", None)
        return limit if backend_limit is None else min(limit, backend_limit)

    def _backend_kind(self) -> object:
        """The backend object if open, else its class (from the URL's scheme): a limit is a
        class attribute, and reading it must not connect (a worker's child process checks
        results with it, and must not open the backend, nor fail when it is unreachable)."""
        if self._backend_obj is not None:
            return self._backend_obj
        scheme = urlsplit(self.backend_url).scheme
        return _backend_class_of(scheme) if scheme else None

    def serializer_for(self, name: str) -> JsonSerializer | PickleSerializer:
        """The serializer that wrote a stored value; pickle only if this app opted in."""
        if name == self.serializer.name:
            return self.serializer
        if name == "json":
            return self._json
        if name == "pickle":
            raise ConfigurationError(
                "stored value is pickled but this app does not accept pickle; "
                'use App(..., serializer="pickle") only if you trust everyone who can write '
                "to the backend"
            )
        return get_serializer(name)

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
            task = Task(self, f, make_options(name, options))
            existing = self.tasks.get(task.id)
            if existing is not None and existing.func is not f:
                raise ConfigurationError(f"task {task.id} is already registered on {self.name}")
            self.tasks[task.id] = task
            self.types.add_annotations_of(f)
            for error in task.options.retry_on:
                self.types.add_error(error)
            opts = task.options
            if opts.schedule is not None:
                self.schedules.add(
                    task, opts.schedule, timezone=opts.timezone, catch_up=opts.catch_up,
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
        return self.schedules.add(
            task, cron, args=tuple(args), kwargs=kwargs, timezone=timezone, catch_up=catch_up,
            overlap=overlap, name=name,
        )  # fmt: skip

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
        results = self.backend.register(new, time.time())
        return [Invocation(self, r.id) for r in results]

    def named_policy(self, name: str) -> ConcurrencyPolicy:
        """The policy stored in the backend as ``name`` (scoped to ``settings.namespace``,
        see :mod:`kubenenc.task_defaults`), cached for ``POLICY_TTL`` seconds."""
        now = time.monotonic()
        cached = self._policies.get(name)
        if cached is not None and now - cached[0] < POLICY_TTL:
            return cached[1]
        stored_as, spec = self._stored(name)
        if spec is None:
            hint = (
                f"apply the ConcurrencyPolicy {name!r} in namespace {self.settings.namespace!r}"
                if self.settings.namespace
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
        namespace = self.settings.namespace
        owner, slash, _ = name.partition("/")
        if slash and owner != namespace:
            raise ConfigurationError(
                f"{name!r} names another namespace than this program's "
                f"({namespace or 'none: KUBENENC_NAMESPACE is unset'}); stored policies and "
                "options resolve only in the caller's own namespace: use the bare name and set "
                "KUBENENC_NAMESPACE to the namespace that holds it"
            )
        stored_as = scoped_name(name, namespace)
        return stored_as, self.backend.get_policy(stored_as)

    def get_task(self, task_id: str) -> Task[Any, Any]:
        """The task registered under ``task_id``.

        ``task_id`` comes from stored data, so it is looked up among this app's registered
        tasks only: never imported, never resolved as an attribute of a module.
        """
        task = self.tasks.get(TaskId(task_id))
        if task is None:
            raise LookupError(
                f"task {task_id[:200]} is not registered on app {self.name!r}; is its module "
                "imported by the app module the worker loads?"
            )
        return task

    def invocation(self, id: str) -> Invocation[Any]:
        """A handle on an existing invocation."""
        return Invocation(self, InvocationId(id))

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
        return [Invocation(self, rec.id) for rec in found]

    def counts(self, *, task: Task[Any, Any] | str | None = None) -> dict[Status, int]:
        """Exact counts of this app's invocations (of one task, if given) by status."""
        task_id = task.id if isinstance(task, Task) else task
        return dict(self.backend.counts(app=self.name, task=task_id))


@functools.cache
def _backend_class_of(scheme: str) -> type[Backend]:
    """:func:`backend_class`, looked up once per scheme: the entry-point scan costs
    milliseconds, and :meth:`App.value_limit` runs once per task result."""
    return backend_class(scheme)


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
