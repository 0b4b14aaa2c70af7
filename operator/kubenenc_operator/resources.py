"""Pure builders: the Deployment of a WorkerPool, conditions, and the Lease decision.

Everything here maps plain data to plain data (dicts as the API server speaks them), so the
handlers stay thin and these are unit-tested without a cluster.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from kubenenc_operator.models import API_VERSION, Condition, WorkerPoolSpec
from kubenenc_operator.podtemplate import PodTemplate

POOL_LABEL = "kubenenc.io/pool"
TEMPLATE_HASH = "kubenenc.io/template-hash"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
PRESTOP_SECONDS = 2
"""The preStop pause: the pod leaves the Service endpoints before SIGTERM starts the drain."""
TERMINATION_MARGIN = 10
"""Seconds on top of preStop + drain before the kubelet sends SIGKILL."""
WORKER_UID = 65532
TMP_SIZE_LIMIT = "256Mi"
"""The writable /tmp (the root file system is read-only): bounded, so a task that fills it
gets its pod evicted instead of filling the node's disk."""


def now_rfc3339(now: dt.datetime | None = None) -> str:
    """``2026-01-02T03:04:05Z`` (UTC, whole seconds, as Kubernetes writes times)."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    """The inverse of :func:`now_rfc3339` (also accepts fractional seconds and offsets)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


# -- WorkerPool -> Deployment -------------------------------------------------------------------


def pool_labels(pool: str) -> dict[str, str]:
    """Labels of a pool's Deployment and pods; ``kubenenc.io/pool`` is the selector."""
    return {
        "app.kubernetes.io/name": "kubenenc-worker",
        "app.kubernetes.io/instance": pool,
        "app.kubernetes.io/managed-by": "kubenenc-operator",
        POOL_LABEL: pool,
    }


def selector(pool: str) -> str:
    """The label selector of a pool's pods, as a string (for the scale subresource)."""
    return f"{POOL_LABEL}={pool}"


def _wire(model: BaseModel) -> Any:
    """A spec model as the API server speaks it (camelCase, unset fields left out)."""
    return model.model_dump(by_alias=True, exclude_none=True)


HARDENED_POD: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": WORKER_UID,
    "runAsGroup": WORKER_UID,
    "fsGroup": WORKER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""The pod security context without a template (a template may change the ids, not the rest)."""
HARDENED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
"""The worker container's security context: not configurable."""


def pod_security_context(template: PodTemplate | None) -> dict[str, Any]:
    """The operator's hardened pod context, with what the template may choose on top.

    The template picks user, groups, sysctls and a Localhost seccomp profile; the values
    that would weaken the hardening (root, runAsNonRoot false, seccomp Unconfined) are refused
    by the CRD and overridden here in any case, so the operator's hardening always wins.
    """
    context = copy.deepcopy(HARDENED_POD)
    if template is None or template.security_context is None:
        return context
    context.update(_wire(template.security_context))
    context["runAsNonRoot"] = True
    if context.get("runAsUser") == 0:
        context["runAsUser"] = WORKER_UID
    if context["seccompProfile"].get("type") not in ("RuntimeDefault", "Localhost"):
        context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def pod_template(pool: str, spec: WorkerPoolSpec) -> dict[str, Any]:
    """The worker pod template: probes, drain, non-root, backend URL from the Secret, and
    what ``spec.template`` adds (see :mod:`kubenenc_operator.podtemplate`)."""
    extra = spec.template
    env: list[dict[str, Any]] = [
        {
            "name": "KUBENENC_BACKEND",
            "valueFrom": {
                "secretKeyRef": {"name": spec.backend.secret_name, "key": spec.backend.key}
            },
        },
        # Bare ConcurrencyPolicy names and TaskDefinition options resolve in this namespace.
        {
            "name": "KUBENENC_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        # The worker refuses to start unless its App has this name: the operator counts the
        # backlog of the queue named by it (kubenenc.scope).
        {"name": "KUBENENC_APP_NAME", "value": spec.app_name},
        {"name": "KUBENENC_WORKER__DRAIN_GRACE", "value": str(spec.drain_grace_seconds)},
        # When a worker is dead: the pool's setting, the one the operator uses for it too.
        {
            "name": "KUBENENC_WORKER__HEARTBEAT_TIMEOUT",
            "value": repr(spec.heartbeat_timeout_seconds),
        },
        {"name": "KUBENENC_WORKER__MAX_LOST", "value": str(spec.max_lost)},
        # Health and metrics on the pod's own address (probes and scrapes reach it there),
        # not on every interface.
        {
            "name": "KUBENENC_WORKER__HTTP_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        },
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - an emptyDir: the root fs is read-only
    ]
    env += [_wire(e) for e in [*(spec.env or ()), *((extra and extra.env) or ())]]
    container: dict[str, Any] = {
        "name": "worker",
        "image": spec.image,
        "command": ["kubenenc"],
        "args": [
            "worker",
            "--app",
            spec.app,
            "--pool",
            pool,
            "--concurrency",
            str(spec.slots),
            "--mode",
            spec.mode,
            "--http-port",
            str(spec.http_port),
            *(["--log-format", spec.log_format] if spec.log_format != "text" else []),
        ],
        "env": env,
        "ports": [{"name": "http", "containerPort": spec.http_port, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "securityContext": copy.deepcopy(HARDENED_CONTAINER),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    resources = spec.resources or (extra and extra.resources)
    if resources:
        container["resources"] = _wire(resources)
    if extra and extra.env_from:
        container["envFrom"] = [_wire(e) for e in extra.env_from]
    if extra and extra.volume_mounts:
        container["volumeMounts"] += [_wire(m) for m in extra.volume_mounts]
    pod: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": spec.drain_grace_seconds
        + PRESTOP_SECONDS
        + TERMINATION_MARGIN,
        "securityContext": pod_security_context(extra),
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}],
        # Workers never call the Kubernetes API: no token in the pod for a task to steal,
        # unless the pool names a service account (its tasks then want that account's rights).
        "automountServiceAccountToken": False,
    }
    account = spec.service_account_name or (extra and extra.service_account_name)
    if account:
        pod["serviceAccountName"] = account
        pod["automountServiceAccountToken"] = True
    metadata: dict[str, Any] = {"labels": pool_labels(pool)}
    if extra is not None:
        _add_pod_parts(pool, extra, metadata, pod)
    return {"metadata": metadata, "spec": pod}


def _add_pod_parts(
    pool: str, extra: PodTemplate, metadata: dict[str, Any], pod: dict[str, Any]
) -> None:
    """The pod-level parts of a template: labels, annotations, volumes, placement."""
    if extra.labels:
        metadata["labels"] = {**extra.labels, **pool_labels(pool)}  # the selector's labels win
    if extra.annotations:
        metadata["annotations"] = dict(extra.annotations)
    if extra.volumes:
        pod["volumes"] += [_wire(v) for v in extra.volumes]
    for field, key in (
        ("node_selector", "nodeSelector"),
        ("tolerations", "tolerations"),
        ("affinity", "affinity"),
        ("priority_class_name", "priorityClassName"),
        ("image_pull_secrets", "imagePullSecrets"),
    ):
        value = getattr(extra, field)
        if value:
            pod[key] = _wire_any(value)
    if extra.topology_spread_constraints:
        pod["topologySpreadConstraints"] = [
            {"labelSelector": {"matchLabels": {POOL_LABEL: pool}}, **_wire(c)}
            for c in extra.topology_spread_constraints
        ]


def _wire_any(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _wire(value)
    if isinstance(value, list):
        return [_wire_any(v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def template_hash(template: Mapping[str, Any]) -> str:
    """A short stable hash of a pod template: the Deployment is patched only when it moves."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def deployment(
    pool: str, namespace: str, owner_uid: str, spec: WorkerPoolSpec, replicas: int
) -> dict[str, Any]:
    """The Deployment the operator owns for WorkerPool ``namespace/pool``."""
    template = pod_template(pool, spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": pool,
            "namespace": namespace,
            "labels": pool_labels(pool),
            "annotations": {TEMPLATE_HASH: template_hash(template)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "WorkerPool",
                    "name": pool,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {POOL_LABEL: pool}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": template,
        },
    }


def deployment_patch(
    desired: Mapping[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """What to patch on ``existing`` to reach ``desired`` (None: nothing to do).

    Only what the operator owns is compared: replicas, the template (by hash, since the API
    server fills in defaults), labels and the owner reference.
    """
    if existing is None:
        return dict(desired)
    patch: dict[str, Any] = {}
    meta = existing.get("metadata", {})
    want_hash = desired["metadata"]["annotations"][TEMPLATE_HASH]
    if (meta.get("annotations") or {}).get(TEMPLATE_HASH) != want_hash:
        patch["metadata"] = {
            "annotations": {TEMPLATE_HASH: want_hash},
            "labels": desired["metadata"]["labels"],
        }
        patch["spec"] = {"template": desired["spec"]["template"]}
    if existing.get("spec", {}).get("replicas") != desired["spec"]["replicas"]:
        patch.setdefault("spec", {})["replicas"] = desired["spec"]["replicas"]
    owners = meta.get("ownerReferences") or []
    if not any(o.get("uid") == desired["metadata"]["ownerReferences"][0]["uid"] for o in owners):
        patch.setdefault("metadata", {})["ownerReferences"] = desired["metadata"]["ownerReferences"]
    return patch or None


# -- conditions ---------------------------------------------------------------------------------

Truth = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type: str,
    status: Truth,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """``conditions`` with ``type`` set; ``lastTransitionTime`` moves only when status does."""
    out: list[dict[str, Any]] = []
    found = False
    for c in conditions:
        if c.get("type") != type:
            out.append(dict(c))
            continue
        found = True
        since = c.get("lastTransitionTime") if c.get("status") == status else now
        out.append(_condition(type, status, reason, message, generation, since or now))
    if not found:
        out.append(_condition(type, status, reason, message, generation, now))
    return out


def _condition(
    type: str, status: Truth, reason: str, message: str, generation: int | None, since: str
) -> dict[str, Any]:
    return Condition(
        type=type,
        status=status,
        reason=reason,
        message=message[:4096],
        last_transition_time=since,
        observed_generation=generation,
    ).model_dump(by_alias=True, exclude_none=True)


def condition(conditions: Sequence[Mapping[str, Any]], type: str) -> Mapping[str, Any] | None:
    """The condition of ``type``, or None."""
    return next((c for c in conditions if c.get("type") == type), None)


# -- leader election ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseView:
    """The parts of a ``coordination.k8s.io/v1`` Lease that election reads."""

    holder: str | None
    renewed: dt.datetime | None
    duration: float


def lease_action(lease: LeaseView | None, me: str, now: dt.datetime) -> str:
    """``create`` (no Lease), ``renew`` (ours), ``take`` (expired or released) or ``wait``."""
    if lease is None:
        return "create"
    if lease.holder == me:
        return "renew"
    if not lease.holder or lease.renewed is None:
        return "take"
    if (now - lease.renewed).total_seconds() > lease.duration:
        return "take"
    return "wait"
