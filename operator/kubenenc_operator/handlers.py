"""The kopf registry: watch events feed the stores; one deletion handler.

Built by :func:`build_registry` on a fresh ``kopf.OperatorRegistry`` (no global registry to
reset). kopf here only watches: every event of the three kinds updates an in-memory store
(:mod:`kubenenc_operator.store`), and the leader's loops reconcile from those stores
(level-triggered: what changed at once, everything every interval). So:

- no kopf timers (they would keep a task per object and a finalizer on every pool);
- the only finalizer is the ConcurrencyPolicy's: deleting one must remove it from the
  backends, which Kubernetes garbage collection cannot do (run by every replica);
- kopf's own bookkeeping goes to annotations (see ``configure``), never into the user's
  status, which the loops write as the fields that moved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import kopf

from kubenenc_operator.context import Ctx
from kubenenc_operator.models import GROUP, VERSION
from kubenenc_operator.policies import delete_policy
from kubenenc_operator.store import Objects, Store

log = logging.getLogger(__name__)

WP, TD, CP = "workerpools", "taskdefinitions", "concurrencypolicies"


def _plain(body: Any) -> dict[str, Any]:
    """A kopf Body as a plain dict (what the reconcilers take)."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


@dataclass
class Stores:
    """What the watch events feed, one store per kind."""

    taskdefs: Store = field(default_factory=Store)
    pools: Objects = field(default_factory=lambda: Objects(WP))
    policies: Objects = field(default_factory=lambda: Objects(CP))


def build_registry(ctx: Ctx, stores: Stores) -> kopf.OperatorRegistry:
    """A registry whose handlers feed ``stores`` (and clean up deleted policies)."""
    registry = kopf.OperatorRegistry()
    _register_setup(registry)
    _register_pools_and_policies(registry, ctx, stores)
    _register_taskdefs(registry, stores)
    return registry


def _register_setup(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="kopf.kubenenc.io"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="kopf.kubenenc.io", key="last-handled-configuration"
        )
        settings.persistence.finalizer = "kubenenc.io/policy-cleanup"
        settings.posting.level = logging.WARNING  # our own Events say what happened
        settings.scanning.disabled = True  # no CRD/namespace watching: fewer RBAC rights
        settings.execution.max_workers = 16
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60


def _register_taskdefs(registry: kopf.OperatorRegistry, stores: Stores) -> None:
    """Feed the store from watch events (every replica); the leader's sweep reconciles."""

    @kopf.on.event(GROUP, VERSION, TD, id="taskdef-events", registry=registry)
    async def taskdef_event(event: Any, body: Any, **_: Any) -> None:
        if stores.taskdefs.taskdef_event(str(event.get("type") or "ADDED"), _plain(body)):
            stores.taskdefs.wake()


def _register_pools_and_policies(registry: kopf.OperatorRegistry, ctx: Ctx, stores: Stores) -> None:
    @kopf.on.event(GROUP, VERSION, WP, id="pool-events", registry=registry)
    async def pool_event(event: Any, body: Any, **_: Any) -> None:
        kind = str(event.get("type") or "ADDED")
        plain = _plain(body)
        if stores.pools.event(kind, plain):
            stores.pools.wake()
        if kind in ("ADDED", "DELETED"):
            meta = plain["metadata"]
            stores.taskdefs.name_event(WP, kind, meta["namespace"], meta["name"])
            stores.taskdefs.wake()
            stores.policies.touch_namespace(meta["namespace"])  # a new backend to write to
            stores.policies.wake()

    @kopf.on.event(GROUP, VERSION, CP, id="policy-events", registry=registry)
    async def policy_event(event: Any, body: Any, **_: Any) -> None:
        kind = str(event.get("type") or "ADDED")
        plain = _plain(body)
        if plain["metadata"].get("deletionTimestamp"):
            # Being deleted: stop resyncing it; the cleanup handler below removes it from
            # the backends.
            stores.policies.event("DELETED", plain)
            return
        if stores.policies.event(kind, plain):
            stores.policies.wake()
        if kind in ("ADDED", "DELETED"):
            meta = plain["metadata"]
            stores.taskdefs.name_event(CP, kind, meta["namespace"], meta["name"])
            stores.taskdefs.wake()

    # The one finalizer: a deleted policy must leave the backends, which Kubernetes cannot do.
    # Every replica runs it (idempotent), leader or not.
    @kopf.on.delete(GROUP, VERSION, CP, id="policy-cleanup", registry=registry)
    def policy_deleted(body: Any, **_: Any) -> None:
        stores.policies.event("DELETED", _plain(body))
        delete_policy(ctx, _plain(body))
