"""What the operator has seen of its namespaces, and the loops that reconcile from it.

kopf's watch events feed plain in-memory stores (:class:`Store` for TaskDefinitions,
:class:`Objects` for WorkerPools and ConcurrencyPolicies); one loop per kind, run by the
leader, reconciles what changed at once and everything every interval, writing only the
status fields that moved. Why not a kopf timer per object: kopf keeps a task alive per timed
object and puts a finalizer on it (so a pool could not be deleted while no operator runs);
TaskDefinitions are many and each needs its whole namespace (loops in ``dependsOn``), which
a shared store gives once per sweep instead of once per object.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubenenc_operator.context import Ctx
from kubenenc_operator.graph import find_cycles
from kubenenc_operator.kube import KubeError, custom_path
from kubenenc_operator.taskdefs import Siblings, collect_task_defaults, reconcile_taskdef

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name)"""


class _Waker:
    """An asyncio wake-up flag for one loop."""

    _wake: asyncio.Event | None = None

    def wake(self) -> None:
        """Wake the loop (call from the event loop)."""
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        """Until :meth:`wake` or ``timeout`` seconds."""
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()


@dataclass
class Store(_Waker):
    """TaskDefinition bodies, and the names of pools and policies, by namespace."""

    taskdefs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    pools: dict[str, set[str]] = field(default_factory=dict)
    policies: dict[str, set[str]] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _waiting_on: dict[Key, set[str]] = field(default_factory=dict)
    """(namespace, name) -> the definitions of the namespace whose dependsOn names it."""
    _by_task: dict[Key, set[str]] = field(default_factory=dict)
    """(namespace, spec.task) -> the definitions naming that task."""

    def taskdef_event(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Record a watch event; True when the definition needs a reconcile soon (it is new,
        or its spec changed, or it was deleted and its siblings must be rechecked)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            old = self.taskdefs.get(key)
            if kind == "DELETED":
                self._touch_dependents(key, old)
                self._index(key, old, None)
                self.taskdefs.pop(key, None)
                self.dirty.discard(key)
                return True
            self.taskdefs[key] = dict(body)
            changed = old is None or old.get("spec") != body.get("spec")
            if changed:
                self._index(key, old, body)
                self._touch_dependents(key, old, body)
            return changed

    def _index(
        self, key: Key, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> None:
        """Move ``key`` in the reverse indexes from what ``old`` names to what ``new`` names
        (so an event costs the size of its own spec, not of the namespace)."""
        namespace, name = key
        for body, add in ((old, False), (new, True)):
            spec = (body or {}).get("spec") or {}
            for index, targets in (
                (self._waiting_on, spec.get("dependsOn") or ()),
                (self._by_task, (spec["task"],) if "task" in spec else ()),
            ):
                for target in targets:
                    names = index.setdefault((namespace, str(target)), set())
                    if add:
                        names.add(name)
                    else:
                        names.discard(name)
                        if not names:
                            del index[(namespace, str(target))]

    def _touch_namespace(self, namespace: str) -> None:
        self.dirty.update(k for k in self.taskdefs if k[0] == namespace)

    def _touch_dependents(self, key: Key, *bodies: Mapping[str, Any] | None) -> None:
        """Mark ``key``, every definition that reaches it through ``dependsOn`` (exactly
        those whose loop membership or missing dependencies a change of ``key`` can alter:
        every member of a loop through ``key`` reaches ``key``), and those naming the task
        ``key`` names, before or after (one of them owns the task: DuplicateTask)."""
        namespace, name = key
        seen = {name}
        frontier = [name]
        while frontier:
            for up in self._waiting_on.get((namespace, frontier.pop()), ()):
                if up not in seen:
                    seen.add(up)
                    frontier.append(up)
        for body in bodies:
            task = ((body or {}).get("spec") or {}).get("task")
            if task is not None:
                seen.update(self._by_task.get((namespace, str(task)), ()))
        self.dirty.update((namespace, n) for n in seen if (namespace, n) in self.taskdefs)

    def name_event(self, plural: str, kind: str, namespace: str, name: str) -> None:
        """A pool or policy appeared or went: its namespace's definitions are rechecked."""
        names = self.pools if plural == "workerpools" else self.policies
        with self._lock:
            found = names.setdefault(namespace, set())
            if kind == "DELETED":
                found.discard(name)
            else:
                found.add(name)
            self._touch_namespace(namespace)

    def take_dirty(self) -> list[Key]:
        with self._lock:
            keys = sorted(self.dirty)
            self.dirty.clear()
            return keys

    def keys(self) -> list[Key]:
        with self._lock:
            return sorted(self.taskdefs)

    def namespace_view(self, namespace: str) -> tuple[dict[str, dict[str, Any]], Siblings]:
        """The namespace's definitions by name and their siblings (loops computed once)."""
        with self._lock:
            bodies = {name: dict(b) for (ns, name), b in self.taskdefs.items() if ns == namespace}
            pools = frozenset(self.pools.get(namespace, ()))
            policies = frozenset(self.policies.get(namespace, ()))
        depends = {n: list((b.get("spec") or {}).get("dependsOn") or ()) for n, b in bodies.items()}
        owners: dict[str, str] = {}
        for n in sorted(bodies):
            owners.setdefault(str((bodies[n].get("spec") or {}).get("task")), n)
        siblings = Siblings(depends, pools, policies, cycles=find_cycles(depends), owners=owners)
        return bodies, siblings

    def stored(self, key: Key, body: Mapping[str, Any]) -> None:
        """Remember what a status write returned (its resourceVersion and status)."""
        with self._lock:
            if key in self.taskdefs:
                self.taskdefs[key] = dict(body)


def status_diff(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch turning status ``current`` into ``wanted`` (only moved fields)."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def sweep_taskdefs(ctx: Ctx, store: Store, keys: Iterable[Key], *, full: bool = False) -> int:
    """Reconcile each definition in ``keys``; returns how many statuses were written.

    A ``full`` sweep (``keys`` are all of them) then removes from the backends the stored
    options that no Ready definition wrote (deleted ones: TaskDefinitions have no finalizer).
    """
    stored: dict[str, set[str]] | None = {} if full else None
    by_namespace: dict[str, list[str]] = {}
    for namespace, name in keys:
        by_namespace.setdefault(namespace, []).append(name)
    jobs: list[Callable[[], int]] = []
    for namespace, names in by_namespace.items():
        bodies, siblings = store.namespace_view(namespace)
        jobs.extend(
            functools.partial(_sweep_one, ctx, store, (namespace, n), bodies[n], siblings, stored)
            for n in names
            if n in bodies
        )
    if len(jobs) > 1 and ctx.settings.status_writers > 1:
        # Each status write waits on the API server: a few at once cut a sweep of hundreds
        # of definitions from seconds to a fraction (the reconcilers share only locked state).
        workers = min(ctx.settings.status_writers, len(jobs))
        with ThreadPoolExecutor(workers, thread_name_prefix="taskdefs") as pool:
            written: int = sum(pool.map(_call, jobs))
    else:
        written = sum(job() for job in jobs)
    if stored is not None:
        namespaces = set(ctx.settings.namespaces) or None
        collect_task_defaults(ctx, stored, namespaces)
    return written


def _call(job: Callable[[], int]) -> int:
    return job()


def _sweep_one(
    ctx: Ctx,
    store: Store,
    key: Key,
    body: dict[str, Any],
    siblings: Siblings,
    stored: dict[str, set[str]] | None = None,
) -> int:
    """Reconcile one definition; 1 when its status was written."""
    try:
        status = reconcile_taskdef(ctx, body, siblings, stored=stored)
        patch = status_diff(body.get("status") or {}, status)
        if not patch:
            return 0
        result = ctx.kube.patch(
            custom_path(key[0], "taskdefinitions", key[1], "status"), {"status": patch}
        )
    except KubeError as exc:
        if exc.status != 404:  # deleted meanwhile: its DELETED event follows
            log.warning("TaskDefinition %s/%s: %s", *key, exc)
        return 0
    except Exception:
        ctx.metrics.inc("kubenenc_operator_reconcile_errors_total", kind="TaskDefinition")
        log.exception("TaskDefinition %s/%s failed to reconcile", *key)
        return 0
    store.stored(key, result)
    return 1


async def run_sweeps(ctx: Ctx, store: Store, leader: Any) -> None:
    """The leader's loop: changed definitions at once (batched over 0.2 s), all of them every
    ``status_interval``."""
    last_full = 0.0
    while True:
        await store.wait(ctx.settings.status_interval)
        await asyncio.sleep(0.2)  # let a burst of creations arrive as one batch
        if not leader.is_leader:
            last_full = 0.0
            continue
        keys = store.take_dirty()
        full = time.monotonic() - last_full >= ctx.settings.status_interval
        if full:
            keys = store.keys()
            last_full = time.monotonic()
        if keys or full:
            await asyncio.to_thread(sweep_taskdefs, ctx, store, keys, full=full)


class Objects(_Waker):
    """Bodies of one kind (WorkerPools or ConcurrencyPolicies), and the keys that changed."""

    def __init__(self, plural: str) -> None:
        self.plural = plural
        self.bodies: dict[Key, dict[str, Any]] = {}
        self.dirty: set[Key] = set()
        self._lock = threading.Lock()

    def event(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Record a watch event; True when the object needs a reconcile soon."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            if kind == "DELETED":
                self.bodies.pop(key, None)
                self.dirty.discard(key)
                return False
            old = self.bodies.get(key)
            self.bodies[key] = dict(body)
            if old is None or old.get("spec") != body.get("spec"):
                self.dirty.add(key)
                return True
            return False

    def touch_namespace(self, namespace: str) -> None:
        with self._lock:
            self.dirty.update(k for k in self.bodies if k[0] == namespace)

    def take(self, everything: bool) -> list[tuple[Key, dict[str, Any]]]:
        """The changed objects (or all of them), as copies."""
        with self._lock:
            keys = sorted(self.bodies) if everything else sorted(self.dirty)
            self.dirty.clear()
            return [(k, dict(self.bodies[k])) for k in keys if k in self.bodies]

    def snapshot(self) -> list[tuple[Key, dict[str, Any]]]:
        """Every object, as copies (nothing is marked done)."""
        with self._lock:
            return [(k, dict(v)) for k, v in sorted(self.bodies.items())]

    def stored(self, key: Key, body: Mapping[str, Any]) -> None:
        with self._lock:
            if key in self.bodies:
                self.bodies[key] = dict(body)


Reconcile = Callable[[Ctx, Mapping[str, Any]], dict[str, Any]]


def reconcile_objects(
    ctx: Ctx, objects: Objects, items: Iterable[tuple[Key, dict[str, Any]]],
    reconcile: Reconcile,
) -> int:  # fmt: skip
    """Reconcile each object and write the status fields that moved; returns the writes."""
    written = 0
    for key, body in items:
        try:
            patch = status_diff(body.get("status") or {}, reconcile(ctx, body))
            if not patch:
                continue
            result = ctx.kube.patch(
                custom_path(key[0], objects.plural, key[1], "status"), {"status": patch}
            )
        except KubeError as exc:
            if exc.status != 404:
                log.warning("%s %s/%s: %s", objects.plural, *key, exc)
            continue
        except Exception:
            log.exception("%s %s/%s failed to reconcile", objects.plural, *key)
            continue
        objects.stored(key, result)
        written += 1
    return written


async def run_objects(
    ctx: Ctx, objects: Objects, leader: Any, interval: float, reconcile: Reconcile
) -> None:
    """The leader's loop for one kind: changed objects at once, all every ``interval``."""
    last_full = 0.0
    while True:
        await objects.wait(interval)
        if not leader.is_leader:
            last_full = 0.0
            continue
        everything = time.monotonic() - last_full >= interval
        if everything:
            last_full = time.monotonic()
        items = objects.take(everything)
        if items:
            await asyncio.to_thread(reconcile_objects, ctx, objects, items, reconcile)
