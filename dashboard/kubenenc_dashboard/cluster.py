"""The kubenenc custom resources of a Kubernetes cluster, read for the Workers page.

Optional: only with ``kubenenc dashboard --kubernetes`` (the chart turns it on), and the
``kubernetes`` client library is imported only then. It lists WorkerPools, TaskDefinitions and
ConcurrencyPolicies (cluster-wide, or in the given namespaces) with what their status says:
replicas, backlog, running and paused work and the last scalings of a pool; invocation counts,
the oldest pending call and the schedule of a task; where a policy was written; and every
resource's conditions. A kind that cannot be listed (no CRD, no permission) is shown with the
reason instead of failing the page. Each read is one list call per kind and namespace.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

GROUP, VERSION = "kubenenc.io", "v1alpha1"
TIMEOUT = 5.0
"""Seconds one list call may take (a page never hangs on a slow API server)."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One custom resource as the page shows it."""

    kind: str
    namespace: str
    name: str
    fields: list[tuple[str, str]]
    conditions: list[tuple[str, str, str, str]]
    """``(type, status, reason, message)``."""
    history: list[tuple[str, str, str, str]] = field(default_factory=list)
    """A WorkerPool's last scaling decisions, newest first: ``(time, "1 -> 3", reason,
    message)`` from its status's ``scalingEvents`` (the operator keeps the last ten)."""


@dataclass(slots=True)
class ClusterState:
    """What one read found, by kind (plural), and why a kind could not be read."""

    resources: dict[str, list[Resource]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _counts(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in sorted(value.items()) if v)


def _text(value: Any) -> str:
    if value is None or value in ("", [], {}):
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _pool(o: dict[str, Any]) -> list[tuple[str, str]]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    auto = spec.get("autoscaling") or {}
    return [
        ("app", _text(spec.get("app"))), ("slots", _text(spec.get("slots"))),
        ("replicas", f"{st.get('replicas', 0)} (ready {st.get('readyReplicas', 0)}, "
                     f"wanted {st.get('desiredReplicas', 0)}, "
                     f"{auto.get('minReplicas', '?')}-{auto.get('maxReplicas', '?')})"),
        ("backlog", _text(st.get("backlog", 0))), ("running", _text(st.get("running", 0))),
        ("paused", _text(st.get("paused", 0))), ("last scaled", _text(st.get("lastScaleTime"))),
    ]  # fmt: skip


def _task(o: dict[str, Any]) -> list[tuple[str, str]]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [
        ("task", _text(spec.get("task"))), ("pool", _text(spec.get("pool"))),
        ("invocations", _counts(st.get("invocations"))),
        ("oldest pending", _text(st.get("oldestPendingTime"))),
        ("schedule", _text(spec.get("schedule"))),
        ("last scheduled", _text(st.get("lastScheduleTime"))),
        ("policy", _text(spec.get("concurrencyPolicyRef"))),
        ("depends on", _text(spec.get("dependsOn"))),
    ]  # fmt: skip


def _policy(o: dict[str, Any]) -> list[tuple[str, str]]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [
        ("running limit", _text(spec.get("runningLimit"))), ("key", _text(spec.get("key"))),
        ("registration", _text(spec.get("registration"))),
        ("written to backends", _text(st.get("backends", 0))),
    ]  # fmt: skip


KINDS: dict[str, tuple[str, Callable[[dict[str, Any]], list[tuple[str, str]]]]] = {
    "workerpools": ("WorkerPool", _pool),
    "taskdefinitions": ("TaskDefinition", _task),
    "concurrencypolicies": ("ConcurrencyPolicy", _policy),
}


def _resource(kind: str, describe: Callable[[dict[str, Any]], list[tuple[str, str]]],
              o: dict[str, Any]) -> Resource:  # fmt: skip
    meta = o.get("metadata") or {}
    conditions = [
        (str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")),
         str(c.get("message", "")))
        for c in (o.get("status") or {}).get("conditions") or []
    ]  # fmt: skip
    history = [
        (str(e.get("time", "")), f"{e.get('fromReplicas', '?')} → {e.get('toReplicas', '?')}",
         str(e.get("reason", "")), str(e.get("message", "")))
        for e in reversed((o.get("status") or {}).get("scalingEvents") or [])
        if isinstance(e, dict)
    ]  # fmt: skip
    return Resource(
        kind, meta.get("namespace", ""), meta.get("name", ""), describe(o), conditions, history
    )


class ClusterView:
    """Lists the custom resources through a ``kubernetes`` CustomObjectsApi."""

    def __init__(self, api: Any, namespaces: Sequence[str] = ()) -> None:
        self.api = api
        self.namespaces = list(namespaces)

    @classmethod
    def connect(cls, kubeconfig: str | None, namespaces: Sequence[str] = ()) -> ClusterView:
        """In the cluster's service account when running in a pod (and no ``kubeconfig``
        is given), else from ``kubeconfig`` (default: ``KUBECONFIG`` or ~/.kube/config)."""
        from kubernetes import client, config

        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.ApiClient()
        else:
            api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return cls(client.CustomObjectsApi(api), namespaces)

    def read(self) -> ClusterState:
        """Every resource of the three kinds (one list call per kind and namespace)."""
        state = ClusterState()
        for plural, (kind, describe) in KINDS.items():
            try:
                objects: list[dict[str, Any]] = []
                if self.namespaces:
                    for ns in self.namespaces:
                        found = self.api.list_namespaced_custom_object(
                            GROUP, VERSION, ns, plural, _request_timeout=TIMEOUT
                        )
                        objects.extend(found.get("items") or [])
                else:
                    found = self.api.list_cluster_custom_object(
                        GROUP, VERSION, plural, _request_timeout=TIMEOUT
                    )
                    objects = list(found.get("items") or [])
            except Exception as exc:  # an ApiException, or the server unreachable
                status = getattr(exc, "status", None)
                reason = getattr(exc, "reason", None) or type(exc).__name__
                state.errors[plural] = f"cannot list {plural}: {status or ''} {reason}".strip()
                continue
            state.resources[plural] = sorted(
                (_resource(kind, describe, o) for o in objects),
                key=lambda r: (r.namespace, r.name),
            )
        return state
