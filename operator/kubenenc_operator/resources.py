"""Pure builders: the Deployment of a WorkerPool, conditions, and the Lease decision.

Everything here maps plain data to plain data (dicts as the API server speaks them), so the
handlers stay thin and these are unit-tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubenenc_operator.models import API_VERSION, Condition, WorkerPoolSpec

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


def pod_template(pool: str, spec: WorkerPoolSpec) -> dict[str, Any]:
    """The worker pod template: probes, drain, non-root, backend URL from the Secret."""
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
        {"name": "KUBENENC_WORKER__DRAIN_GRACE", "value": str(spec.drain_grace_seconds)},
        # Health and metrics on the pod's own address (probes and scrapes reach it there),
        # not on every interface.
        {
            "name": "KUBENENC_WORKER__HTTP_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        },
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - an emptyDir: the root fs is read-only
    ]
    env += [{"name": e.name, "value": e.value} for e in spec.env or ()]
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
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources is not None:
        container["resources"] = spec.resources.model_dump(exclude_none=True)
    pod: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": spec.drain_grace_seconds
        + PRESTOP_SECONDS
        + TERMINATION_MARGIN,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}],
        # Workers never call the Kubernetes API: no token in the pod for a task to steal,
        # unless the pool names a service account (its tasks then want that account's rights).
        "automountServiceAccountToken": False,
    }
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
        pod["automountServiceAccountToken"] = True
    return {"metadata": {"labels": pool_labels(pool)}, "spec": pod}


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
