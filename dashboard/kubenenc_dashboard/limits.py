"""The running limits right now: which concurrency keys hold slots, under which policy, and
which calls hold them (the Workers page, and the ConcurrencyPolicies on Kubernetes).

A running key is stored as ``scope:task#digest`` (:func:`kubenenc.concurrency.running_key`):
the digest hides the argument values, so a key is shown through one of its holders (the
values of the policy's key arguments in that call's arguments; when no stored policy names
them, the set of arguments that rebuilds the key). Which policy a key belongs to
is known when a TaskDefinition named it: the operator stores the task's defaults (with the
policy's name) beside the policies (:mod:`kubenenc.task_defaults`). A policy given in code
(``@app.task(concurrency=...)``) leaves no name in the backend: its keys show "in code".

One :meth:`~kubenenc.backends.browse.KeyUsage.running_keys` call, one ``policies`` read and
one ``get_many`` of the holders shown: bounded by the work in flight.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from kubenenc.backends.roles import Roles
from kubenenc.concurrency import ConcurrencyPolicy, running_key
from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord
from kubenenc.task_defaults import scoped_name, task_defaults_name

from kubenenc_dashboard.cluster import ClusterState

KEYS_SHOWN = 100
"""Keys listed at most (most slots held first)."""
HOLDERS_SHOWN = 5
"""Holders listed per key at most."""
MAX_SEARCHED = 8
"""Arguments of a call whose subsets are tried to name a key's arguments (2**8 keys built)."""


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One running key with slots held now."""

    key: str
    scope: str
    task: str
    policy: str | None
    """The stored name of its policy (``namespace/name`` on Kubernetes); None: given in code."""
    label: str
    """What the key stands for: ``customer="ann"``, ``every call``, or a holder's call."""
    running: int
    limit: int | None
    holders: list[tuple[InvocationId, str]]
    """``(id, display)`` of calls holding it."""


@dataclass(slots=True)
class Limits:
    """What the section shows; ``supported`` is False when the backend cannot say."""

    rows: list[KeyRow] = field(default_factory=list)
    more: bool = False
    supported: bool = True


def _json(text: str | None) -> dict[str, Any]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _policy(stored: dict[str, str], scope: str, task: str) -> tuple[str | None, list[str]]:
    """The stored name of the policy a TaskDefinition gave ``task`` in ``scope``, and its
    key arguments (None, []: no TaskDefinition named one)."""
    namespace = scope.partition("/")[0] if "/" in scope else None
    name = _json(stored.get(task_defaults_name(task, namespace))).get("concurrency")
    if not isinstance(name, str):
        return None, []
    full = scoped_name(name, namespace)
    key = _json(stored.get(full)).get("key")
    return full, [str(k) for k in key] if isinstance(key, list) else []


def _key_names(key: str, holder: InvocationRecord, args: dict[str, Any]) -> list[str]:
    """The argument names whose values make ``key`` in ``holder``'s call, found by building
    the key from each set of its arguments (a policy given in code is stored nowhere; its
    key names are whatever set rebuilds the key). At most :data:`MAX_SEARCHED` arguments."""
    scope = key.partition(":")[0]
    if len(args) > MAX_SEARCHED:
        return []
    for size in range(1, len(args) + 1):
        for names in itertools.combinations(sorted(args), size):
            policy = ConcurrencyPolicy(running_limit=1, key=names)
            if running_key(policy, holder.task, args, scope=scope) == key:
                return list(names)
    return []


def _label(
    key: str, names: list[str], holder: InvocationRecord | None, found: dict[str, list[str]]
) -> str:
    """How the page names ``key``; ``found``: the key names already found per scope and
    task in this read (one policy per task, so its other keys need no search)."""
    head, _, digest = key.rpartition("#")
    if digest == "*":
        return "every call of the task"
    if holder is None:
        return digest
    args = _json(holder.args) if holder.serializer == "json" else {}
    if not names:
        names = found.get(head) or _key_names(key, holder, args)
        found[head] = names
    if names and all(n in args for n in names):
        parts = [f"{n}={json.dumps(args[n], separators=(',', ':'))[:40]}" for n in names]
        return ", ".join(parts)
    return holder.display


def running_limits(roles: Roles, app: str | None) -> Limits:
    """The keys holding slots now (of ``app``'s scopes only, when given); unsupported when
    the backend does not offer :class:`~kubenenc.backends.browse.KeyUsage`."""
    if roles.key_usage is None:
        return Limits(supported=False)
    backend = roles.backend
    found = roles.key_usage.running_keys(limit=KEYS_SHOWN, holders=HOLDERS_SHOWN)
    stored = backend.policies() if found.keys else {}
    ids = [i for k in found.keys for i in k.holders]
    records = {r.id: r for r in backend.get_many(ids) if r is not None} if ids else {}
    rows = []
    searched: dict[str, list[str]] = {}
    for k in found.keys:
        scope, _, rest = k.key.partition(":")
        task = rest.partition("#")[0]
        if app is not None and scope.rpartition("/")[2] != app:
            continue
        policy, names = _policy(stored, scope, task)
        held = [records[i] for i in k.holders if i in records]
        rows.append(KeyRow(
            key=k.key, scope=scope, task=task, policy=policy,
            label=_label(k.key, names, held[0] if held else None, searched),
            running=k.running,
            limit=held[0].running_limit if held else None,
            holders=[(r.id, r.display) for r in held],
        ))  # fmt: skip
    return Limits(rows, found.more)


def with_running_now(state: ClusterState, limits: Limits) -> ClusterState:
    """``state`` with a "running now" field on each ConcurrencyPolicy: its keys holding
    slots, as ``label running/limit``."""
    policies = state.resources.get("concurrencypolicies")
    if not policies or not limits.supported:
        return state
    shown = []
    for r in policies:
        mine = sorted(
            (row for row in limits.rows if row.policy == f"{r.namespace}/{r.name}"),
            key=lambda row: (-row.running, row.label),
        )
        text = "; ".join(
            f"{row.label} {row.running}/{row.limit if row.limit is not None else '?'}"
            for row in mine[:10]
        )
        if len(mine) > 10:
            text += f"; {len(mine) - 10} more keys"
        shown.append(replace(r, fields=[*r.fields, ("running now", text or "none")]))
    resources = {**state.resources, "concurrencypolicies": shown}
    return ClusterState(resources=resources, errors=state.errors)
