"""Tasks: plain functions made callable as invocations.

Options are split in two, never mixed with the task's own arguments:

- *task options*, fixed at decoration (:class:`TaskOptions`); an unknown one is refused
  there, with the list of known ones;
- *call options*, per call through ``task.with_options(...)`` (:class:`CallOptions`).

Arguments are bound to the signature and serialized at the call, so a wrong argument fails
in the caller, not later in a worker.

Size: over 500 lines because an option is declared, checked and used here, beside the call
path that reads it (binding, batching, registration); splitting the options from the call
would put each option's rule in two places.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from kubenenc import batching, context, tracing
from kubenenc.callbacks import plan
from kubenenc.concurrency import (
    ConcurrencyPolicy,
    call_key,
    rate_key,
    registration_key,
    running_key,
)
from kubenenc.errors import (
    ConfigurationError,
    RegistrationRejected,
    SerializationError,
    ValueTooLarge,
)
from kubenenc.ids import InvocationId, TaskId, new_invocation_ids
from kubenenc.invocation import Invocation, InvocationGroup
from kubenenc.records import NewInvocation, RegisterKind, RegisterResult
from kubenenc.scope import check_name
from kubenenc.serializers import compact_json, flat_json, to_json_tree
from kubenenc.triggers import pairs, watchers

if TYPE_CHECKING:
    from kubenenc.resolver import OptionsResolver
    from kubenenc.runtime import Runtime

P = ParamSpec("P")
R = TypeVar("R")

_DISPLAY_LIMIT = 160
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Options fixed when a function is decorated with ``@app.task(...)``."""

    retries: int = 0
    """Extra tries after a failure whose exception is an instance of ``retry_on``."""
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: float = 1.0
    """First retry delay in seconds; doubles per try, with jitter (see kubenenc.retry)."""
    max_backoff: float = 300.0
    timeout: float | None = None
    """Seconds one try may run before it fails with TaskTimeout."""
    priority: int = 0
    """Higher runs first (after invocations that others are waiting on)."""
    pool: str = "default"
    concurrency: ConcurrencyPolicy | str | None = None
    """A policy, or the name of one stored in the backend (written there by the operator from
    a ConcurrencyPolicy resource, read at each call so a change applies without restarts)."""
    max_value_bytes: int | None = None
    """Largest encoded arguments or result of one call; None: the app's (see Settings)."""
    on_success: Task[Any, Any] | str | None = None
    """A task called with the invocation's id and its result once it succeeds, registered
    in the same backend step as the SUCCESS (see :mod:`kubenenc.callbacks`)."""
    on_failure: Task[Any, Any] | str | None = None
    """A task called with the id and the error once it FAILED (after the last retry)."""
    on_retry: Task[Any, Any] | str | None = None
    """A task called with the id and the error after each failed try that will be retried."""
    on_event: str | None = None
    """An event name: ``app.emit(name, payload)`` calls this task (see :mod:`kubenenc.events`)."""
    event_filter: Mapping[str, Any] | None = None
    """Entries the payload must hold (equal values) for this task to be called."""
    on_status: Any = None
    """``(task, Status.FAILED)`` or a sequence of such pairs: this task is called with the
    invocation's id and its result or error whenever an invocation of that task ends in
    that status (SUCCESS, FAILED, or RETRY), registered in the same backend step (see
    :mod:`kubenenc.triggers`)."""
    schedule: str | None = None
    """A cron expression (5 fields or ``@daily``...): the workers running the app call this
    task once per tick, with no arguments (see :mod:`kubenenc.schedules`)."""
    timezone: str = "UTC"
    """The IANA time zone ``schedule`` is read in (``Europe/Madrid``)."""
    catch_up: str = "last"
    """Ticks missed while no worker ran: ``"none"``, ``"last"`` or ``"all"`` (bounded)."""
    overlap: str = "skip"
    """``"skip"`` a tick while the schedule's previous call is not final, or ``"allow"``."""

    def __post_init__(self) -> None:
        self._check_triggers()
        if self.retries < 0:
            raise ConfigurationError(f"retries must be >= 0, not {self.retries}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, not {self.timeout}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigurationError("backoff and max_backoff must be >= 0")
        check_name("pool", self.pool)
        if self.max_value_bytes is not None and self.max_value_bytes < 1:
            raise ConfigurationError(f"max_value_bytes must be >= 1, not {self.max_value_bytes}")
        for exc_type in self.retry_on:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise ConfigurationError(f"retry_on holds {exc_type!r}, not an exception class")
        if self.concurrency is not None and not isinstance(
            self.concurrency, ConcurrencyPolicy | str
        ):
            raise ConfigurationError(
                "concurrency must be a kubenenc.ConcurrencyPolicy or the name of a stored one"
            )

    def _check_triggers(self) -> None:
        """The callback, event, status and schedule options (``__post_init__`` checks the
        rest)."""
        from kubenenc import schedules  # it imports this module

        pairs(self.on_status)
        if self.schedule is not None or self.timezone != "UTC":
            if self.schedule is None:
                raise ConfigurationError("timezone needs schedule")
            schedules.check(self.schedule, self.timezone, self.catch_up, self.overlap)
        if self.on_event is not None and (not isinstance(self.on_event, str) or not self.on_event):
            raise ConfigurationError(
                f"on_event must be a non-empty event name, not {self.on_event!r}"
            )
        if self.event_filter is not None:
            if self.on_event is None:
                raise ConfigurationError("event_filter needs on_event")
            if not isinstance(self.event_filter, Mapping):
                raise ConfigurationError("event_filter must be a mapping of payload entries")
        for kind in ("on_success", "on_failure", "on_retry"):
            target = getattr(self, kind)
            if target is not None and not isinstance(target, Task | str):
                raise ConfigurationError(
                    f"{kind} must be a task (decorated with @app.task) or a task's id, "
                    f"not {target!r}"
                )


TASK_OPTION_NAMES = frozenset(TaskOptions.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Options of one call, given with ``task.with_options(...)``."""

    priority: int | None = None
    pool: str | None = None
    timeout: float | None = None
    retries: int | None = None
    depends_on: tuple[InvocationId, ...] = field(default=())
    countdown: float | None = None
    """Seconds from the call before the invocation may start (it is registered at once)."""
    eta: datetime | None = None
    """The timezone-aware moment before which the invocation may not start."""

    def __post_init__(self) -> None:
        if self.countdown is not None and self.eta is not None:
            raise ConfigurationError("give countdown or eta, not both")
        if self.countdown is not None and not (
            isinstance(self.countdown, int | float) and math.isfinite(self.countdown)
        ):
            raise ConfigurationError(
                f"countdown must be a number of seconds, not {self.countdown!r}"
            )
        if self.eta is not None:
            if not isinstance(self.eta, datetime):
                raise ConfigurationError(f"eta must be a datetime, not {self.eta!r}")
            if self.eta.tzinfo is None or self.eta.utcoffset() is None:
                raise ConfigurationError(
                    f"eta {self.eta.isoformat()} has no timezone, so the moment it names "
                    "depends on the clock of whoever reads it; give an aware datetime, e.g. "
                    "datetime.now(timezone.utc) + timedelta(minutes=5)"
                )
        if self.retries is not None and self.retries < 0:
            raise ConfigurationError(f"retries must be >= 0, not {self.retries}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, not {self.timeout}")
        if self.pool is not None:
            check_name("pool", self.pool)

    def due(self, now: float) -> float:
        """The call's ``not_before`` for a submit at ``now``: 0 when it may start at once."""
        if self.eta is not None:
            return self.eta.timestamp()
        if self.countdown is not None and self.countdown > 0:
            return now + self.countdown
        return 0.0


CALL_OPTION_NAMES = frozenset(CallOptions.__dataclass_fields__)

_PLAIN = CallOptions()
"""A call without options (frozen, so one serves every call)."""


def make_options(task_name: str, options: Mapping[str, Any]) -> TaskOptions:
    """Build :class:`TaskOptions`, refusing unknown names with the list of known ones."""
    unknown = sorted(set(options) - TASK_OPTION_NAMES)
    if unknown:
        raise ConfigurationError(
            f"task {task_name}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(TASK_OPTION_NAMES))}"
        )
    values = dict(options)
    if isinstance(values.get("retry_on"), type):
        values["retry_on"] = (values["retry_on"],)
    elif "retry_on" in values:
        values["retry_on"] = tuple(values["retry_on"])
    return TaskOptions(**values)


def task_id_of(func: Callable[..., Any]) -> TaskId:
    """``module.qualname``, refusing functions a worker could not import by name."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if module in (None, "__main__"):
        raise ConfigurationError(
            f"task {qualname!r} is defined in __main__; workers import tasks by module name, "
            "so define it in an importable module (e.g. tasks.py) and import it from there"
        )
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigurationError(
            f"task {module}.{qualname} is not defined at module level; workers import tasks "
            "by name, so define it at the top level of its module"
        )
    return TaskId(f"{module}.{qualname}")


def _short(value: Any) -> str:
    text = compact_json(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Task(Generic[P, R]):
    """A function registered with an :class:`~kubenenc.app.App`; calling it registers an
    invocation and returns an :class:`~kubenenc.invocation.Invocation` at once.

    It holds what it uses of its app, not the app: the runtime (backend, serializers) and
    the resolver of the options in force (see :mod:`kubenenc.runtime`)."""

    def __init__(
        self,
        runtime: Runtime,
        resolver: OptionsResolver,
        func: Callable[P, R],
        options: TaskOptions,
    ) -> None:
        self.runtime = runtime
        self.resolver = resolver
        self.func = func
        self.options = options
        self.id = task_id_of(func)
        self.name = func.__qualname__
        self.signature = inspect.signature(func)
        self.is_async = inspect.iscoroutinefunction(func)
        params = list(self.signature.parameters.values())
        self._simple: tuple[str, ...] | None = (
            tuple(p.name for p in params)
            if all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
            else None
        )
        self.__doc__ = func.__doc__
        self.__wrapped__ = func
        self._shared: tuple[tuple[Any, ...], _Fixed, bool] | None = None  # see _fixed
        self._check_key_names()

    def _check_key_names(self, policy: ConcurrencyPolicy | str | None = None) -> None:
        policy = self.options.concurrency if policy is None else policy
        if not isinstance(policy, ConcurrencyPolicy) or policy.key is None:
            return
        missing = [k for k in policy.key if k not in self.signature.parameters]
        if missing:
            raise ConfigurationError(
                f"task {self.id}: concurrency key names {', '.join(missing)}, which the "
                f"function does not take; its arguments: {', '.join(self.signature.parameters)}"
            )

    def policy(self) -> ConcurrencyPolicy | None:
        """The concurrency policy in force now (a named one is read from the backend)."""
        policy = self.resolver.task_options(self).concurrency
        if isinstance(policy, str):
            found = self.resolver.named_policy(policy)
            self._check_key_names(found)
            return found
        return policy

    def __repr__(self) -> str:
        return f"<Task {self.id}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        return self._submit([(args, kwargs)], _PLAIN, single=True)[0]

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """The same as calling the task."""
        return self._submit([(args, kwargs)], _PLAIN, single=True)[0]

    def with_options(
        self,
        *,
        priority: int | None = None,
        pool: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        depends_on: Iterable[Invocation[Any] | str] = (),
        countdown: float | None = None,
        eta: datetime | None = None,
    ) -> BoundCall[P, R]:
        """A caller of this task with per-call options; the task's arguments stay apart.

        ``countdown`` (seconds) or ``eta`` (an aware datetime) delay the start: the call is
        registered at once (visible, cancellable, deduplicated by its policy) but no worker
        claims it before then; among calls that are due, claim order is unchanged."""
        deps = tuple(InvocationId(d.id if isinstance(d, Invocation) else d) for d in depends_on)
        return BoundCall(self, CallOptions(priority, pool, timeout, retries, deps, countdown, eta))

    def parallelize(
        self, calls: Iterable[tuple[Any, ...] | Mapping[str, Any] | Any]
    ) -> InvocationGroup[R]:
        """Register many calls in batches: each item is a tuple of positional arguments, a
        mapping of keyword arguments, or a single positional argument."""
        return InvocationGroup(self.runtime, self._submit(_as_calls(calls), CallOptions()))

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the plain function here, bypassing the backend (for tests and debugging)."""
        return self.func(*args, **kwargs)

    # -- building invocations ----------------------------------------------------------------

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if self._simple is not None and not kwargs and len(args) == len(self._simple):
            return dict(zip(self._simple, args, strict=True))  # the common case, without inspect
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def _encode(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], fixed: _Fixed
    ) -> tuple[dict[str, Any], str]:
        """The call's arguments as a JSON tree and as stored text; where a wrong argument
        fails."""
        arguments = self._bind(args, kwargs)
        try:
            tree, text = self._encode_bound(arguments, fixed)
        except SerializationError:
            raise
        except (ValueError, RecursionError) as exc:  # an int past 4,300 digits, deep nesting
            raise SerializationError(
                f"{self.name}() arguments cannot be encoded as JSON: {str(exc)[:200]}"
            ) from None
        if len(text) > fixed.max_bytes:  # ASCII text: characters are bytes
            raise ValueTooLarge(
                f"{self.name}() arguments are {len(text):,} bytes encoded, over the limit of "
                f"{fixed.max_bytes:,} (max_value_bytes); store large data elsewhere and pass a "
                "reference, or raise the limit per task with @app.task(max_value_bytes=...)"
            )
        return tree, text

    def _encode_bound(self, arguments: dict[str, Any], fixed: _Fixed) -> tuple[dict[str, Any], str]:
        tree: dict[str, Any] = {}
        for name, value in arguments.items():
            kind = type(value)
            if kind is str or kind is int or kind is bool or value is None:
                tree[name] = value  # what to_json_tree returns for them, without the call
                continue
            try:
                tree[name] = to_json_tree(
                    value, f"{self.name}() argument {name!r}", self.runtime.types
                )
            except SerializationError:
                if not fixed.pickle:
                    raise
                tree[name] = repr(value)
        if fixed.pickle:
            text = self.runtime.serializer.dumps_named(arguments, f"{self.name}() arguments")
        else:
            flat = flat_json(tree)  # the same text as the encoder's, built faster for scalars
            text = compact_json(tree) if flat is None else flat
        return tree, text

    def _build_all(
        self, encoded: Sequence[tuple[dict[str, Any], str]], call: CallOptions, fixed: _Fixed
    ) -> list[NewInvocation]:
        """The invocations of encoded calls (from :meth:`_encode`), in their order; what all
        of them share is looked up once."""
        task, app, scope, serializer, depends_on = (
            self.id,
            self.runtime.name,
            self.runtime.scope,
            self.runtime.serializer.name,
            call.depends_on,
        )
        policy, not_before = fixed.policy, fixed.not_before
        running_limit = None if policy is None else policy.running_limit
        registration = "allow" if policy is None else policy.registration
        rate = None if policy is None else policy.rate_spec
        prefix, limit = f"{self.name}(", _DISPLAY_LIMIT
        out: list[NewInvocation] = []
        for (tree, text), id in zip(encoded, new_invocation_ids(len(encoded)), strict=True):
            display = f"{prefix}{', '.join([_short(v) for v in tree.values()])})"
            if len(display) > limit:
                display = display[: limit - 4] + "...)"
            out.append(
                NewInvocation(
                    id=id,
                    app=app,
                    task=task,
                    args=text,
                    call_key=call_key(task, tree, scope=scope),
                    display=display,
                    pool=fixed.pool,
                    priority=fixed.priority,
                    max_retries=fixed.max_retries,
                    timeout=fixed.timeout,
                    running_key=None
                    if policy is None
                    else running_key(policy, task, tree, scope=scope),
                    running_limit=running_limit,
                    registration_key=None
                    if policy is None
                    else registration_key(policy, task, tree, scope=scope),
                    registration=registration,
                    depends_on=depends_on,
                    parent=fixed.parent,
                    serializer=serializer,
                    not_before=not_before,
                    rate_key=None if rate is None else rate_key(policy, task, tree, scope=scope),
                    rate=rate,
                    callbacks=fixed.callbacks,
                    headers=fixed.headers,
                )
            )
        return out

    def _register_overlapped(
        self, encoded: list[tuple[dict[str, Any], str]], call: CallOptions, fixed: _Fixed
    ) -> tuple[list[NewInvocation], list[RegisterResult]]:
        """Register batch after batch on a second thread while this one builds the next:
        the backend call mostly waits on the network or the server, so both proceed. Batches
        go in order; after a failed one no more are sent, and the first failure raises."""
        backend = self.runtime.backend
        failed = threading.Event()

        def send(chunk: list[NewInvocation]) -> list[RegisterResult]:
            if failed.is_set():
                return []
            try:
                return backend.register(chunk, time.time())
            except BaseException:
                failed.set()
                raise

        new: list[NewInvocation] = []
        sent: list[Future[list[RegisterResult]]] = []
        with ThreadPoolExecutor(1, thread_name_prefix="kubenenc-register") as sender:
            for start in range(0, len(encoded), _BATCH):
                if failed.is_set():
                    break
                chunk = self._build_all(encoded[start : start + _BATCH], call, fixed)
                new += chunk
                sent.append(sender.submit(send, chunk))
        results: list[RegisterResult] = []
        for future in sent:
            results += future.result()
        return new, results

    def _fixed(self, call: CallOptions) -> _Fixed:
        """What every call of one submit shares: options and policy (each read once), the
        parent."""
        opts = self.resolver.task_options(self)
        runtime = self.runtime
        # What follows from the options in force, the call's own options, the backend and
        # the app's tasks is worked out once for as long as none of them changes (the
        # resolver hands back the same options object until it reads them again); the
        # parent, the due time, the trace context, a named policy and the callbacks' plan
        # are read per submit. Speed: a lone call pays this on every call.
        key = (
            opts, runtime.backend, len(self.resolver.tasks),
            call.pool, call.priority, call.retries, call.timeout,
        )  # fmt: skip
        shared = self._shared
        if shared is None or shared[0] != key:
            shared = self._shared = (
                key,
                _Fixed(
                    pool=runtime.queue(call.pool or opts.pool),
                    priority=opts.priority if call.priority is None else call.priority,
                    max_retries=opts.retries if call.retries is None else call.retries,
                    timeout=call.timeout or opts.timeout,
                    policy=None if isinstance(opts.concurrency, str) else opts.concurrency,
                    parent=None,
                    pickle=runtime.serializer.name != "json",
                    max_bytes=runtime.value_limit(opts.max_value_bytes),
                ),
                bool(
                    opts.on_success
                    or opts.on_failure
                    or opts.on_retry
                    or watchers(self.resolver, self.id)
                ),
            )
        base = shared[1]
        ctx = context.current.get()
        return _Fixed(
            base.pool,
            base.priority,
            base.max_retries,
            base.timeout,
            self.policy() if isinstance(opts.concurrency, str) else base.policy,
            None if ctx is None else ctx.invocation_id,
            base.pickle,
            base.max_bytes,
            call.due(time.time()),
            plan(runtime, self.resolver, self) if shared[2] else None,
            tracing.current_headers(),
        )

    def _built(
        self, calls: Iterable[tuple[tuple[Any, ...], Mapping[str, Any]]], call: CallOptions
    ) -> list[NewInvocation]:
        """The invocations of ``calls``, checked and encoded, not registered (for a caller
        that registers several tasks' calls in one step: ``App.emit``)."""
        fixed = self._fixed(call)
        return self._build_all([self._encode(a, k, fixed) for a, k in calls], call, fixed)

    def _submit(
        self,
        calls: Iterable[tuple[tuple[Any, ...], Mapping[str, Any]]],
        call: CallOptions,
        single: bool = False,
    ) -> list[Invocation[R]]:
        fixed = self._fixed(call)
        runtime = self.runtime
        # Every call is checked and encoded before anything is registered, so a wrong
        # argument anywhere registers nothing.
        encoded = [self._encode(a, k, fixed) for a, k in calls]
        batch = batching.open_for(runtime)
        if batch is not None:
            if single and fixed.policy is None:
                return [batch.add(self._build_all(encoded, call, fixed)[0])]
            batch.flush()  # keeps call order (see kubenenc.batching)
        backend = runtime.backend
        new: Sequence[NewInvocation] = []
        results: list[RegisterResult] = []
        # A backend may take larger batches (the optional BatchRegister role: one that
        # pipelines its own calls, reading ``new`` a slice at a time as it sends, so the
        # slices are built while the server works on the ones before); an SDK thread then
        # adds nothing.
        if len(encoded) == 1:  # a lone call: nothing to overlap
            new = self._build_all(encoded, call, fixed)
            results = backend.register(new, time.time())
        elif len(encoded) <= max(_BATCH, runtime.roles.register_batch):
            new = _Built(encoded, lambda part: self._build_all(part, call, fixed))
            results = backend.register(new, time.time())
        else:
            new, results = self._register_overlapped(encoded, call, fixed)
        out: list[Invocation[R]] = []
        rejected: list[tuple[NewInvocation, InvocationId]] = []
        for item, res in zip(new, results, strict=True):
            if res.kind is RegisterKind.REJECTED:
                rejected.append((item, res.id))
            out.append(Invocation(runtime, res.id))
        if rejected:
            item, existing = rejected[0]
            error = RegistrationRejected(
                f"{item.display} refused: invocation {existing} with the same concurrency key "
                f"is not final yet (registration='reject'); {len(rejected)} call(s) refused",
                existing,
            )
            refused = {id(i) for i, _ in rejected}
            error.accepted = [
                inv for inv, item in zip(out, new, strict=True) if id(item) not in refused
            ]
            raise error
        return out


class _Built(Sequence[NewInvocation]):
    """The invocations of encoded calls, built when first read, a slice at a time.

    The calls were all checked when encoded; what is left (ids, keys, display) cannot fail,
    so it may wait until the backend reads it: a backend that sends one slice while the
    server runs the one before then overlaps this work with the server's. Items once built
    are kept, so every read (and any retry) sees the same invocations.
    """

    _STEP = 500

    def __init__(
        self,
        encoded: Sequence[tuple[dict[str, Any], str]],
        build: Callable[[Sequence[tuple[dict[str, Any], str]]], list[NewInvocation]],
    ) -> None:
        self._encoded = encoded
        self._build = build
        self._items: list[NewInvocation] = []
        self._lock = threading.Lock()

    def _upto(self, stop: int) -> None:
        if stop > len(self._items):
            with self._lock:
                done = len(self._items)
                if stop > done:
                    self._items += self._build(self._encoded[done:stop])

    def __len__(self) -> int:
        return len(self._encoded)

    @overload
    def __getitem__(self, index: int) -> NewInvocation: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[NewInvocation]: ...

    def __getitem__(self, index: int | slice) -> NewInvocation | Sequence[NewInvocation]:
        if isinstance(index, slice):
            self._upto(index.indices(len(self._encoded))[1])
            return self._items[index]
        position = range(len(self._encoded))[index]  # IndexError as a list raises it
        self._upto(min(position + self._STEP, len(self._encoded)))
        return self._items[position]

    def __iter__(self) -> Iterator[NewInvocation]:
        for start in range(0, len(self._encoded), self._STEP):
            self._upto(start + self._STEP)
            yield from self._items[start : start + self._STEP]


@dataclass(frozen=True, slots=True)
class _Fixed:
    pool: str
    """The stored queue name (the app's scope and the pool, see :mod:`kubenenc.scope`)."""
    priority: int
    max_retries: int
    timeout: float | None
    policy: ConcurrencyPolicy | None
    parent: InvocationId | None
    pickle: bool
    max_bytes: int
    not_before: float = 0.0
    callbacks: str | None = None
    headers: dict[str, str] | None = None
    """Trace context of the caller's current span (see :mod:`kubenenc.tracing`)."""


class BoundCall(Generic[P, R]):
    """A task with call options attached, from :meth:`Task.with_options`."""

    def __init__(self, task: Task[P, R], options: CallOptions) -> None:
        self.task = task
        self.options = options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        return self.task._submit([(args, kwargs)], self.options, single=True)[0]

    def parallelize(
        self, calls: Iterable[tuple[Any, ...] | Mapping[str, Any] | Any]
    ) -> InvocationGroup[R]:
        """:meth:`Task.parallelize` with these call options."""
        return InvocationGroup(self.task.runtime, self.task._submit(_as_calls(calls), self.options))

    def with_options(self, **changes: Any) -> BoundCall[P, R]:
        """More call options on top of these."""
        unknown = sorted(set(changes) - CALL_OPTION_NAMES)
        if unknown:
            raise ConfigurationError(
                f"unknown call option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(CALL_OPTION_NAMES))}"
            )
        if "countdown" in changes and "eta" not in changes:
            changes["eta"] = None  # the later delay replaces the earlier one
        elif "eta" in changes and "countdown" not in changes:
            changes["countdown"] = None
        if "depends_on" in changes:
            changes["depends_on"] = tuple(
                InvocationId(d.id if isinstance(d, Invocation) else d)
                for d in changes["depends_on"]
            )
        return BoundCall(self.task, replace(self.options, **changes))


def _as_calls(
    calls: Iterable[tuple[Any, ...] | Mapping[str, Any] | Any],
) -> Iterator[tuple[tuple[Any, ...], Mapping[str, Any]]]:
    # A generator: each pair is encoded and dropped at once, not kept for the whole submit
    # (fewer live objects, fewer garbage-collector passes over them).
    for item in calls:
        if isinstance(item, tuple):
            yield item, {}
        elif isinstance(item, Mapping):
            yield (), item
        else:
            yield (item,), {}
