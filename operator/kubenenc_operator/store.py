"""What the operator has seen of its namespaces, and the TaskDefinition sweep that uses it.

TaskDefinitions are many (hundreds per namespace) and each needs the whole namespace to be
checked (loops in ``dependsOn``, which pools and policies exist). A kopf timer per object
would keep a task and a worker alive per object and re-read the namespace per object; instead
kopf's watch events feed one :class:`Store` (plain dicts), and one loop
(:func:`sweep_taskdefs`, run by the leader) reconciles the TaskDefinitions that changed at
once and all of them every ``status_interval``, writing only the status fields that moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubenenc_operator import logic
from kubenenc_operator.kube import KubeError, custom_path

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name)"""


@dataclass
class Store:
    """TaskDefinition bodies, and the names of pools and policies, by namespace."""

    taskdefs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    pools: dict[str, set[str]] = field(default_factory=dict)
    policies: dict[str, set[str]] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: asyncio.Event | None = None

    def wake(self) -> None:
        """Wake the sweep loop (call from the event loop)."""
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

    def taskdef_event(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Record a watch event; True when the definition needs a reconcile soon (it is new,
        or its spec changed, or it was deleted and its siblings must be rechecked)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            old = self.taskdefs.get(key)
            if kind == "DELETED":
                self.taskdefs.pop(key, None)
                self._touch_namespace(key[0])
                return True
            self.taskdefs[key] = dict(body)
            changed = old is None or old.get("spec") != body.get("spec")
            if changed:
                self._touch_namespace(key[0])
            return changed

    def _touch_namespace(self, namespace: str) -> None:
        # Loops and missing references depend on every definition of the namespace.
        self.dirty.update(k for k in self.taskdefs if k[0] == namespace)

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

    def snapshot(self, key: Key) -> tuple[dict[str, Any] | None, logic.Siblings]:
        """A definition's body and its namespace's siblings, consistent with each other."""
        namespace = key[0]
        with self._lock:
            body = self.taskdefs.get(key)
            depends = {
                name: tuple((b.get("spec") or {}).get("dependsOn") or ())
                for (ns, name), b in self.taskdefs.items()
                if ns == namespace
            }
            siblings = logic.Siblings(
                depends_on=depends,
                pools=frozenset(self.pools.get(namespace, ())),
                policies=frozenset(self.policies.get(namespace, ())),
            )
            return (dict(body) if body is not None else None), siblings

    def stored(self, key: Key, body: Mapping[str, Any]) -> None:
        """Remember what a status write returned (its resourceVersion and status)."""
        with self._lock:
            if key in self.taskdefs:
                self.taskdefs[key] = dict(body)


def status_diff(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch turning status ``current`` into ``wanted`` (only moved fields)."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def sweep_taskdefs(ctx: logic.Ctx, store: Store, keys: Iterable[Key]) -> int:
    """Reconcile each definition in ``keys``; returns how many statuses were written."""
    written = 0
    for key in keys:
        body, siblings = store.snapshot(key)
        if body is None:
            continue
        try:
            status = logic.reconcile_taskdef(ctx, body, siblings)
            patch = status_diff(body.get("status") or {}, status)
            if not patch:
                continue
            result = ctx.kube.patch(
                custom_path(key[0], "taskdefinitions", key[1], "status"), {"status": patch}
            )
            store.stored(key, result)
            written += 1
        except KubeError as exc:
            if exc.status != 404:  # deleted meanwhile: its DELETED event follows
                log.warning("TaskDefinition %s/%s: %s", *key, exc)
        except Exception:
            ctx.metrics.inc("kubenenc_operator_reconcile_errors_total", kind="TaskDefinition")
            log.exception("TaskDefinition %s/%s failed to reconcile", *key)
    return written


async def run_sweeps(ctx: logic.Ctx, store: Store, leader: Any) -> None:
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
        if time.monotonic() - last_full >= ctx.settings.status_interval:
            keys = store.keys()
            last_full = time.monotonic()
        if keys:
            await asyncio.to_thread(sweep_taskdefs, ctx, store, keys)
