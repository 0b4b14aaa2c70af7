"""What every reconciler shares: the context passed in explicitly, and its small helpers.

:class:`Ctx` holds the Kubernetes API, the open backends, the settings, the metrics and the
clock, plus what one operator replica remembers between reconciles: Events already posted,
policy texts already stored, backend URLs read from Secrets, and reads shared by many
objects. Nothing here knows one resource kind; :mod:`kubenenc_operator.pools`,
:mod:`~kubenenc_operator.policies`, :mod:`~kubenenc_operator.taskdefs` and
:mod:`~kubenenc_operator.enforcer` build on it and never on each other, so a reader meets
one kind per module. Tests build a :class:`Ctx` with a fake
:class:`~kubenenc_operator.kube.KubeApi` and a memory backend.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, cast

from kubenenc.backends import Backend
from kubenenc.settings import Liveness
from pydantic import ValidationError

from kubenenc_operator.backends import BackendCache
from kubenenc_operator.kube import KubeApi, custom_path, secret_path, secret_value
from kubenenc_operator.metrics import Metrics
from kubenenc_operator.models import API_VERSION
from kubenenc_operator.resources import now_rfc3339, set_condition
from kubenenc_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Read = Callable[[Backend], T]
"""A read of one backend, shared through :meth:`Ctx.shared_read`."""


class ReconcileError(RuntimeError):
    """Something outside is not as needed yet; the status says what, the caller retries."""


@dataclass
class Ctx:
    """What every reconciler needs, passed in explicitly."""

    kube: KubeApi
    backends: BackendCache
    settings: OperatorSettings
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    component: str = "kubenenc-operator"
    _urls: dict[tuple[str, str, str], tuple[float, str]] = field(default_factory=dict)
    _pools: dict[tuple[str, str], tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _posted: dict[tuple[str, str], str] = field(default_factory=dict)
    _reads: dict[tuple[str, Read[Any]], tuple[float, Any]] = field(default_factory=dict)
    _read_locks: dict[tuple[str, Read[Any]], threading.Lock] = field(default_factory=dict)
    _stored: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    _liveness: dict[str, dict[tuple[str, str], Liveness]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- liveness -----------------------------------------------------------------------------

    def note_liveness(self, url: str, pool: tuple[str, str], liveness: Liveness) -> None:
        """Remember the liveness of WorkerPool ``pool`` (namespace, name) on backend ``url``
        (its reconcile calls this), for :meth:`liveness_of`."""
        with self._lock:
            self._liveness.setdefault(url, {})[pool] = liveness

    def liveness_of(self, url: str) -> Liveness:
        """The liveness the enforcer applies on backend ``url``: the most lenient of the
        pools using it (a worker is never thought dead sooner than its own pool says), or
        the default when no pool was seen on it."""
        with self._lock:
            seen = list(self._liveness.get(url, {}).values())
        if not seen:
            return Liveness()
        return Liveness(
            heartbeat_timeout=max(x.heartbeat_timeout for x in seen),
            max_lost=max(x.max_lost for x in seen),
        )

    # -- events -------------------------------------------------------------------------------

    def event(self, body: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about ``body`` (failures are logged, never raised)."""
        meta = body["metadata"]
        stamp = now_rfc3339(dt.datetime.fromtimestamp(self.clock(), dt.UTC))
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body.get("apiVersion", API_VERSION),
                "kind": body.get("kind", ""),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.settings.identity,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.kube.create(f"/api/v1/namespaces/{meta['namespace']}/events", event)
        except Exception:
            log.exception("cannot post event %s for %s", reason, meta["name"])

    def event_once(self, body: Mapping[str, Any], type: str, reason: str, message: str) -> bool:
        """Post the Event unless this replica already posted the same reason and message for
        this object (a handler and a timer may both see the same change); True if posted."""
        key = (str(body["metadata"].get("uid", "")), reason)
        with self._lock:
            if self._posted.get(key) == message:
                return False
            self._posted[key] = message
        self.event(body, type, reason, message)
        return True

    def forget_event(self, body: Mapping[str, Any], reason: str) -> None:
        """The condition behind ``reason`` is gone: post it again if it comes back."""
        with self._lock:
            self._posted.pop((str(body["metadata"].get("uid", "")), reason), None)

    # -- reads shared by many objects --------------------------------------------------------

    def shared_read(self, url: str, read: Read[T], max_age: float) -> T:
        """``read(backend)`` of backend ``url``, run at most once per ``max_age`` seconds
        however many objects ask (a lock per URL and reader, so concurrent handlers wait for
        one run rather than each running their own). The TaskDefinitions of one backend
        share one sweep of its numbers this way."""
        key = (url, read)
        with self._lock:
            lock = self._read_locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._reads.get(key)
            now = self.clock()
            if hit is not None and now - hit[0] < max_age:
                return cast(T, hit[1])
            found = self.backends.use(url, read)
            self._reads[key] = (now, found)
            return found

    # -- what is stored in the backends ------------------------------------------------------

    def store_once(self, url: str, name: str, text: str) -> bool:
        """``set_policy(name, text)`` in backend ``url`` unless this replica wrote the same
        text there less than ``policy_resync`` seconds ago (so a backend that lost it gets it
        back); True when written."""
        now = self.clock()
        with self._lock:
            hit = self._stored.get((url, name))
        if hit is not None and hit[1] == text and now - hit[0] < self.settings.policy_resync:
            return False
        self.backends.use(url, lambda b: b.set_policy(name, text))
        with self._lock:
            self._stored[(url, name)] = (now, text)
        return True

    def forget_stored(self, url: str, name: str) -> None:
        """``set_policy(name, None)`` in backend ``url``."""
        self.backends.use(url, lambda b: b.set_policy(name, None))
        with self._lock:
            self._stored.pop((url, name), None)

    # -- backend URLs -------------------------------------------------------------------------

    def secret_url(self, namespace: str, name: str, key: str, ttl: float = 10.0) -> str:
        """The backend URL in Secret ``namespace/name`` at ``key`` (cached ``ttl`` s)."""
        cache_key = (namespace, name, key)
        now = self.clock()
        with self._lock:
            hit = self._urls.get(cache_key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        secret = self.kube.get(secret_path(namespace, name))
        if secret is None:
            raise ReconcileError(f"Secret {namespace}/{name} does not exist")
        url = secret_value(secret, key)
        if not url:
            raise ReconcileError(f"Secret {namespace}/{name} has no key {key!r}")
        with self._lock:
            self._urls[cache_key] = (now, url)
        return url

    def _pool_spec(self, namespace: str, pool: str, ttl: float) -> dict[str, Any]:
        """The spec of WorkerPool ``namespace/pool`` (cached ``ttl`` s: every TaskDefinition
        of the pool asks on every tick)."""
        now = self.clock()
        with self._lock:
            hit = self._pools.get((namespace, pool))
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        body = self.kube.get(custom_path(namespace, "workerpools", pool))
        if body is None:
            raise ReconcileError(f"WorkerPool {namespace}/{pool} does not exist")
        spec = dict(body.get("spec") or {})
        with self._lock:
            self._pools[(namespace, pool)] = (now, spec)
        return spec

    def pool_url(self, namespace: str, pool: str, ttl: float = 10.0) -> str:
        """The backend URL of WorkerPool ``namespace/pool``."""
        ref = self._pool_spec(namespace, pool, ttl).get("backend") or {}
        return self.secret_url(namespace, ref.get("secretName", ""), ref.get("key", "url"), ttl)

    def pool_app(self, namespace: str, pool: str, ttl: float = 10.0) -> str:
        """The App name (``spec.appName``) of WorkerPool ``namespace/pool``: with the
        namespace, the scope of its queue and keys (see :mod:`kubenenc.scope`)."""
        app = self._pool_spec(namespace, pool, ttl).get("appName")
        if not app:
            raise ReconcileError(
                f"WorkerPool {namespace}/{pool} has no spec.appName: set it to its App's name"
            )
        return str(app)


def now_stamp(ctx: Ctx) -> str:
    """The context's clock now, as an RFC 3339 timestamp for statuses and conditions."""
    return now_rfc3339(dt.datetime.fromtimestamp(ctx.clock(), dt.UTC))


def invalid_spec(
    exc: ValidationError, conditions: list[dict[str, Any]], generation: int | None, stamp: str
) -> dict[str, Any]:
    """The status of an object whose spec does not validate: not Ready, saying why."""
    conditions = set_condition(
        conditions, "Ready", "False", "InvalidSpec", str(exc), generation, stamp
    )
    return {"observedGeneration": generation, "conditions": conditions}


class Begun(NamedTuple):
    """What every reconciler starts from (see :func:`begin`)."""

    name: str
    namespace: str
    generation: int | None
    old: dict[str, Any]
    """The status as it stands."""
    stamp: str
    """Now, for the conditions this pass sets."""
    conditions: list[dict[str, Any]]
    """The status's conditions, to be updated."""


def begin(ctx: Ctx, body: Mapping[str, Any], kind: str) -> Begun:
    """Start reconciling ``body`` of ``kind``: its identity, its status as it stands, the
    time; the pass is counted."""
    name, namespace, generation = object_meta(body)
    old = dict(body.get("status") or {})
    ctx.metrics.inc("kubenenc_operator_reconciles_total", kind=kind)
    conditions = list(old.get("conditions") or [])
    return Begun(name, namespace, generation, old, now_stamp(ctx), conditions)


def object_meta(body: Mapping[str, Any]) -> tuple[str, str, int | None]:
    """``(name, namespace, generation)`` of a resource body."""
    meta = body["metadata"]
    return meta["name"], meta["namespace"], meta.get("generation")
