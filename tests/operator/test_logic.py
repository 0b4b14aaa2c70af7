"""The reconcilers as plain functions: a fake API (tests/operator/fakes.py), a memory backend.

The same reconcilers run against a real API server in tests/operator/test_cluster.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
from typing import Any

import pytest
from kubenenc.backends import open_backend
from kubenenc.concurrency import ConcurrencyPolicy, call_key
from kubenenc.ids import InvocationId, TaskId, WorkerId
from kubenenc.records import NewInvocation, WorkerInfo
from kubenenc.scope import queue_name, scope
from kubenenc.settings import Liveness, Settings
from kubenenc.signatures import describe, signature_name
from kubenenc.status import Status
from kubenenc_operator import taskdefs
from kubenenc_operator.backends import BackendCache
from kubenenc_operator.context import Ctx
from kubenenc_operator.enforcer import sweep
from kubenenc_operator.kube import custom_path, deployment_path, pods_path, secret_path
from kubenenc_operator.models import (
    API_VERSION,
    SCALING_HISTORY,
    TaskDefinitionSpec,
    WorkerPoolStatus,
)
from kubenenc_operator.policies import delete_policy, reconcile_policy
from kubenenc_operator.pools import reconcile_pool
from kubenenc_operator.resources import DELETION_COST, condition
from kubenenc_operator.settings import OperatorSettings
from kubenenc_operator.taskdefs import (
    Siblings,
    check_references,
    gather_task_stats,
    reconcile_taskdef,
    run_schedule,
    scheduled_call,
)

from tests.operator.fakes import FakeKube

NS = "shop-ns"
Q = queue_name(scope("shop", NS), "shop")
"""The stored queue of WorkerPool shop (App "shop") in NS."""


class World:
    def __init__(self) -> None:
        self.kube = FakeKube()
        self.backend = open_backend("memory://")
        self.now = 1_000_000.0
        self.ctx = Ctx(
            kube=self.kube,
            backends=BackendCache(opener=lambda url: self.backend),
            settings=OperatorSettings(identity="test", backend=None),
            clock=lambda: self.now,
        )
        url = base64.b64encode(b"memory://").decode()
        self.kube.put_object(
            secret_path(NS, "backend"), {"metadata": {"name": "backend"}, "data": {"url": url}}
        )
        self.seq = 0

    def submit(self, n: int, pool: str = Q, task: str = "shop.tasks.work") -> None:
        new = []
        for _ in range(n):
            self.seq += 1
            args = {"i": self.seq}
            new.append(
                NewInvocation(
                    id=InvocationId(f"{self.seq:032x}"),
                    app="shop",
                    task=TaskId(task),
                    args=json.dumps(args),
                    call_key=call_key(task, args, scope=scope("shop", NS)),
                    display=f"work({self.seq})",
                    pool=pool,
                )
            )
        self.backend.register(new, self.now)

    def pool(self, **autoscaling: Any) -> dict[str, Any]:
        body = {
            "apiVersion": API_VERSION, "kind": "WorkerPool",
            "metadata": {"name": "shop", "namespace": NS, "uid": "uid-pool", "generation": 1},
            "spec": {
                "image": "example/shop:1", "app": "shop.tasks:app", "appName": "shop", "slots": 2,
                "backend": {"secretName": "backend"},
                "autoscaling": {"minReplicas": 1, "maxReplicas": 5, "maxStep": 2,
                                "scaleInCooldownSeconds": 30, **autoscaling},
            },
        }  # fmt: skip
        self.kube.put_object(custom_path(NS, "workerpools", "shop"), body)
        return body

    def reconcile_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        status = reconcile_pool(self.ctx, body)
        body["status"] = status
        return status

    def deployment(self) -> dict[str, Any]:
        found = self.kube.get(deployment_path(NS, "shop"))
        assert found is not None
        return found


@pytest.fixture
def world() -> World:
    return World()


def test_pool_gets_an_owned_deployment_at_min_replicas(world: World) -> None:
    status = world.reconcile_pool(world.pool())
    dep = world.deployment()
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-pool"
    assert dep["spec"]["replicas"] == 1
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["worker", "--app", "shop.tasks:app", "--pool", "shop"]
    assert status["replicas"] == 1 and status["selector"] == "kubenenc.io/pool=shop"
    assert status["backlog"] == 0 and status["observedGeneration"] == 1
    ready = condition(status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "Progressing"
    assert condition(status["conditions"], "Degraded")["status"] == "False"  # type: ignore[index]


def test_reconciling_again_writes_nothing(world: World) -> None:
    body = world.pool()
    world.reconcile_pool(body)
    writes = len(world.kube.calls)
    world.reconcile_pool(body)
    assert len(world.kube.calls) == writes


def test_backlog_scales_out_in_bounded_steps_with_events(world: World) -> None:
    body = world.pool()
    world.reconcile_pool(body)
    world.submit(50)
    replicas = []
    for _ in range(3):
        world.now += 1
        replicas.append(world.reconcile_pool(body)["replicas"])
    assert replicas == [3, 5, 5]
    assert body["status"]["backlog"] == 50 and body["status"]["desiredReplicas"] == 5
    reasons = [e["reason"] for e in world.kube.events()]
    assert reasons == ["ScaledOut", "ScaledOut"]
    history = body["status"]["scalingEvents"]  # kept in the status after the Events expire
    assert [(e["fromReplicas"], e["toReplicas"], e["reason"]) for e in history] == [
        (1, 3, "ScaledOut"), (3, 5, "ScaledOut"),
    ]  # fmt: skip
    assert all(e["message"] and e["time"] for e in history)
    WorkerPoolStatus.model_validate(body["status"])  # the CRD's schema accepts it
    assert (
        world.ctx.metrics.value(
            "kubenenc_operator_scaling_decisions_total", pool=f"{NS}/shop", direction="ScaledOut"
        )
        == 2
    )
    assert world.ctx.metrics.value("kubenenc_operator_pool_backlog", pool=f"{NS}/shop") == 50


def test_scale_in_waits_for_cooldown_and_marks_idle_pods_first(world: World) -> None:
    body = world.pool()
    world.reconcile_pool(body)
    world.submit(6)
    world.reconcile_pool(body)  # 1 -> 3
    assert world.deployment()["spec"]["replicas"] == 3
    for name in ("pod-a", "pod-b", "pod-c"):
        world.kube.put_object(
            pods_path(NS, name),
            {"metadata": {"name": name, "labels": {"kubenenc.io/pool": "shop"}}},
        )
    # pod-a runs two, pod-b is idle, pod-c has no live worker.
    claimed = world.backend.claim(Q, WorkerId("w-a"), 2, world.now)
    assert len(claimed) == 2
    for ident, host, running in (("w-a", "pod-a", 2), ("w-b", "pod-b", 0)):
        world.backend.heartbeat(WorkerInfo(WorkerId(ident), Q, 2, running, 0, world.now, host))
    for inv in world.backend.query(status=Status.PENDING, limit=100):
        world.backend.cancel(inv.id, world.now)
    status = world.reconcile_pool(body)  # 2 running -> 1 replica wanted: cooling down
    assert status["replicas"] == 3 and status["lowSince"] is not None
    assert condition(status["conditions"], "Scaling")["reason"] == "CoolingDown"  # type: ignore[index]
    costs = {
        p["metadata"]["name"]: p["metadata"]["annotations"][DELETION_COST]
        for p in world.kube.list(pods_path(NS), "kubenenc.io/pool=shop")
    }
    assert costs == {"pod-a": "2", "pod-b": "0", "pod-c": "-1"}
    world.now += 29
    assert world.reconcile_pool(body)["replicas"] == 3
    world.now += 2
    status = world.reconcile_pool(body)
    assert status["replicas"] == 1 and world.deployment()["spec"]["replicas"] == 1
    assert [e["reason"] for e in world.kube.events()][-1] == "ScaledIn"


def test_scale_to_zero_and_wake_on_activation_threshold(world: World) -> None:
    body = world.pool(minReplicas=0, activationThreshold=3, scaleInCooldownSeconds=0)
    assert world.reconcile_pool(body)["replicas"] == 0
    assert condition(body["status"]["conditions"], "Ready")["reason"] == "ScaledToZero"  # type: ignore[index]
    world.submit(2)
    assert world.reconcile_pool(body)["replicas"] == 0
    world.submit(1)
    assert world.reconcile_pool(body)["replicas"] == 2


def test_unreadable_backend_degrades_and_keeps_replicas(world: World) -> None:
    body = world.pool()
    world.reconcile_pool(body)
    body["spec"]["backend"]["secretName"] = "missing"
    status = world.reconcile_pool(body)
    degraded = condition(status["conditions"], "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert "missing does not exist" in degraded["message"]
    assert status["replicas"] == 1


def test_fixed_size_pool_follows_spec_replicas(world: World) -> None:
    body = world.pool(enabled=False)
    body["spec"]["replicas"] = 4
    world.submit(100)
    assert world.reconcile_pool(body)["replicas"] == 4
    assert world.deployment()["spec"]["replicas"] == 4


def test_policy_is_written_to_the_pool_backends_and_removed(world: World) -> None:
    world.pool()
    body = {
        "apiVersion": API_VERSION, "kind": "ConcurrencyPolicy",
        "metadata": {"name": "one-per-user", "namespace": NS, "uid": "u-p", "generation": 2},
        "spec": {"runningLimit": 1, "key": ["user_id"], "registration": "dedupe"},
    }  # fmt: skip
    status = reconcile_policy(world.ctx, body)
    assert status["backends"] == 1
    assert condition(status["conditions"], "Ready")["reason"] == "Stored"  # type: ignore[index]
    # Scoped by namespace: another namespace's policy of the same name is another entry.
    assert world.backend.get_policy("one-per-user") is None
    stored = json.loads(world.backend.get_policy(f"{NS}/one-per-user") or "")
    assert {k: v for k, v in stored.items() if v is not None} == {
        "running_limit": 1, "key": ["user_id"], "registration": "dedupe"
    }  # fmt: skip
    assert delete_policy(world.ctx, body) == []
    assert world.backend.get_policy(f"{NS}/one-per-user") is None


def test_specs_that_do_not_validate_are_not_ready_and_say_why(world: World) -> None:
    """Bodies the API server should have refused (a stale CRD, an old object) are reported,
    never acted on: no Deployment, nothing stored."""
    pool = world.pool()
    del pool["spec"]["image"]
    policy = {
        "metadata": {"name": "p", "namespace": NS, "uid": "u", "generation": 3},
        "spec": {"runningLimit": 0},
    }
    pool_status = reconcile_pool(world.ctx, pool)
    policy_status = reconcile_policy(world.ctx, policy)
    for status, field, generation in (
        (pool_status, "image", 1),
        (policy_status, "runningLimit", 3),
    ):
        ready = condition(status["conditions"], "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert field in ready["message"]
        assert status["observedGeneration"] == generation
    assert policy_status["backends"] == 0
    assert world.kube.get(deployment_path(NS, "shop")) is None
    assert world.backend.policies() == {}


def test_policy_without_any_backend_says_what_to_do(world: World) -> None:
    body = {
        "metadata": {"name": "p", "namespace": "empty", "uid": "u", "generation": 1},
        "spec": {"runningLimit": 2},
    }
    status = reconcile_policy(world.ctx, body)
    ready = condition(status["conditions"], "Ready")
    assert ready is not None and ready["reason"] == "NoBackend"
    assert "create a WorkerPool" in ready["message"]


def taskdef(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": "TaskDefinition",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1,
                     "resourceVersion": "1", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"task": "shop.tasks:work", "pool": "shop", **spec},
    }  # fmt: skip


SIBLINGS = Siblings(
    depends_on={"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]},
    pools=frozenset({"shop"}),
    policies=frozenset({"one-per-user"}),
)


def test_every_member_of_a_loop_gets_the_condition_and_one_event(world: World) -> None:
    world.pool()
    for name, dep in (("a", "b"), ("b", "c"), ("c", "a")):
        body = taskdef(name, dependsOn=[dep])
        for _ in range(2):  # a handler and a timer seeing the same change
            status = reconcile_taskdef(world.ctx, body, SIBLINGS)
        ready = condition(status["conditions"], "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == (
            "False",
            "CycleDetected",
        )
        assert "a -> b -> c -> a" in ready["message"]
    events = world.kube.events()
    assert sorted(e["involvedObject"]["name"] for e in events) == ["a", "b", "c"]
    assert all(e["type"] == "Warning" and "a -> b -> c -> a" in e["message"] for e in events)
    # d depends on the loop but is not in it.
    status = reconcile_taskdef(world.ctx, taskdef("d", dependsOn=["a"]), SIBLINGS)
    assert condition(status["conditions"], "Ready")["reason"] == "Reconciled"  # type: ignore[index]


@pytest.mark.parametrize(
    ("spec", "reason", "text"),
    [
        ({"pool": "nope"}, "PoolNotFound", "WorkerPool 'nope' does not exist"),
        ({"concurrencyPolicyRef": "nope"}, "PolicyNotFound", "ConcurrencyPolicy 'nope'"),
        ({"dependsOn": ["ghost"]}, "DependencyNotFound", "ghost"),
        ({"schedule": "61 * * * *"}, "InvalidSchedule", "minute"),
        ({"schedule": "@daily", "timezone": "Europe/Atlantis"}, "InvalidSchedule", "time zone"),
        ({"retries": -1}, "InvalidSpec", "retries"),
    ],
)
def test_broken_references_are_conditions(
    world: World, spec: dict[str, Any], reason: str, text: str
) -> None:
    status = reconcile_taskdef(world.ctx, taskdef("x", **spec), SIBLINGS)
    ready = condition(status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", reason)
    assert text in ready["message"]


def test_status_counts_come_from_the_backend(world: World) -> None:
    world.pool()
    world.submit(3)
    world.submit(2, pool="other", task="shop.tasks.other")
    # The same task and pool of the same App in another namespace sharing the backend, older
    # and more: neither counted nor the oldest pending.
    world.now -= 100
    world.submit(5, pool=queue_name(scope("shop", "elsewhere"), "shop"))
    world.now += 100
    world.backend.claim(Q, WorkerId("w"), 1, world.now)
    world.now += 7
    status = reconcile_taskdef(world.ctx, taskdef("x"), SIBLINGS)
    assert status["invocations"] == {"PENDING": 2, "RUNNING": 1}
    submitted = dt.datetime.fromtimestamp(world.now - 7, dt.UTC)
    assert status["oldestPendingTime"] == submitted.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert condition(status["conditions"], "Ready")["status"] == "True"  # type: ignore[index]


def test_task_numbers_are_exact_beyond_the_shared_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts come from counts_by_task; the oldest pending is found even when the shared
    read of the newest pending invocations stops before it."""
    monkeypatch.setattr(taskdefs, "RECENT", 3)
    world.submit(4)  # the oldest: shop.tasks.work
    first = world.now
    world.now += 10
    world.submit(5, task="shop.tasks.other")  # the newest 5 fill the shared read
    world.now += 10
    stats = gather_task_stats(world.backend)
    assert stats["shop.tasks.work"].counts == {"PENDING": 4}
    assert stats["shop.tasks.other"].counts == {"PENDING": 5}
    assert stats["shop.tasks.work"].oldest_pending == first
    assert stats["shop.tasks.other"].oldest_pending == first + 10


def test_a_cron_tick_submits_once_even_when_two_runs_race(world: World) -> None:
    world.pool()
    world.now = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC).timestamp()
    body = taskdef("tick", schedule="* * * * *", arguments={"i": 7}, overlap="allow")
    path = custom_path(NS, "taskdefinitions", "tick")
    stored = world.kube.put_object(path, body)
    spec = TaskDefinitionSpec.model_validate(body["spec"])
    # Two replicas that read the same version: the backend's tick claim lets one submit.
    assert run_schedule(world.ctx, stored, spec, "memory://") is True
    assert run_schedule(world.ctx, stored, spec, "memory://") is False
    fresh = world.kube.get(path)
    assert fresh is not None and fresh["status"]["lastScheduleTime"] == "2026-01-01T12:00:00Z"
    assert run_schedule(world.ctx, fresh, spec, "memory://") is False  # same tick
    pending = world.backend.query(status=Status.PENDING)
    assert [(p.task, json.loads(p.args)) for p in pending] == [("shop.tasks.work", {"i": 7})]
    # Submitted as App "shop" of NS (the WorkerPool's appName) would: on its queue.
    assert [(p.app, p.pool) for p in pending] == [("shop", Q)]
    world.now += 60
    assert run_schedule(world.ctx, world.kube.get(path) or {}, spec, "memory://") is True
    assert len(world.backend.query(status=Status.PENDING)) == 2


def test_a_schedule_skips_a_tick_while_its_call_is_pending(world: World) -> None:
    world.pool()
    world.now = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC).timestamp()
    body = taskdef("tick", schedule="* * * * *", arguments={"i": 7})  # overlap: skip
    stored = world.kube.put_object(custom_path(NS, "taskdefinitions", "tick"), body)
    spec = TaskDefinitionSpec.model_validate(body["spec"])
    assert run_schedule(world.ctx, stored, spec, "memory://") is True
    world.now += 60
    assert run_schedule(world.ctx, stored, spec, "memory://") is True  # claimed, refused
    assert len(world.backend.query(task="shop.tasks.work")) == 1


@pytest.mark.parametrize(("catch_up", "calls"), [("none", 1), ("last", 2), ("all", 5)])
def test_a_schedule_catches_up_as_told(world: World, catch_up: str, calls: int) -> None:
    world.pool()
    world.now = dt.datetime(2026, 3, 29, 0, 0, 30, tzinfo=dt.UTC).timestamp()
    body = taskdef(
        "tick", schedule="0 * * * *", arguments={"i": 7}, overlap="allow",
        timezone="Europe/Madrid", catchUp=catch_up,
    )  # fmt: skip
    stored = world.kube.put_object(custom_path(NS, "taskdefinitions", "tick"), body)
    spec = TaskDefinitionSpec.model_validate(body["spec"])
    assert run_schedule(world.ctx, stored, spec, "memory://") is True  # 01:00 in Madrid
    # The operator was away for four hours (02:00 in Madrid never happened that night).
    world.now += 4 * 3600 + 600
    assert run_schedule(world.ctx, stored, spec, "memory://") is True
    assert len(world.backend.query(task="shop.tasks.work")) == calls


def test_scheduled_calls_follow_the_named_policy(world: World) -> None:
    world.backend.set_policy("one", '{"running_limit": 1, "registration": "dedupe"}')
    spec = TaskDefinitionSpec.model_validate(
        {
            "task": "shop.tasks:work",
            "pool": "shop",
            "schedule": "@hourly",
            "concurrencyPolicyRef": "one",
            "arguments": {"i": 1},
        }
    )
    policy = ConcurrencyPolicy.model_validate_json(world.backend.get_policy("one") or "")
    call = scheduled_call(spec, policy, "shop", NS)
    assert (call.running_limit, call.registration) == (1, "dedupe")
    assert call.running_key is not None and call.registration_key is not None
    assert call.pool == Q and call.running_key.startswith(f"{NS}/shop:")
    assert call.registration_key.startswith(f"{NS}/shop:")


def test_scheduled_calls_follow_the_policys_rate(world: World) -> None:
    spec = TaskDefinitionSpec.model_validate(
        {"task": "shop.tasks:work", "pool": "shop", "schedule": "@hourly", "arguments": {"i": 1}}
    )
    policy = ConcurrencyPolicy(rate="10/m", burst=2)
    call = scheduled_call(spec, policy, "shop", NS)
    assert (call.rate, call.rate_key) == ("10/60/2", f"{NS}/shop:shop.tasks.work#*")


def test_enforcer_sweep_hands_back_a_dead_workers_work(world: World) -> None:
    world.submit(2)
    world.backend.claim(Q, WorkerId("dead"), 2, world.now)
    world.backend.heartbeat(WorkerInfo(WorkerId("dead"), Q, 2, 2, 0, world.now, "pod"))
    world.now += Liveness().heartbeat_timeout + 1  # no pool seen on it: the default
    assert sweep(world.ctx, ["memory://"]) == 2
    assert len(world.backend.query(status=Status.PENDING)) == 2
    assert world.ctx.metrics.value("kubenenc_operator_recovered_total") == 2


def test_the_taskdef_sweep_writes_only_what_moved_and_rechecks_siblings(world: World) -> None:
    from kubenenc_operator.store import Store, sweep_taskdefs

    world.pool()
    store = Store()
    store.name_event("workerpools", "ADDED", NS, "shop")
    for name, deps in (("a", ["b"]), ("b", [])):
        body = taskdef(name, dependsOn=deps)
        world.kube.put_object(custom_path(NS, "taskdefinitions", name), body)
        assert store.taskdef_event(
            "ADDED", world.kube.get(custom_path(NS, "taskdefinitions", name)) or {}
        )
    assert store.take_dirty() == [(NS, "a"), (NS, "b")]
    assert sweep_taskdefs(world.ctx, store, store.keys()) == 2
    assert sweep_taskdefs(world.ctx, store, store.keys()) == 0  # nothing moved
    # b now depends on a: both are on the loop, both are rechecked.
    b = world.kube.get(custom_path(NS, "taskdefinitions", "b")) or {}
    b["spec"]["dependsOn"] = ["a"]
    assert store.taskdef_event("MODIFIED", b)
    dirty = store.take_dirty()
    assert dirty == [(NS, "a"), (NS, "b")]
    assert sweep_taskdefs(world.ctx, store, dirty) == 2
    for name in ("a", "b"):
        status = (world.kube.get(custom_path(NS, "taskdefinitions", name)) or {})["status"]
        assert condition(status["conditions"], "Ready")["reason"] == "CycleDetected"  # type: ignore[index]
    # A status-only change (our own write coming back) is not work.
    assert not store.taskdef_event(
        "MODIFIED", world.kube.get(custom_path(NS, "taskdefinitions", "a")) or {}
    )


def test_pool_objects_are_reconciled_when_changed_and_written_only_when_moved(
    world: World,
) -> None:
    from kubenenc_operator.store import Objects, reconcile_objects

    pools = Objects("workerpools")
    body = world.pool()
    assert pools.event("ADDED", world.kube.get(custom_path(NS, "workerpools", "shop")) or {})
    items = pools.take(everything=False)
    assert [k for k, _ in items] == [(NS, "shop")]
    assert reconcile_objects(world.ctx, pools, items, reconcile_pool) == 1
    assert pools.take(everything=False) == []  # nothing changed since
    # Settles (the first pass created the Deployment, the second sees it), then writes nothing.
    reconcile_objects(world.ctx, pools, pools.take(everything=True), reconcile_pool)
    assert reconcile_objects(world.ctx, pools, pools.take(everything=True), reconcile_pool) == 0
    world.submit(10)
    world.now += 1
    assert reconcile_objects(world.ctx, pools, pools.take(everything=True), reconcile_pool) == 1
    stored = world.kube.get(custom_path(NS, "workerpools", "shop")) or {}
    assert stored["status"]["backlog"] == 10 and stored["spec"] == body["spec"]
    # A status-only event (our own write) is not work; a deletion forgets the pool.
    assert not pools.event("MODIFIED", stored)
    assert not pools.event("DELETED", stored)
    assert pools.take(everything=True) == []


def test_taskdefinition_options_are_stored_for_every_call_and_collected(world: World) -> None:
    from kubenenc.task_defaults import TaskDefaults
    from kubenenc_operator.store import Store, sweep_taskdefs

    world.pool()
    store = Store()
    store.name_event("workerpools", "ADDED", NS, "shop")
    body = taskdef("work", retries=4, timeoutSeconds=30, concurrencyPolicyRef="one-per-user")
    store.name_event("concurrencypolicies", "ADDED", NS, "one-per-user")
    path = custom_path(NS, "taskdefinitions", "work")
    world.kube.put_object(path, body)
    store.taskdef_event("ADDED", world.kube.get(path) or {})
    # Another namespace's options in the same backend, and a stale one of a deleted definition.
    world.backend.set_policy("elsewhere/task:shop.tasks.work", '{"retries": 9}')
    world.backend.set_policy(f"{NS}/task:shop.tasks.gone", '{"retries": 9}')
    world.ctx.settings = OperatorSettings(identity="test", namespaces=[NS])
    sweep_taskdefs(world.ctx, store, store.keys(), full=True)
    stored = TaskDefaults.model_validate_json(
        world.backend.get_policy(f"{NS}/task:shop.tasks.work") or ""
    )
    assert stored == TaskDefaults(
        retries=4, timeout=30.0, pool="shop", concurrency=f"{NS}/one-per-user"
    )  # unset options stay unset: the decorator's values apply
    assert world.backend.get_policy(f"{NS}/task:shop.tasks.gone") is None
    assert world.backend.get_policy("elsewhere/task:shop.tasks.work") == '{"retries": 9}'
    # A change is stored at the next reconcile; a deleted definition's options go at the next
    # full sweep.
    changed = world.kube.get(path) or {}
    changed["spec"]["retries"] = 1
    store.taskdef_event("MODIFIED", changed)
    sweep_taskdefs(world.ctx, store, store.take_dirty())
    assert '"retries":1' in (world.backend.get_policy(f"{NS}/task:shop.tasks.work") or "")
    store.taskdef_event("DELETED", changed)
    sweep_taskdefs(world.ctx, store, store.keys(), full=True)
    assert world.backend.get_policy(f"{NS}/task:shop.tasks.work") is None


def test_two_definitions_of_one_task_refuse_the_second(world: World) -> None:
    from kubenenc_operator.store import Store

    store = Store()
    store.name_event("workerpools", "ADDED", NS, "shop")
    for name in ("b-second", "a-first"):
        store.taskdef_event("ADDED", taskdef(name))
    bodies, siblings = store.namespace_view(NS)
    assert check_references("a-first", TaskDefinitionSpec(task="shop.tasks:work",
                                  pool="shop"), siblings) is None  # fmt: skip
    status = reconcile_taskdef(world.ctx, bodies["b-second"], siblings)
    ready = condition(status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "DuplicateTask")
    assert "'a-first' already defines task shop.tasks:work" in ready["message"]


def test_same_policy_name_in_two_namespaces_stays_apart(world: World) -> None:
    for ns, limit in (("ns-a", 1), ("ns-b", 3)):
        url = base64.b64encode(b"memory://").decode()
        world.kube.put_object(secret_path(ns, "backend"), {"data": {"url": url}})
        world.kube.put_object(custom_path(ns, "workerpools", "shop"), {
            "metadata": {"name": "shop", "namespace": ns},
            "spec": {"backend": {"secretName": "backend"}},
        })  # fmt: skip
        body = {
            "metadata": {"name": "limit", "namespace": ns, "uid": f"u-{ns}", "generation": 1},
            "spec": {"runningLimit": limit},
        }
        assert reconcile_policy(world.ctx, body)["backends"] == 1
    assert json.loads(world.backend.get_policy("ns-a/limit") or "")["running_limit"] == 1
    assert json.loads(world.backend.get_policy("ns-b/limit") or "")["running_limit"] == 3


def test_enforcer_fails_what_a_live_but_hung_worker_left_past_its_timeout(world: World) -> None:
    """The worker still beats (so recover leaves it alone) but never stopped the run."""
    from kubenenc.records import Outcome, OutcomeKind, PauseKind

    grace = world.ctx.settings.timeout_grace
    task = "shop.tasks.work"
    new = [
        NewInvocation(
            id=InvocationId(f"{i:032x}"), app="shop", task=TaskId(task), args=f'{{"i":{i}}}',
            call_key=call_key(task, {"i": i}, scope="x"), display=f"work({i})", pool=Q,
            timeout=timeout, running_key="k", running_limit=4,
        )
        for i, timeout in ((1, 5.0), (2, None), (3, 5.0), (4, None))
    ]  # fmt: skip
    world.backend.register(new, world.now)
    hung = WorkerId("hung")
    assert len(world.backend.claim(Q, hung, 4, world.now)) == 4
    started = world.now
    # The third waits 3 s for the fourth: its paused time does not count against it.
    paused = world.backend.pause(new[2].id, hung, [new[3].id], started + 1)
    assert paused.kind is PauseKind.PAUSED
    done = Outcome(new[3].id, OutcomeKind.SUCCESS, result="1")
    assert world.backend.finish([done], hung, started + 4) == [True]
    assert world.backend.resume([new[2].id], hung, 1, started + 4).resumed == (new[2].id,)
    world.now = started + 5 + grace - 1
    world.backend.heartbeat(WorkerInfo(hung, Q, 4, 3, 0, world.now, "pod"))
    assert sweep(world.ctx, ["memory://"]) == 0  # within the grace
    world.now = started + 5 + grace + 1
    world.backend.heartbeat(WorkerInfo(hung, Q, 4, 3, 0, world.now, "pod"))
    assert sweep(world.ctx, ["memory://"]) == 1
    first = world.backend.get(new[0].id)
    assert first is not None and first.status is Status.FAILED
    assert first.error is not None and first.error.type == "kubenenc.errors.TaskTimeout"
    assert "did not stop it" in first.error.message
    for kept in (new[1], new[2]):  # no timeout; resumed 3 s later
        rec = world.backend.get(kept.id)
        assert rec is not None and rec.status is Status.RUNNING
    assert world.ctx.metrics.value("kubenenc_operator_overdue_failed_total") == 1
    assert world.backend.counts().get(Status.FAILED) == 1
    # Without the overdue check (between its intervals) only recover runs.
    world.now += 10
    world.backend.heartbeat(WorkerInfo(hung, Q, 4, 2, 0, world.now, "pod"))
    assert sweep(world.ctx, ["memory://"], overdue=False) == 0
    assert sweep(world.ctx, ["memory://"]) == 1  # now the third is overdue too


def test_the_store_marks_exactly_what_a_change_can_affect() -> None:
    """Reverse indexes, kept per event: what reaches the changed definition through
    dependsOn, and the definitions of the same task."""
    from kubenenc_operator.store import Store

    store = Store()
    for name, deps, task in (
        ("a", ["b"], "m:a"), ("b", ["c"], "m:b"), ("c", [], "m:c"), ("x", [], "m:x"),
        ("twin", [], "m:c"),
    ):  # fmt: skip
        store.taskdef_event("ADDED", taskdef(name, dependsOn=deps, task=task))
    store.take_dirty()
    changed = taskdef("c", dependsOn=[], task="m:c", retries=2)
    assert store.taskdef_event("MODIFIED", changed)
    assert store.take_dirty() == [(NS, n) for n in ("a", "b", "c", "twin")]
    # b stops depending on c: a change of c no longer concerns a or b.
    assert store.taskdef_event("MODIFIED", taskdef("b", dependsOn=[], task="m:b"))
    assert store.take_dirty() == [(NS, "a"), (NS, "b")]
    assert store.taskdef_event("MODIFIED", taskdef("c", task="m:c", retries=3))
    assert store.take_dirty() == [(NS, "c"), (NS, "twin")]
    # Deleting c: its twin may now own the task.
    assert store.taskdef_event("DELETED", changed)
    assert store.take_dirty() == [(NS, "twin")]


def work(i: int, *, note: str = "") -> int:
    return i


def _ready(status: dict[str, Any]) -> Any:
    return condition(status["conditions"], "Ready")


def test_arguments_that_do_not_fit_the_published_signature_are_refused(world: World) -> None:
    """A worker publishes what each task takes; a TaskDefinition whose arguments would not
    bind is not Ready, gets one Warning Event, and its schedule submits nothing."""
    world.pool()
    world.now = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC).timestamp()
    siblings = Siblings(depends_on={"tick": []}, pools=frozenset({"shop"}), policies=frozenset())
    stored_as = signature_name("shop.tasks.work", NS)
    bad = taskdef("tick", schedule="* * * * *", arguments={"i": 1, "colour": "red"})
    world.kube.put_object(custom_path(NS, "taskdefinitions", "tick"), bad)
    # No worker has published the signature yet: the arguments cannot be checked.
    status = reconcile_taskdef(world.ctx, bad, siblings)
    assert _ready(status)["reason"] == "Reconciled"
    for query in world.backend.query(status=Status.PENDING):
        world.backend.cancel(query.id, world.now)
    world.backend.set_policy(stored_as, describe(work).model_dump_json())
    bad["metadata"]["resourceVersion"] = world.kube.get(custom_path(NS, "taskdefinitions", "tick"))[
        "metadata"
    ]["resourceVersion"]  # type: ignore[index]
    world.now += 60
    for _ in range(2):
        status = reconcile_taskdef(world.ctx, bad, siblings)
    ready = _ready(status)
    assert (ready["status"], ready["reason"]) == ("False", "InvalidArguments")
    assert "unknown argument(s) colour" in ready["message"]
    assert "the task takes (i, note=...)" in ready["message"]
    warnings = [e for e in world.kube.events() if e["reason"] == "InvalidArguments"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    assert world.backend.query(status=Status.PENDING) == []  # no tick submitted
    good = taskdef("tick", schedule="* * * * *", arguments={"i": 1})
    good["metadata"]["resourceVersion"] = bad["metadata"]["resourceVersion"]
    status = reconcile_taskdef(world.ctx, good, siblings)
    assert _ready(status)["reason"] == "Reconciled"
    missing = taskdef("tick", schedule="* * * * *", arguments={"note": "x"})
    status = reconcile_taskdef(world.ctx, missing, siblings)
    assert "missing required argument(s) i" in _ready(status)["message"]


def test_the_scaling_history_keeps_the_newest_ten(world: World) -> None:
    body = world.pool(maxReplicas=40, scaleInCooldownSeconds=0)
    world.reconcile_pool(body)
    for n in range(12):  # each round asks for more pods: one decision each
        world.submit(10)
        world.now += 1
        world.reconcile_pool(body)
    history = body["status"]["scalingEvents"]
    assert len(history) == SCALING_HISTORY == 10
    assert history[-1]["toReplicas"] == body["status"]["replicas"]
    steps = [(e["fromReplicas"], e["toReplicas"]) for e in history]
    assert all(a < b for a, b in steps) and all(
        prev[1] == nxt[0] for prev, nxt in itertools.pairwise(steps)
    )


def test_a_pools_liveness_is_what_its_workers_and_the_enforcer_both_use(world: World) -> None:
    body = world.pool()
    body["spec"] |= {"heartbeatTimeoutSeconds": 30, "maxLost": 0}
    world.reconcile_pool(body)
    # The pods get the pool's values, as the settings a worker reads from its environment.
    [container] = world.deployment()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    names = ("KUBENENC_WORKER__HEARTBEAT_TIMEOUT", "KUBENENC_WORKER__MAX_LOST")
    with pytest.MonkeyPatch.context() as m:
        for name in names:
            m.setenv(name, env[name])
        worker = Settings().worker
    assert (worker.heartbeat_timeout, worker.max_lost) == (30.0, 0)
    # The enforcer gives a silent worker of that pool the same 30 s, then fails its work
    # at once (maxLost 0).
    world.submit(1)
    world.backend.claim(Q, WorkerId("quiet"), 1, world.now)
    world.backend.heartbeat(WorkerInfo(WorkerId("quiet"), Q, 1, 1, 0, world.now, "pod"))
    world.now += Liveness().heartbeat_timeout + 1
    assert sweep(world.ctx, ["memory://"]) == 0
    world.now += 30
    assert sweep(world.ctx, ["memory://"]) == 1
    [rec] = world.backend.query(status=Status.FAILED)
    assert rec.error is not None and rec.error.type.endswith("WorkerLost")
