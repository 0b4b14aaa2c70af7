"""Pure parts of the operator: the Deployment, conditions, the Lease, loops (cron: its tests
are in tests/unit/test_cron.py)."""

from __future__ import annotations

import datetime as dt

from kubenenc_operator.graph import describe_cycle, find_cycles
from kubenenc_operator.models import WorkerPoolSpec
from kubenenc_operator.resources import (
    TEMPLATE_HASH,
    LeaseView,
    deployment,
    deployment_patch,
    lease_action,
    set_condition,
)

SPEC = WorkerPoolSpec.model_validate(
    {"image": "example/shop:1", "app": "shop.tasks:app", "appName": "shop", "slots": 3,
     "mode": "thread",
     "backend": {"secretName": "shop-backend", "key": "redis-url"}, "drainGraceSeconds": 40,
     "env": [{"name": "LOG", "value": "debug"}], "resources": {"limits": {"memory": "1Gi"}}}
)  # fmt: skip


def test_deployment_runs_the_worker_safely() -> None:
    dep = deployment("shop", "ns", "uid-1", SPEC, replicas=2)
    assert dep["metadata"]["ownerReferences"] == [
        {"apiVersion": "kubenenc.io/v1alpha1", "kind": "WorkerPool", "name": "shop",
         "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"kubenenc.io/pool": "shop"}}
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["kubenenc"]
    assert c["args"] == [
        "worker", "--app", "shop.tasks:app", "--pool", "shop",
        "--concurrency", "3", "--mode", "thread", "--http-port", "8080",
    ]  # fmt: skip
    env = {e["name"]: e for e in c["env"]}
    assert env["KUBENENC_BACKEND"]["valueFrom"]["secretKeyRef"] == {
        "name": "shop-backend",
        "key": "redis-url",
    }
    assert env["KUBENENC_WORKER__DRAIN_GRACE"]["value"] == "40"
    assert env["KUBENENC_APP_NAME"]["value"] == "shop"  # the worker checks its App's name
    assert env["LOG"]["value"] == "debug"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod["terminationGracePeriodSeconds"] > 40 + c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"] == {"limits": {"memory": "1Gi"}}
    # Health on the pod's own address, no API token in the pod, a bounded /tmp.
    assert env["KUBENENC_WORKER__HTTP_HOST"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    with_account = WorkerPoolSpec.model_validate(
        {**SPEC.model_dump(by_alias=True), "serviceAccountName": "tasks"}
    )
    pod = deployment("shop", "ns", "uid-1", with_account, 1)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "tasks" and pod["automountServiceAccountToken"] is True


def test_deployment_patch_touches_only_what_moved() -> None:
    want = deployment("shop", "ns", "uid-1", SPEC, replicas=2)
    assert deployment_patch(want, None) == want
    # The server adds defaults to what it stores; the hash annotation is what is compared.
    stored = {**want, "spec": {**want["spec"], "revisionHistoryLimit": 10}}
    assert deployment_patch(want, stored) is None
    again = deployment("shop", "ns", "uid-1", SPEC, replicas=4)
    assert deployment_patch(again, stored) == {"spec": {"replicas": 4}}
    changed = WorkerPoolSpec.model_validate({**SPEC.model_dump(by_alias=True), "image": "x:2"})
    patch = deployment_patch(deployment("shop", "ns", "uid-1", changed, 2), stored)
    assert patch is not None and set(patch) == {"metadata", "spec"}
    assert (
        patch["metadata"]["annotations"][TEMPLATE_HASH]
        != stored["metadata"]["annotations"][TEMPLATE_HASH]
    )
    assert patch["spec"]["template"]["spec"]["containers"][0]["image"] == "x:2"


def test_condition_transition_time_moves_only_with_status() -> None:
    c = set_condition([], "Ready", "False", "Progressing", "0/1", 1, "T1")
    c = set_condition(c, "Ready", "False", "Progressing", "0/2", 2, "T2")
    assert c == [{"type": "Ready", "status": "False", "reason": "Progressing", "message": "0/2",
                  "lastTransitionTime": "T1", "observedGeneration": 2}]  # fmt: skip
    c = set_condition(c, "Ready", "True", "Available", "2/2", 2, "T3")
    c = set_condition(c, "Scaling", "False", "Steady", "", 2, "T3")
    assert [(x["type"], x["lastTransitionTime"]) for x in c] == [("Ready", "T3"), ("Scaling", "T3")]


def test_lease_action() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    fresh = now - dt.timedelta(seconds=5)
    stale = now - dt.timedelta(seconds=16)
    assert lease_action(None, "me", now) == "create"
    assert lease_action(LeaseView("me", stale, 15), "me", now) == "renew"
    assert lease_action(LeaseView("other", fresh, 15), "me", now) == "wait"
    assert lease_action(LeaseView("other", stale, 15), "me", now) == "take"
    assert lease_action(LeaseView(None, fresh, 15), "me", now) == "take"


def test_find_cycles_names_each_loop_for_every_member() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": ["e"], "f": ["g"],
             "x": ["y"], "y": ["x", "a"]}  # fmt: skip
    cycles = find_cycles(graph)
    assert cycles == {
        "a": ("a", "b", "c", "a"), "b": ("a", "b", "c", "a"), "c": ("a", "b", "c", "a"),
        "e": ("e", "e"), "x": ("x", "y", "x"), "y": ("x", "y", "x"),
    }  # fmt: skip
    assert "a -> b -> c -> a" in describe_cycle(cycles["a"])
    assert find_cycles({"a": ["b"], "b": []}) == {}


def test_find_cycles_handles_a_long_chain() -> None:
    graph = {f"t{i}": [f"t{i + 1}"] for i in range(20000)}
    assert find_cycles(graph) == {}
    graph["t20000"] = ["t0"]
    assert len(find_cycles(graph)) == 20001
