"""WorkerPools: the Deployment of each pool, sized from the pool's real load.

:func:`reconcile_pool` is level-triggered like every reconciler: it reads the Deployment and
(on the leader) the backend's counts and live workers' heartbeats, asks the pure
:func:`kubenenc.scaling.decide` for the replica count, writes only the difference and
returns the whole status. When it scales in, it first annotates the pool's pods with a
pod-deletion-cost (idle pods first), so Kubernetes removes pods that run nothing. A
replica that does not lead passes ``scale=False``: it keeps the Deployment right without
reading the backend or changing the replica count.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubenenc.backends import Backend
from kubenenc.records import WorkerInfo
from kubenenc.scaling import Decision, Direction, Load, ScalingOptions, WorkerLoad, decide
from kubenenc.scaling import deletion_costs as compute_costs
from kubenenc.scope import queue_name, scope
from kubenenc.status import Status
from pydantic import ValidationError

from kubenenc_operator.context import Ctx, begin, invalid_spec
from kubenenc_operator.kube import KubeError, deployment_path, pods_path
from kubenenc_operator.models import SCALING_HISTORY, WorkerPoolSpec
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

log = logging.getLogger(__name__)


def read_load(
    backend: Backend, pool: str, now: float, heartbeat_timeout: float
) -> tuple[Load, list[WorkerLoad]]:
    """A pool's load from the backend: counts by status plus live workers' heartbeats.
    ``pool`` is the stored queue name (:func:`pool_queue`)."""
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


def pool_queue(namespace: str, name: str, spec: WorkerPoolSpec) -> str:
    """The stored queue of WorkerPool ``namespace/name``: its pool inside the scope of its
    namespace and ``spec.appName`` (what its workers claim, see :mod:`kubenenc.scope`)."""
    return queue_name(scope(spec.app_name, namespace), name)


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
        queue = pool_queue(namespace, name, spec)
        ctx.note_liveness(url, (namespace, name), spec.liveness)
        timeout = spec.heartbeat_timeout_seconds
        view.load, view.workers = ctx.backends.use(url, lambda b: read_load(b, queue, now, timeout))
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


def _with_event(
    history: list[dict[str, Any]], stamp: str, before: int, after: int, reason: str, message: str
) -> list[dict[str, Any]]:
    """``history`` with one more scaling decision, cut to the newest ``SCALING_HISTORY``."""
    event = {"time": stamp, "fromReplicas": before, "toReplicas": after, "reason": reason,
             "message": message[:1024]}  # fmt: skip
    return [*history, event][-SCALING_HISTORY:]


def reconcile_pool(ctx: Ctx, body: Mapping[str, Any], *, scale: bool = True) -> dict[str, Any]:
    """Make the pool's Deployment right and (with ``scale``) size it; return the status.

    Without ``scale`` (a replica that does not lead) the backend is not read and the
    replica count already running is kept.
    """
    name, namespace, generation, old, stamp, conditions = begin(ctx, body, "WorkerPool")
    try:
        spec = WorkerPoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return invalid_spec(exc, conditions, generation, stamp)
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
        "scalingEvents": list(old.get("scalingEvents") or []),
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
        status["scalingEvents"] = _with_event(
            status["scalingEvents"], stamp, current, replicas, decision.direction.value,
            decision.message,
        )  # fmt: skip
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
