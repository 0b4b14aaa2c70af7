"""The reconcilers, as plain functions of (context, resource body) -> new status.

kopf calls these through :mod:`kubenenc_operator.handlers`; tests call them directly with a
fake :class:`~kubenenc_operator.kube.KubeApi` and a memory backend. Each one is
level-triggered: it reads what exists, computes what should exist, writes only the
difference, and returns the whole status it wants (so running it twice changes nothing).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubenenc.backends import Backend
from kubenenc.backends.engine import error_path
from kubenenc.concurrency import (
    ConcurrencyPolicy,
    call_key,
    rate_key,
    registration_key,
    running_key,
)
from kubenenc.errors import TaskTimeout
from kubenenc.ids import InvocationId, TaskId, new_invocation_id
from kubenenc.records import NewInvocation, WorkerInfo
from kubenenc.scaling import Decision, Direction, Load, ScalingOptions, WorkerLoad, decide
from kubenenc.scaling import deletion_costs as compute_costs
from kubenenc.status import Status
from kubenenc.task_defaults import TASK_PREFIX, TaskDefaults, scoped_name, task_defaults_name
from pydantic import ValidationError

from kubenenc_operator import cron
from kubenenc_operator.backends import BackendCache
from kubenenc_operator.graph import describe_cycle, find_cycles
from kubenenc_operator.kube import (
    KubeApi,
    KubeError,
    custom_path,
    deployment_path,
    pods_path,
    secret_path,
    secret_value,
)
from kubenenc_operator.metrics import Metrics
from kubenenc_operator.models import (
    API_VERSION,
    TaskDefinitionSpec,
    WorkerPoolSpec,
)
from kubenenc_operator.resources import (
    DELETION_COST,
    Truth,
    deployment,
    deployment_patch,
    now_rfc3339,
    parse_rfc3339,
    selector,
    set_condition,
)
from kubenenc_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

RECENT = 10_000
"""Newest PENDING / SUCCESS / FAILED invocations read per sweep of a backend, shared by all
its TaskDefinitions, for the oldest pending and last success/failure times (the counts are
exact, from :meth:`~kubenenc.backends.contract.Records.counts_by_task`)."""
OLDEST_CAP = 100_000
"""A task with more pending invocations than the shared read saw is read alone, up to this
many: beyond it, its oldest pending time is that of the newest ``OLDEST_CAP``."""


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
    _posted: dict[tuple[str, str], str] = field(default_factory=dict)
    _stats: dict[str, tuple[float, dict[str, TaskStats]]] = field(default_factory=dict)
    _stats_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _stored: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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

    # -- task numbers ------------------------------------------------------------------------

    def task_stats(self, url: str) -> dict[str, TaskStats]:
        """Every task's numbers in backend ``url``, gathered at most once per
        ``status_interval / 2`` however many TaskDefinitions ask (a lock per URL, so
        concurrent handlers wait for one sweep rather than each running their own)."""
        with self._lock:
            lock = self._stats_locks.setdefault(url, threading.Lock())
        with lock:
            hit = self._stats.get(url)
            now = self.clock()
            if hit is not None and now - hit[0] < self.settings.status_interval / 2:
                return hit[1]
            stats = self.backends.use(url, gather_task_stats)
            self._stats[url] = (now, stats)
            return stats

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

    def pool_url(self, namespace: str, pool: str, ttl: float = 10.0) -> str:
        """The backend URL of WorkerPool ``namespace/pool`` (cached ``ttl`` s: every
        TaskDefinition of the pool asks on every tick)."""
        cache_key = (namespace, "workerpool", pool)
        now = self.clock()
        with self._lock:
            hit = self._urls.get(cache_key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        body = self.kube.get(custom_path(namespace, "workerpools", pool))
        if body is None:
            raise ReconcileError(f"WorkerPool {namespace}/{pool} does not exist")
        ref = (body.get("spec") or {}).get("backend") or {}
        url = self.secret_url(namespace, ref.get("secretName", ""), ref.get("key", "url"), ttl)
        with self._lock:
            self._urls[cache_key] = (now, url)
        return url


def _stamp(ctx: Ctx) -> str:
    return now_rfc3339(dt.datetime.fromtimestamp(ctx.clock(), dt.UTC))


def _meta(body: Mapping[str, Any]) -> tuple[str, str, int | None]:
    meta = body["metadata"]
    return meta["name"], meta["namespace"], meta.get("generation")


# -- WorkerPool ---------------------------------------------------------------------------------


def read_load(
    backend: Backend, pool: str, now: float, heartbeat_timeout: float
) -> tuple[Load, list[WorkerLoad]]:
    """A pool's load from the backend: counts by status plus live workers' heartbeats."""
    counts = backend.counts(pool=pool)
    live: list[WorkerInfo] = [
        w for w in backend.workers() if w.pool == pool and now - w.at <= heartbeat_timeout
    ]
    pending = sum(counts.get(s, 0) for s in (Status.PENDING, Status.RETRY, Status.REGISTERED))
    load = Load(
        pending=pending,
        running=counts.get(Status.RUNNING, 0),
        paused=counts.get(Status.PAUSED, 0),
        holders=sum(1 for w in live if w.paused > 0),
    )
    return load, [WorkerLoad(w.host, w.running, w.paused) for w in live]


def scaling_options(spec: WorkerPoolSpec) -> ScalingOptions:
    """The pure scaling options of a WorkerPool spec."""
    auto = spec.autoscaling
    return ScalingOptions(
        min_replicas=auto.min_replicas,
        max_replicas=auto.max_replicas,
        target_per_replica=auto.target_per_replica or spec.slots,
        activation_threshold=auto.activation_threshold,
        scale_in_cooldown=float(auto.scale_in_cooldown_seconds),
        max_step=auto.max_step,
    )


def apply_deletion_costs(
    ctx: Ctx, namespace: str, pool: str, workers: Iterable[WorkerLoad]
) -> dict[str, int]:
    """Annotate the pool's pods with pod-deletion-cost (idle first); returns the costs."""
    pods = [
        p
        for p in ctx.kube.list(pods_path(namespace), label_selector=selector(pool))
        if not p["metadata"].get("deletionTimestamp")
    ]
    costs = dict(compute_costs([p["metadata"]["name"] for p in pods], workers))
    for p in pods:
        name = p["metadata"]["name"]
        have = (p["metadata"].get("annotations") or {}).get(DELETION_COST)
        if have != str(costs[name]):
            try:
                ctx.kube.patch(
                    pods_path(namespace, name),
                    {"metadata": {"annotations": {DELETION_COST: str(costs[name])}}},
                )
            except KubeError as exc:
                if exc.status != 404:
                    raise
    return costs


@dataclass
class _PoolView:
    """What one pool reconcile observed and decided."""

    load: Load = field(default_factory=Load)
    workers: list[WorkerLoad] = field(default_factory=list)
    degraded: str | None = None
    decision: Decision | None = None
    low_since: str | None = None


def _observe_pool(
    ctx: Ctx, name: str, namespace: str, spec: WorkerPoolSpec, current: int, low: str | None
) -> _PoolView:
    view = _PoolView()
    now = ctx.clock()
    try:
        url = ctx.secret_url(namespace, spec.backend.secret_name, spec.backend.key)
        view.load, view.workers = ctx.backends.use(
            url, lambda b: read_load(b, name, now, ctx.settings.heartbeat_timeout)
        )
    except Exception as exc:
        view.degraded = f"cannot read the backend: {exc}"
        ctx.metrics.inc("kubenenc_operator_reconcile_errors_total", kind="WorkerPool")
        view.low_since = low
        return view
    if spec.autoscaling.enabled:
        since = parse_rfc3339(low).timestamp() if low else None
        view.decision = decide(scaling_options(spec), view.load, current, now, since)
        if view.decision.low_since is not None:
            view.low_since = now_rfc3339(dt.datetime.fromtimestamp(view.decision.low_since, dt.UTC))
    return view


def _pool_replicas(spec: WorkerPoolSpec, view: _PoolView, current: int | None) -> int:
    if not spec.autoscaling.enabled:
        return spec.replicas
    if view.decision is not None:
        return view.decision.replicas
    return current if current is not None else spec.autoscaling.min_replicas


def _apply_deployment(
    ctx: Ctx, desired: dict[str, Any], existing: Mapping[str, Any] | None
) -> None:
    patch = deployment_patch(desired, existing)
    if patch is None:
        return
    name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]
    if existing is not None:
        ctx.kube.patch(deployment_path(namespace, name), patch)
        return
    try:
        ctx.kube.create(deployment_path(namespace), desired)
    except KubeError as exc:
        if exc.status != 409:  # another replica created it a moment ago
            raise


def _pool_conditions(
    conditions: list[dict[str, Any]],
    view: _PoolView,
    replicas: int,
    ready: int,
    generation: int | None,
    stamp: str,
) -> list[dict[str, Any]]:
    if view.degraded is not None:
        conditions = set_condition(
            conditions, "Degraded", "True", "BackendUnavailable", view.degraded, generation, stamp
        )
    else:
        conditions = set_condition(
            conditions, "Degraded", "False", "AsExpected", "", generation, stamp
        )
    d = view.decision
    if d is not None:
        scaling: Truth = "True" if d.changed else "False"
        conditions = set_condition(
            conditions, "Scaling", scaling, d.direction.value, d.message, generation, stamp
        )
    if replicas == 0:
        return set_condition(
            conditions, "Ready", "True", "ScaledToZero", "no work: 0 pods", generation, stamp
        )
    ok: Truth = "True" if ready >= replicas else "False"
    return set_condition(
        conditions, "Ready", ok, "Available" if ok == "True" else "Progressing",
        f"{ready}/{replicas} pods ready", generation, stamp,
    )  # fmt: skip


def reconcile_pool(ctx: Ctx, body: Mapping[str, Any], *, scale: bool = True) -> dict[str, Any]:
    """Make the pool's Deployment right and (with ``scale``) size it; return the status.

    Without ``scale`` (a replica that does not lead) the backend is not read and the
    replica count already running is kept.
    """
    name, namespace, generation = _meta(body)
    old = dict(body.get("status") or {})
    conditions: list[dict[str, Any]] = list(old.get("conditions") or [])
    stamp = _stamp(ctx)
    ctx.metrics.inc("kubenenc_operator_reconciles_total", kind="WorkerPool")
    try:
        spec = WorkerPoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        conditions = set_condition(
            conditions, "Ready", "False", "InvalidSpec", str(exc), generation, stamp
        )
        return {"observedGeneration": generation, "conditions": conditions}
    existing = ctx.kube.get(deployment_path(namespace, name))
    current: int | None = (existing or {}).get("spec", {}).get("replicas")
    if not scale:
        view = _PoolView(low_since=old.get("lowSince"))
    else:
        view = _observe_pool(ctx, name, namespace, spec, current or 0, old.get("lowSince"))
    decision = view.decision
    scaling_in = decision is not None and decision.direction in (Direction.DOWN, Direction.COOLING)
    if existing is not None and scaling_in:
        apply_deletion_costs(ctx, namespace, name, view.workers)
    replicas = _pool_replicas(spec, view, current)
    _apply_deployment(ctx, deployment(name, namespace, body["metadata"]["uid"], spec, replicas),
                      existing)  # fmt: skip
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "selector": selector(name),
        "lowSince": view.low_since,
        "replicas": replicas,
        "desiredReplicas": decision.wanted if decision else replicas,
        "readyReplicas": int((existing or {}).get("status", {}).get("readyReplicas") or 0),
        "lastScaleTime": old.get("lastScaleTime"),
    }
    if decision is not None and decision.changed and current is not None:
        ctx.metrics.inc(
            "kubenenc_operator_scaling_decisions_total",
            pool=f"{namespace}/{name}",
            direction=decision.direction.value,
        )
        ctx.event(body, "Normal", decision.direction.value, decision.message)
        log.info("WorkerPool %s/%s: %s", namespace, name, decision.message)
        status["lastScaleTime"] = stamp
    if scale and view.degraded is None:
        load = view.load
        status.update(backlog=load.pending, running=load.running, paused=load.paused)
        for gauge, value in (
            ("kubenenc_operator_pool_backlog", load.pending),
            ("kubenenc_operator_pool_running", load.running),
            ("kubenenc_operator_pool_paused", load.paused),
            ("kubenenc_operator_pool_desired_replicas", status["desiredReplicas"]),
        ):
            ctx.metrics.set(gauge, value, pool=f"{namespace}/{name}")
    if scale:
        conditions = _pool_conditions(
            conditions, view, replicas, status["readyReplicas"], generation, stamp
        )
    status["conditions"] = conditions
    return status


# -- ConcurrencyPolicy --------------------------------------------------------------------------


def namespace_backend_urls(ctx: Ctx, namespace: str) -> tuple[list[str], list[str]]:
    """Backend URLs of every WorkerPool in ``namespace`` plus the operator default, and the
    problems met resolving them."""
    urls: list[str] = [ctx.settings.backend] if ctx.settings.backend else []
    problems: list[str] = []
    for pool in ctx.kube.list(custom_path(namespace, "workerpools")):
        ref = (pool.get("spec") or {}).get("backend") or {}
        try:
            url = ctx.secret_url(namespace, ref.get("secretName", ""), ref.get("key", "url"))
        except ReconcileError as exc:
            problems.append(f"WorkerPool {pool['metadata']['name']}: {exc}")
            continue
        if url not in urls:
            urls.append(url)
    return urls, problems


def reconcile_policy(ctx: Ctx, body: Mapping[str, Any]) -> dict[str, Any]:
    """Write the policy into every backend of its namespace, as ``<namespace>/<name>`` (see
    :mod:`kubenenc.task_defaults`); return the status."""
    name, namespace, generation = _meta(body)
    old = dict(body.get("status") or {})
    stamp = _stamp(ctx)
    ctx.metrics.inc("kubenenc_operator_reconciles_total", kind="ConcurrencyPolicy")
    conditions: list[dict[str, Any]] = list(old.get("conditions") or [])
    try:
        policy = ConcurrencyPolicy.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        conditions = set_condition(
            conditions, "Ready", "False", "InvalidSpec", str(exc), generation, stamp
        )
        return {"observedGeneration": generation, "backends": 0, "conditions": conditions}
    # Fields added later (rate, burst) are left out while unset, so workers of an older
    # version, whose model forbids unknown fields, still read a policy that does not use them.
    text = policy.model_dump_json(
        exclude={f for f in ("rate", "burst") if getattr(policy, f) is None}
    )
    urls, problems = namespace_backend_urls(ctx, namespace)
    written = 0
    for url in urls:
        try:
            ctx.store_once(url, scoped_name(name, namespace), text)
            written += 1
        except Exception as exc:
            problems.append(f"backend unavailable: {exc}")
    if not urls:
        conditions = set_condition(
            conditions, "Ready", "False", "NoBackend",
            "no WorkerPool in this namespace has a backend yet and the operator has no "
            "default backend (KUBENENC_OPERATOR_BACKEND): create a WorkerPool",
            generation, stamp,
        )  # fmt: skip
    elif problems:
        ctx.metrics.inc("kubenenc_operator_reconcile_errors_total", kind="ConcurrencyPolicy")
        conditions = set_condition(
            conditions, "Ready", "False", "BackendUnavailable", "; ".join(problems),
            generation, stamp,
        )  # fmt: skip
    else:
        conditions = set_condition(
            conditions, "Ready", "True", "Stored", f"stored in {written} backend(s)",
            generation, stamp,
        )  # fmt: skip
    return {"observedGeneration": generation, "backends": written, "conditions": conditions}


def delete_policy(ctx: Ctx, body: Mapping[str, Any]) -> list[str]:
    """Remove the policy from every backend of its namespace; returns the problems."""
    name, namespace, _ = _meta(body)
    urls, problems = namespace_backend_urls(ctx, namespace)
    for url in urls:
        try:
            ctx.forget_stored(url, scoped_name(name, namespace))
        except Exception as exc:
            problems.append(f"backend unavailable: {exc}")
    if problems:
        ctx.event(body, "Warning", "CleanupIncomplete", "; ".join(problems))
    return problems


# -- TaskDefinition -----------------------------------------------------------------------------


def task_id(spec: TaskDefinitionSpec) -> TaskId:
    """``module:function`` -> the SDK's task id ``module.function``."""
    module, _, attr = spec.task.partition(":")
    return TaskId(f"{module}.{attr}")


@dataclass
class TaskStats:
    """One task's numbers in one backend, gathered from a single sweep of the backend."""

    counts: dict[str, int] = field(default_factory=dict)
    oldest_pending: float | None = None
    last: dict[Status, float] = field(default_factory=dict)

    def status_fields(self, now: float) -> dict[str, Any]:
        """The TaskDefinition status fields."""
        out: dict[str, Any] = {
            "invocations": dict(self.counts),
            "oldestPendingTime": None
            if self.oldest_pending is None
            else now_rfc3339(dt.datetime.fromtimestamp(self.oldest_pending, dt.UTC)),
        }
        for status, key in (
            (Status.SUCCESS, "lastSuccessTime"),
            (Status.FAILED, "lastFailureTime"),
        ):
            if status in self.last:
                out[key] = now_rfc3339(dt.datetime.fromtimestamp(self.last[status], dt.UTC))
        return out


def gather_task_stats(backend: Backend) -> dict[str, TaskStats]:
    """Numbers of every task in ``backend``: exact counts in one read, plus the newest
    ``RECENT`` pending, succeeded and failed invocations for the times (a task with more
    pending ones than that read saw is read alone), however many TaskDefinitions use them."""
    stats: dict[str, TaskStats] = {}
    for task, by_status in backend.counts_by_task().items():
        counts = {s.value: n for s, n in by_status.items() if n}
        if counts:
            stats[task] = TaskStats(counts=counts)
    seen: dict[str, int] = {}
    for status in (Status.PENDING, Status.SUCCESS, Status.FAILED):
        for r in backend.query(status=status, limit=RECENT):
            t = stats.setdefault(r.task, TaskStats())
            if status is Status.PENDING:
                seen[r.task] = seen.get(r.task, 0) + 1
                if t.oldest_pending is None or r.created_at < t.oldest_pending:
                    t.oldest_pending = r.created_at
            else:
                t.last[status] = max(t.last.get(status, 0.0), r.updated_at)
    for task, t in stats.items():
        pending = t.counts.get(Status.PENDING.value, 0)
        if pending > seen.get(task, 0):
            found = backend.query(task=task, status=Status.PENDING, limit=min(pending, OLDEST_CAP))
            t.oldest_pending = min((r.created_at for r in found), default=t.oldest_pending)
    return stats


def task_defaults(spec: TaskDefinitionSpec, namespace: str) -> TaskDefaults:
    """What a TaskDefinition sets for every call of its task (see :mod:`kubenenc.task_defaults`):
    its pool and policy, and each option it sets (an unset one keeps the decorator's value)."""
    return TaskDefaults(
        retries=spec.retries,
        backoff=spec.backoff_seconds,
        max_backoff=spec.max_backoff_seconds,
        timeout=spec.timeout_seconds,
        priority=spec.priority,
        pool=spec.pool,
        concurrency=scoped_name(spec.concurrency_policy_ref, namespace)
        if spec.concurrency_policy_ref
        else None,
    )


def collect_task_defaults(
    ctx: Ctx, keep: Mapping[str, set[str]], namespaces: set[str] | None
) -> int:
    """Remove the stored TaskDefinition options that no Ready TaskDefinition wrote in a full
    sweep (``keep``: url -> names written): those of deleted definitions (there is no
    finalizer on TaskDefinitions) or of definitions no longer Ready. Only names of
    ``namespaces`` (None: every namespace) are touched. Returns how many were removed."""
    removed = 0
    for url in ctx.backends.urls():
        try:
            names = ctx.backends.use(url, lambda b: list(b.policies()))
        except Exception:
            log.exception("cannot list the stored options")
            continue
        for name in names:
            namespace, sep, rest = name.partition("/")
            if not sep or not rest.startswith(TASK_PREFIX) or name in keep.get(url, ()):
                continue
            if namespaces is not None and namespace not in namespaces:
                continue
            try:
                ctx.forget_stored(url, name)
                removed += 1
            except Exception:
                log.exception("cannot remove %s", name)
    return removed


def scheduled_call(
    spec: TaskDefinitionSpec, policy: ConcurrencyPolicy | None, app: str
) -> NewInvocation:
    """The invocation a cron tick submits (arguments from the spec, JSON-encoded)."""
    task = task_id(spec)
    args = dict(spec.arguments or {})
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    return NewInvocation(
        id=new_invocation_id(),
        app=app,
        task=task,
        args=json.dumps(args, separators=(",", ":")),
        call_key=call_key(task, args),
        display=f"{spec.task.partition(':')[2]}({shown})"[:200],
        pool=spec.pool,
        priority=spec.priority or 0,
        max_retries=spec.retries or 0,
        timeout=spec.timeout_seconds,
        running_key=running_key(policy, task, args),
        running_limit=policy.running_limit if policy else None,
        registration_key=registration_key(policy, task, args),
        registration=policy.registration if policy else "allow",
        rate_key=rate_key(policy, task, args),
        rate=policy.rate_spec if policy else None,
    )


@dataclass(frozen=True, slots=True)
class Siblings:
    """What a TaskDefinition is checked against: its namespace's other resources."""

    depends_on: Mapping[str, Sequence[str]]
    """Every TaskDefinition of the namespace -> its dependsOn."""
    pools: frozenset[str]
    policies: frozenset[str]
    cycles: Mapping[str, tuple[str, ...]] | None = None
    """:func:`find_cycles` of ``depends_on``, when the caller computed it once for many."""
    owners: Mapping[str, str] | None = None
    """``spec.task`` -> the (alphabetically first) TaskDefinition naming it: only that one
    stores the task's options, the others are refused."""


def _namespace_problem(
    name: str, spec: TaskDefinitionSpec, siblings: Siblings
) -> tuple[str, str] | None:
    """A ``dependsOn`` loop through ``name``, or another definition of the same task."""
    known = siblings.depends_on.get(name)
    if siblings.cycles is not None and known is not None and list(known) == spec.depends_on:
        cycles = siblings.cycles
    else:
        cycles = find_cycles({**siblings.depends_on, name: spec.depends_on})
    if name in cycles:
        return "CycleDetected", describe_cycle(cycles[name])
    owner = (siblings.owners or {}).get(spec.task, name)
    if owner != name:
        return "DuplicateTask", (
            f"TaskDefinition {owner!r} already defines task {spec.task} in this namespace: "
            "delete one of them"
        )
    return None


def check_references(
    name: str, spec: TaskDefinitionSpec, siblings: Siblings
) -> tuple[str, str] | None:
    """``(reason, message)`` of the first thing wrong with the references, or None."""
    problem = _namespace_problem(name, spec, siblings)
    if problem is not None:
        return problem
    if spec.pool not in siblings.pools:
        return "PoolNotFound", (
            f"WorkerPool {spec.pool!r} does not exist in this namespace: create it or fix spec.pool"
        )
    if spec.concurrency_policy_ref and spec.concurrency_policy_ref not in siblings.policies:
        return "PolicyNotFound", (
            f"ConcurrencyPolicy {spec.concurrency_policy_ref!r} does not exist in this "
            "namespace: create it or fix spec.concurrencyPolicyRef"
        )
    missing = [d for d in spec.depends_on if d not in siblings.depends_on]
    if missing:
        return "DependencyNotFound", (
            f"dependsOn names TaskDefinitions that do not exist: {', '.join(missing)}"
        )
    if spec.schedule:
        try:
            cron.parse(spec.schedule)
        except cron.CronError as exc:
            return "InvalidSchedule", f"spec.schedule: {exc}"
    return None


def reconcile_taskdef(
    ctx: Ctx,
    body: Mapping[str, Any],
    siblings: Siblings,
    *,
    backend_status: bool = True,
    stored: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """Check references and loops, store the options in the backend (while Ready; the name
    is added to ``stored[url]``), read counts from the backend, run the schedule."""
    name, namespace, generation = _meta(body)
    old = dict(body.get("status") or {})
    stamp = _stamp(ctx)
    ctx.metrics.inc("kubenenc_operator_reconciles_total", kind="TaskDefinition")
    conditions: list[dict[str, Any]] = list(old.get("conditions") or [])
    try:
        spec = TaskDefinitionSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        conditions = set_condition(
            conditions, "Ready", "False", "InvalidSpec", str(exc), generation, stamp
        )
        return {"observedGeneration": generation, "conditions": conditions}
    status: dict[str, Any] = {"observedGeneration": generation}
    problem = check_references(name, spec, siblings)
    if problem is None or problem[0] != "CycleDetected":
        ctx.forget_event(body, "CycleDetected")
    if problem is not None:
        reason, message = problem
        if reason == "CycleDetected" and ctx.event_once(body, "Warning", reason, message):
            ctx.metrics.inc("kubenenc_operator_cycles_found_total")
            log.warning("TaskDefinition %s/%s: %s", namespace, name, message)
        conditions = set_condition(conditions, "Ready", "False", reason, message, generation, stamp)
        status["conditions"] = conditions
        return status
    reason, message = "Reconciled", f"runs on WorkerPool {spec.pool}"
    if backend_status:
        try:
            url = ctx.pool_url(namespace, spec.pool)
            stored_as = task_defaults_name(task_id(spec), namespace)
            ctx.store_once(url, stored_as, task_defaults(spec, namespace).model_dump_json())
            if stored is not None:
                stored.setdefault(url, set()).add(stored_as)
            stats = ctx.task_stats(url).get(task_id(spec), TaskStats())
            status.update(stats.status_fields(ctx.clock()))
            if spec.schedule:
                run_schedule(ctx, body, spec, url)
        except Exception as exc:
            ctx.metrics.inc("kubenenc_operator_reconcile_errors_total", kind="TaskDefinition")
            reason, message = "BackendUnavailable", f"cannot read the backend: {exc}"
    ok: Truth = "False" if reason == "BackendUnavailable" else "True"
    status["conditions"] = set_condition(
        conditions, "Ready", ok, reason, message, generation, stamp
    )
    return status


def run_schedule(ctx: Ctx, body: Mapping[str, Any], spec: TaskDefinitionSpec, url: str) -> bool:
    """Submit one call for the latest cron tick if nobody has yet; True when submitted.

    The tick is claimed first by writing ``status.lastScheduleTime`` with the
    ``resourceVersion`` that was read: of two operator replicas (or two runs) that saw the
    same version, exactly one write succeeds (the other gets 409 Conflict) and only the
    winner submits. Ticks before the resource existed are not caught up.
    """
    assert spec.schedule is not None
    name, namespace, _ = _meta(body)
    now = dt.datetime.fromtimestamp(ctx.clock(), dt.UTC)
    tick = cron.parse(spec.schedule).last_tick(now)
    if tick is None:
        return False
    created = body["metadata"].get("creationTimestamp")
    if created and tick < parse_rfc3339(created):
        return False
    last = (body.get("status") or {}).get("lastScheduleTime")
    if last and parse_rfc3339(last) >= tick:
        return False
    try:
        ctx.kube.patch(
            custom_path(namespace, "taskdefinitions", name, "status"),
            {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": {"lastScheduleTime": now_rfc3339(tick)},
            },
        )
    except KubeError as exc:
        if exc.status == 409:
            return False  # another replica (or a newer version) got there first
        raise
    policy = None
    if spec.concurrency_policy_ref:
        ref = scoped_name(spec.concurrency_policy_ref, namespace)
        text = ctx.backends.use(url, lambda b: b.get_policy(ref))
        policy = ConcurrencyPolicy.model_validate_json(text) if text else None
    call = scheduled_call(spec, policy, app=spec.task.partition(":")[0])
    result = ctx.backends.use(url, lambda b: b.register([call], ctx.clock()))[0]
    ctx.metrics.inc("kubenenc_operator_scheduled_total")
    ctx.event(
        body, "Normal", "Scheduled",
        f"tick {now_rfc3339(tick)}: {call.display} -> {result.kind.value} {result.id}",
    )  # fmt: skip
    return True


# -- the enforcer -------------------------------------------------------------------------------


def fail_overdue(backend: Backend, now: float, grace: float) -> list[InvocationId]:
    """Fail (TaskTimeout) the RUNNING invocations that ran past their ``timeout`` by more than
    ``grace`` seconds, and return their ids.

    Their worker should have stopped them at the timeout; one that did not is hung (its loop
    stuck while a thread still sends heartbeats, so :meth:`recover` never fires) and holds
    the invocation's running slot for ever. Failing it releases the slot, fails its
    dependents and wakes its waiters; the worker, if it ever looks, sees it is no longer its
    own and stops it. No retry: the worker that would schedule it is the one not working.
    The start is the last change of the record (the claim, or the resume after a pause), so
    the paused time is never counted against it.
    """
    running = backend.counts().get(Status.RUNNING, 0)
    if not running:
        return []
    failed: list[InvocationId] = []
    for r in backend.query(status=Status.RUNNING, limit=running):
        if r.timeout is None or now - r.updated_at <= r.timeout + grace:
            continue
        message = (
            f"{r.display} ran past its timeout of {r.timeout:g} s by more than {grace:g} s and "
            f"its worker {r.worker} did not stop it (hung?): failed by the operator's enforcer"
        )
        if backend.fail(r.id, error_path(TaskTimeout), message, now):
            failed.append(r.id)
    return failed


def sweep(ctx: Ctx, urls: Iterable[str], *, overdue: bool = True) -> int:
    """One enforcer pass over each backend: hand back the work of workers whose heartbeat
    expired (:meth:`~kubenenc.backends.contract.Coordination.recover`) and, with ``overdue``,
    fail the invocations their live worker left running past their timeout
    (:func:`fail_overdue`). Returns how many invocations it moved.

    The other checks the design lists are done inline, atomically, by every backend, so a
    sweep would find nothing: ``pause`` checks the whole wait chain (edges and declared
    dependencies) and writes the edge in one atomic step, so no loop can form between two
    workers' pauses; ``finish``/``cancel``/``fail`` of an invocation wake its waiters and
    fail its declared dependents in the same step, so no wait is left on a failed one. A
    paused invocation is a suspended call inside its worker's process: only that worker can
    resume it, and when the worker dies ``recover`` hands it back. See operator/README.md.
    """
    total = 0
    for url in urls:

        def one(b: Backend) -> int:
            now = ctx.clock()
            moved = b.recover(now, ctx.settings.heartbeat_timeout, ctx.settings.max_lost)
            ctx.metrics.inc("kubenenc_operator_recovered_total", len(moved))
            if not overdue:
                return len(moved)
            late = fail_overdue(b, now, ctx.settings.timeout_grace)
            ctx.metrics.inc("kubenenc_operator_overdue_failed_total", len(late))
            for id in late:
                log.warning("invocation %s ran past its timeout: failed", id)
            return len(moved) + len(late)

        try:
            total += ctx.backends.use(url, one)
        except Exception:
            log.exception("enforcer sweep failed")
    return total
