"""The operator against a real API server (tests/cluster fixture), run as a subprocess.

The main operator runs as the ServiceAccount bound only to operator/rbac/rbac.yaml, so every
test here also proves those rules are enough (the last test reads its log for any 403); one
test runs a second operator as admin. The backend the operator reads is a real Redis when the
Redis plugin is installed (the fixture of tests/servers/redis.py), else a SQLite file shared
by the operator and the test. Intervals are short (scaling every 0.5 s, cooldown 3 s) so the
whole module runs in about a minute.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubenenc import App
from kubenenc.backends import Backend, available_backends, open_backend
from kubenenc.concurrency import call_key
from kubenenc.ids import InvocationId, TaskId, WorkerId
from kubenenc.records import NewInvocation, WorkerInfo
from kubenenc.resolver import POLICY_TTL
from kubenenc.scope import queue_name, scope
from kubenenc.settings import Settings
from kubenenc.status import Status
from kubenenc_operator.backends import BackendCache
from kubenenc_operator.context import Ctx
from kubenenc_operator.kube import Kube, KubeError, custom_path, deployment_path, pods_path
from kubenenc_operator.models import API_VERSION, TaskDefinitionSpec
from kubenenc_operator.resources import condition, parse_rfc3339
from kubenenc_operator.settings import OperatorSettings
from kubenenc_operator.taskdefs import run_schedule

from tests.cluster.fixtures import Cluster
from tests.operator import optasks
from tests.support import free_port, stop_process, wait_until

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
NS = "op-e2e"
NS_B = "op-e2e-b"
ADMIN_NS = "op-admin"
OPERATOR_NS = "kubenenc-system"
TASK = "tests.operator.optasks.work"


def apply(kube: Kube, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj`` in ``collection``, or replace it when it exists."""
    status, body = kube.request("POST", collection, obj)
    if status == 409:
        path = f"{collection}/{obj['metadata']['name']}"
        current = kube.get(path) or {}
        replacement = copy.deepcopy(obj)
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return kube.put(path, replacement)
    if status >= 300:
        raise KubeError(status, "POST", collection, body)
    return body  # type: ignore[no-any-return]


def collection_of(obj: dict[str, Any]) -> str:
    kind, api = obj["kind"], obj["apiVersion"]
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    plural = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
              "RoleBinding": "rolebindings", "Secret": "secrets",
              "CustomResourceDefinition": "customresourcedefinitions"}[kind]  # fmt: skip
    namespace = obj["metadata"].get("namespace")
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def create_namespace(cluster: Cluster, kube: Kube, name: str) -> None:
    status, _ = kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status in (201, 409)
    wait_until(
        f"the default ServiceAccount of {name}",
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        timeout=30,
    )


def queue(pool: str, namespace: str = NS) -> str:
    """The stored queue of WorkerPool ``namespace/pool`` (App ``optest``, kubenenc.scope)."""
    return queue_name(scope("optest", namespace), pool)


def submit(backend: Backend, pool: str, n: int, namespace: str = NS) -> None:
    """``n`` pending invocations of ``optasks.work`` on WorkerPool ``namespace/pool``, as the
    SDK of App ``optest`` in ``namespace`` would write them."""
    batch = []
    for i in range(n):
        args = {"i": i}
        batch.append(
            NewInvocation(
                id=InvocationId(uuid.uuid4().hex),
                app="optest",
                task=TaskId(TASK),
                args=json.dumps(args),
                call_key=call_key(TASK, args, scope=scope("optest", namespace)),
                display=f"work({i})",
                pool=queue(pool, namespace),
            )
        )
    for start in range(0, n, 100):
        backend.register(batch[start : start + 100], time.time())


def spawn_worker(
    env: Env, pool: str, concurrency: int, log_name: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A local ``kubenenc worker`` process of ``optasks.app`` on ``pool`` (stderr to a log),
    in namespace NS unless ``extra_env`` sets ``KUBENENC_NAMESPACE``."""
    with (env.tmp / log_name).open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker.cli", "worker", "--app",
             "tests.operator.optasks:app", "--pool", pool, "--concurrency", str(concurrency),
             "--mode", "thread", "--backend", env.url],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
            env={**os.environ, "KUBENENC_NAMESPACE": NS, **(extra_env or {})},
        )  # fmt: skip


@dataclass
class OperatorProcess:
    """A running ``python -m kubenenc_operator``."""

    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.proc)


def start_operator(
    kubeconfig: Path, log: Path, namespaces: list[str], lease: str
) -> OperatorProcess:
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBENENC_OPERATOR_NAMESPACES": json.dumps(namespaces),
        "KUBENENC_OPERATOR_LEASE_NAMESPACE": OPERATOR_NS,
        "KUBENENC_OPERATOR_LEASE_NAME": lease,
        "KUBENENC_OPERATOR_METRICS_HOST": "127.0.0.1",
        "KUBENENC_OPERATOR_METRICS_PORT": str(port),
        "KUBENENC_OPERATOR_HEALTH_PORT": str(free_port()),
        "KUBENENC_OPERATOR_SCALE_INTERVAL": "0.5",
        "KUBENENC_OPERATOR_STATUS_INTERVAL": "1",
        "KUBENENC_OPERATOR_POLICY_RESYNC": "5",
        "KUBENENC_OPERATOR_TIMEOUT_GRACE": "1",
        "KUBENENC_OPERATOR_OVERDUE_INTERVAL": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubenenc_operator"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return OperatorProcess(proc, log, port)


@dataclass
class Env:
    cluster: Cluster
    kube: Kube
    url: str
    backend: Backend
    operator: OperatorProcess
    tmp: Path

    def pool(self, name: str, namespace: str = NS, **autoscaling: Any) -> dict[str, Any]:
        body = {
            "apiVersion": API_VERSION, "kind": "WorkerPool",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "example.com/shop:1", "app": "tests.operator.optasks:app",
                     "appName": "optest", "slots": 4, "mode": "thread",
                     "backend": {"secretName": "backend"},
                     "autoscaling": autoscaling},
        }  # fmt: skip
        return apply(self.kube, custom_path(namespace, "workerpools"), body)

    def get(self, plural: str, name: str, namespace: str = NS) -> dict[str, Any]:
        return self.kube.get(custom_path(namespace, plural, name)) or {}

    def events(self, name: str, reason: str, namespace: str = NS) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kube.list(f"/api/v1/namespaces/{namespace}/events")
            if e["involvedObject"]["name"] == name and e["reason"] == reason
        ]


@pytest.fixture(scope="module")
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if "redis" in available_backends():
        server = request.getfixturevalue("redis_server")
        return f"{server.url}?prefix=op{uuid.uuid4().hex[:10]}"
    return f"sqlite:///{tmp_path_factory.mktemp('opdb') / 'kubenenc.db'}"


def crd_established(kube: Kube, name: str) -> bool:
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def install(cluster: Cluster, kube: Kube) -> None:
    """CRDs, the operator's namespace and RBAC, as the chart would install them."""
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        apply(kube, collection_of(crd), crd)
        name = crd["metadata"]["name"]
        wait_until(f"CRD {name} Established", lambda name=name: crd_established(kube, name), 30)
    create_namespace(cluster, kube, OPERATOR_NS)
    for obj in yaml.safe_load_all((ROOT / "operator" / "rbac" / "rbac.yaml").read_text()):
        apply(kube, collection_of(obj), obj)
    wait_until(
        "the custom resources to be served",
        lambda: kube.request("GET", custom_path(NS, "workerpools"))[0] == 200,
        timeout=30,
    )


@pytest.fixture(scope="module")
def env(
    control_plane: Cluster, backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    kube = Kube(control_plane.api_client)
    install(control_plane, kube)
    for namespace in (NS, NS_B, ADMIN_NS):
        create_namespace(control_plane, kube, namespace)
        apply(kube, f"/api/v1/namespaces/{namespace}/secrets", {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "backend", "namespace": namespace},
            "stringData": {"url": backend_url},
        })  # fmt: skip
    tmp = tmp_path_factory.mktemp("operator")
    kubeconfig = control_plane.service_account_kubeconfig(OPERATOR_NS, "kubenenc-operator")
    operator = start_operator(kubeconfig, tmp / "operator.log", [NS, NS_B], "kubenenc-operator")
    backend = open_backend(backend_url)
    try:
        wait_until(
            "the operator to take the lease",
            lambda: "kubenenc_operator_leader 1" in _safe_metrics(operator),
            timeout=30,
        )
        yield Env(control_plane, kube, backend_url, backend, operator, tmp)
    finally:
        code = operator.stop()
        backend.close()
        if code not in (0, -signal.SIGTERM):
            print(operator.text()[-5000:])


def _safe_metrics(operator: OperatorProcess) -> str:
    if operator.proc.poll() is not None:
        pytest.fail(f"the operator exited:\n{operator.text()[-3000:]}")
    try:
        return operator.metrics()
    except OSError:
        return ""


# -- what the API server refuses, with the CEL messages -----------------------------------------


INVALID = [
    ("workerpools", {"image": "i", "app": "shop.tasks", "appName": "shop",
                     "backend": {"secretName": "b"}},
     'app must be an import path "module:attr"'),
    ("workerpools", {"image": "i", "app": "a:b", "appName": "b", "backend": {"secretName": "b"},
                     "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
     "minReplicas must not exceed autoscaling.maxReplicas"),
    ("workerpools", {"image": "i", "app": "a:b", "appName": "b",
                     "backend": {"secretName": "Not_A_Name"}},
     "backend.secretName must be a Secret name"),
    ("taskdefinitions", {"task": "shop-tasks:charge", "pool": "p"},
     'task must be an import path "module:function"'),
    ("taskdefinitions", {"task": "a:b", "pool": "p", "dependsOn": ["bad"]},
     "cannot depend on itself"),
    ("taskdefinitions", {"task": "a:b", "pool": "p", "backoffSeconds": 10,
                         "maxBackoffSeconds": 5}, "raise maxBackoffSeconds"),
    ("taskdefinitions", {"task": "a:b", "pool": "p", "schedule": "every minute"},
     "schedule must have 5 fields"),
    ("taskdefinitions", {"task": "a:b", "pool": "p", "schedule": "@daily",
                         "timezone": "Madrid time"}, "timezone must be an IANA time zone"),
    ("taskdefinitions", {"task": "a:b", "pool": "p", "schedule": "@daily", "catchUp": "some"},
     'supported values: "none"'),
    ("taskdefinitions", {"task": "a:b", "pool": "p", "overlap": "skip"},
     "only apply to a schedule"),
    ("concurrencypolicies", {"runningLimit": 0}, "greater than or equal to 1"),
    ("concurrencypolicies", {"registration": "sometimes"}, 'supported values: "allow"'),
    ("concurrencypolicies", {"key": ["user-id"]}, "key must list argument names"),
    ("concurrencypolicies", {"key": ["a", "a"]}, "key names an argument twice"),
    ("concurrencypolicies", {"rate": "10/d"}, "should match"),
    ("concurrencypolicies", {"burst": 2}, "burst needs a rate"),
    ("concurrencypolicies", {"rate": "5/s", "burst": 6}, "burst must not exceed"),
]  # fmt: skip


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("plural", "spec", "message"), INVALID)
def test_invalid_specs_are_refused_with_a_message_saying_what_to_change(
    env: Env, plural: str, spec: dict[str, Any], message: str
) -> None:
    kind = {"workerpools": "WorkerPool", "taskdefinitions": "TaskDefinition",
            "concurrencypolicies": "ConcurrencyPolicy"}[plural]  # fmt: skip
    status, body = env.kube.request("POST", custom_path(NS, plural), {
        "apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "bad"}, "spec": spec,
    })  # fmt: skip
    assert status == 422, body
    assert message in body["message"], body["message"]


# -- WorkerPool -> Deployment, and scaling from the backlog -------------------------------------


@pytest.mark.timeout(150)
def test_a_pool_gets_its_deployment(env: Env) -> None:
    env.pool("shape", minReplicas=1, maxReplicas=2)
    dep = wait_until("the Deployment", lambda: env.kube.get(deployment_path(NS, "shape")), 40)
    pool = env.get("workerpools", "shape")
    assert dep["metadata"]["ownerReferences"][0]["uid"] == pool["metadata"]["uid"]
    assert dep["spec"]["replicas"] == 1
    template = dep["spec"]["template"]
    assert template["metadata"]["labels"]["kubenenc.io/pool"] == "shape"
    (c,) = template["spec"]["containers"]
    assert c["args"][:5] == ["worker", "--app", "tests.operator.optasks:app", "--pool", "shape"]
    backend_env = next(e for e in c["env"] if e["name"] == "KUBENENC_BACKEND")
    assert backend_env["valueFrom"]["secretKeyRef"] == {"name": "backend", "key": "url"}
    namespace_env = next(e for e in c["env"] if e["name"] == "KUBENENC_NAMESPACE")
    assert namespace_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert template["spec"]["terminationGracePeriodSeconds"] > 25
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    status = wait_until(
        "the pool's status", lambda: env.get("workerpools", "shape").get("status"), 10
    )
    assert status["selector"] == "kubenenc.io/pool=shape"
    assert status["observedGeneration"] == pool["metadata"]["generation"]
    # The scale subresource reads the same numbers.
    scale = env.kube.get(custom_path(NS, "workerpools", "shape", "scale")) or {}
    assert scale["status"]["selector"] == "kubenenc.io/pool=shape"
    # Restarting the operator changes nothing already right: no new ReplicaSet, same spec.
    generation = dep["metadata"]["generation"]
    time.sleep(1.5)
    assert (env.kube.get(deployment_path(NS, "shape")) or {})["metadata"][
        "generation"
    ] == generation


@pytest.mark.timeout(150)
def test_the_scale_subresource_sizes_a_fixed_pool(env: Env) -> None:
    env.pool("fixed", enabled=False)
    wait_until("the Deployment", lambda: env.kube.get(deployment_path(NS, "fixed")), 40)
    # What `kubectl scale kwp fixed --replicas 3` sends.
    env.kube.patch(custom_path(NS, "workerpools", "fixed", "scale"), {"spec": {"replicas": 3}})
    wait_until(
        "3 replicas",
        lambda: (env.kube.get(deployment_path(NS, "fixed")) or {})["spec"]["replicas"] == 3,
        timeout=40,
    )
    scale = wait_until(
        "the scale status",
        lambda: (
            (s := env.kube.get(custom_path(NS, "workerpools", "fixed", "scale")) or {})
            and s.get("status", {}).get("replicas") == 3
            and s
        ),
        timeout=40,
    )
    assert scale["spec"]["replicas"] == 3


def running_pods(env: Env, pool: str) -> list[dict[str, Any]]:
    pods = env.kube.list(pods_path(NS), label_selector=f"kubenenc.io/pool={pool}")
    return [
        p for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]  # fmt: skip


@pytest.mark.timeout(240)
def test_backlog_scales_to_max_and_drained_work_scales_to_zero(env: Env) -> None:
    env.pool("burst", minReplicas=0, maxReplicas=3, activationThreshold=1,
             scaleInCooldownSeconds=3, maxStep=3)  # fmt: skip
    wait_until(
        "the pool at zero",
        lambda: (
            (
                condition(
                    (env.get("workerpools", "burst").get("status") or {}).get("conditions", []),
                    "Ready",
                )
                or {}
            ).get("reason")
            == "ScaledToZero"
        ),
        timeout=40,
    )
    began = time.monotonic()
    submit(env.backend, "burst", 500)
    wait_until(
        "3 replicas",
        lambda: (env.kube.get(deployment_path(NS, "burst")) or {})["spec"]["replicas"] == 3,
        timeout=40,
    )
    latency = time.monotonic() - began
    pods = wait_until(
        "3 pods Running on the kwok node",
        lambda: len(running_pods(env, "burst")) == 3 and running_pods(env, "burst"),
        60,
    )
    assert {p["spec"]["nodeName"] for p in pods} == {env.cluster.node_name}
    status = wait_until(
        "the backlog in the status",
        lambda: (s := env.get("workerpools", "burst")["status"])["backlog"] == 500 and s,
        timeout=10,
    )
    assert status["desiredReplicas"] == 3
    assert env.events("burst", "ScaledOut")
    assert 'kubenenc_operator_pool_backlog{pool="op-e2e/burst"} 500' in env.operator.metrics()
    print(f"backlog -> 3 replicas in {latency:.2f} s")

    # Drain with two local worker processes, then stop them.
    workers = [spawn_worker(env, "burst", 8, f"worker{i}.log") for i in range(2)]
    try:
        wait_until(
            "500 invocations SUCCESS",
            lambda: env.backend.counts(pool=queue("burst")).get(Status.SUCCESS, 0) == 500,
            timeout=90,
            interval=0.5,
        )
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(40)
    wait_until(
        "scale-in to zero",
        lambda: (env.kube.get(deployment_path(NS, "burst")) or {})["spec"]["replicas"] == 0,
        timeout=30,
    )
    # The Event is posted right after the Deployment is patched: wait for it too.
    (scaled_in,) = wait_until("the ScaledIn event", lambda: env.events("burst", "ScaledIn"), 10)
    low_for = re.search(r"low for (\d+) s", scaled_in["message"])
    assert low_for is not None and int(low_for.group(1)) >= 3, scaled_in["message"]  # cooldown
    wait_until("no pods left", lambda: not running_pods(env, "burst"), timeout=60)
    status = env.get("workerpools", "burst")["status"]
    assert status["replicas"] == 0 and status["backlog"] == 0


# -- TaskDefinitions: loops, references, schedules ----------------------------------------------


def taskdef(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": "TaskDefinition",
        "metadata": {"name": name, "namespace": NS},
        # One task per definition (two naming one task are refused: DuplicateTask).
        "spec": {"task": f"tests.operator.optasks:{name.replace('-', '_')}", "pool": "shape",
                 **spec},
    }  # fmt: skip


def ready_of(env: Env, name: str) -> dict[str, Any]:
    status = env.get("taskdefinitions", name).get("status") or {}
    return dict(condition(status.get("conditions", []), "Ready") or {})


@pytest.mark.timeout(150)
def test_a_dependson_loop_marks_every_member_with_an_event(env: Env) -> None:
    env.pool("shape", minReplicas=1, maxReplicas=2)
    for name, dep in (("loop-a", "loop-b"), ("loop-b", "loop-c"), ("loop-c", "loop-a")):
        apply(env.kube, custom_path(NS, "taskdefinitions"), taskdef(name, dependsOn=[dep]))
    for name in ("loop-a", "loop-b", "loop-c"):
        ready = wait_until(
            f"{name} CycleDetected",
            lambda name=name: (
                ready_of(env, name).get("reason") == "CycleDetected" and ready_of(env, name)
            ),
            timeout=40,
        )
        assert ready["status"] == "False"
        assert "loop-a -> loop-b -> loop-c -> loop-a" in ready["message"]
        events = wait_until(
            f"{name}'s event", lambda name=name: env.events(name, "CycleDetected"), 20
        )
        # One per replica and loop (a second only if a replica restarted in between).
        assert all(
            e["type"] == "Warning" and "loop-a -> loop-b -> loop-c -> loop-a" in e["message"]
            for e in events
        ), events
    # Breaking the loop clears it for every member.
    apply(env.kube, custom_path(NS, "taskdefinitions"), taskdef("loop-c"))
    for name in ("loop-a", "loop-b", "loop-c"):
        wait_until(
            f"{name} Ready", lambda name=name: ready_of(env, name).get("status") == "True", 40
        )


@pytest.mark.timeout(150)
def test_references_and_counts_in_the_status(env: Env) -> None:
    apply(env.kube, custom_path(NS, "taskdefinitions"), taskdef("orphan", pool="no-such-pool"))
    ready = wait_until(
        "PoolNotFound",
        lambda: ready_of(env, "orphan").get("reason") == "PoolNotFound" and ready_of(env, "orphan"),
        20,
    )
    assert "create it or fix spec.pool" in ready["message"]
    env.pool("shape", minReplicas=1, maxReplicas=2)
    submit(env.backend, "shape", 3)
    counted = taskdef("counted", task="tests.operator.optasks:work")
    apply(env.kube, custom_path(NS, "taskdefinitions"), counted)

    def counts() -> dict[str, int]:
        got = (env.get("taskdefinitions", "counted").get("status") or {}).get("invocations")
        return got or {}

    # The first status may come from counts read just before the submit (earlier tests ran
    # the same task); the next sweep must show the three pending ones.
    wait_until("pending counts in the status", lambda: counts().get("PENDING", 0) >= 3, 40)


@pytest.mark.timeout(150)
def test_a_schedule_tick_is_claimed_once_through_the_api_server(env: Env) -> None:
    """Two replicas that read the same TaskDefinition race to claim the tick: the API server's
    resourceVersion check lets exactly one submit. (In a namespace no operator watches, so
    nothing else moves the resourceVersion meanwhile.)"""
    ticker = taskdef("ticker", task="tests.operator.optasks:work", schedule="* * * * *",
                     arguments={"i": 424242})  # fmt: skip
    ticker["metadata"]["namespace"] = ADMIN_NS
    # The tick is submitted as the App its WorkerPool names (spec.appName) would call.
    env.pool(ticker["spec"]["pool"], namespace=ADMIN_NS, enabled=False)
    apply(env.kube, custom_path(ADMIN_NS, "taskdefinitions"), ticker)
    body = env.get("taskdefinitions", "ticker", ADMIN_NS)
    created = parse_rfc3339(body["metadata"]["creationTimestamp"]).timestamp()
    spec = TaskDefinitionSpec.model_validate(body["spec"])
    won = []
    for replica in ("one", "two"):
        ctx = Ctx(
            kube=env.kube,
            backends=BackendCache(),
            settings=OperatorSettings(identity=replica),
            clock=lambda: created + 61,  # the next minute's tick is due
        )
        won.append(run_schedule(ctx, body, spec, env.url))
        ctx.backends.close()
    assert sorted(won) == [False, True]
    stored = env.get("taskdefinitions", "ticker", ADMIN_NS)["status"]["lastScheduleTime"]
    assert stored.endswith(":00Z")
    assert len(env.events("ticker", "Scheduled", ADMIN_NS)) == 1
    submitted = env.backend.query(task=TaskId(TASK), status=Status.PENDING, limit=10000)
    [tick] = [r for r in submitted if json.loads(r.args) == {"i": 424242}]
    assert (tick.app, tick.pool) == ("optest", queue(ticker["spec"]["pool"], ADMIN_NS))
    status, _ = env.kube.request(
        "DELETE", custom_path(ADMIN_NS, "workerpools", ticker["spec"]["pool"])
    )
    assert status in (200, 202)


# -- ConcurrencyPolicy -> backend, with cleanup on delete ---------------------------------------


@pytest.mark.timeout(150)
def test_a_policy_reaches_the_backend_and_leaves_it_on_delete(env: Env) -> None:
    env.pool("shape", minReplicas=1, maxReplicas=2)
    apply(env.kube, custom_path(NS, "concurrencypolicies"), {
        "apiVersion": API_VERSION, "kind": "ConcurrencyPolicy",
        "metadata": {"name": "one-per-user", "namespace": NS},
        "spec": {"runningLimit": 1, "key": ["user_id"], "registration": "dedupe"},
    })  # fmt: skip
    stored = wait_until("the policy in the backend",
                        lambda: env.backend.get_policy(f"{NS}/one-per-user"), 40)  # fmt: skip
    assert {k: v for k, v in json.loads(stored).items() if v is not None} == {
        "running_limit": 1, "key": ["user_id"], "registration": "dedupe"
    }  # fmt: skip
    wait_until(
        "Ready=True Stored",
        lambda: (
            (
                condition(
                    (env.get("concurrencypolicies", "one-per-user").get("status") or {}).get(
                        "conditions", []
                    ),
                    "Ready",
                )
                or {}
            ).get("reason")
            == "Stored"
        ),
        timeout=40,
    )
    # A change reaches the backend without restarting anything.
    body = env.get("concurrencypolicies", "one-per-user")
    env.kube.patch(custom_path(NS, "concurrencypolicies", "one-per-user"),
                   {"spec": {"runningLimit": 3}})  # fmt: skip
    wait_until(
        "the new limit",
        lambda: '"running_limit":3' in (env.backend.get_policy(f"{NS}/one-per-user") or ""),
        20,
    )
    assert body["metadata"]["finalizers"] == ["kubenenc.io/policy-cleanup"]
    status, _ = env.kube.request("DELETE", custom_path(NS, "concurrencypolicies", "one-per-user"))
    assert status in (200, 202)
    wait_until("the policy gone from the backend",
               lambda: env.backend.get_policy(f"{NS}/one-per-user") is None, 40)  # fmt: skip
    wait_until("the resource gone",
               lambda: env.kube.get(custom_path(NS, "concurrencypolicies", "one-per-user")) is None,
               20)  # fmt: skip


@pytest.mark.timeout(150)
def test_one_policy_name_in_two_namespaces_sharing_a_backend(env: Env) -> None:
    """Each namespace's policy is its own entry; an SDK in a namespace reads its own."""
    for namespace, limit in ((NS, 1), (NS_B, 3)):
        env.pool("shape", namespace=namespace, minReplicas=0, maxReplicas=1)
        apply(env.kube, custom_path(namespace, "concurrencypolicies"), {
            "apiVersion": API_VERSION, "kind": "ConcurrencyPolicy",
            "metadata": {"name": "limit", "namespace": namespace},
            "spec": {"runningLimit": limit},
        })  # fmt: skip
    for namespace, limit in ((NS, 1), (NS_B, 3)):
        name = f"{namespace}/limit"
        stored = wait_until(f"{name} in the backend", lambda n=name: env.backend.get_policy(n), 40)
        assert json.loads(stored)["running_limit"] == limit
    assert env.backend.get_policy("limit") is None
    limits = {}
    for namespace in (NS, NS_B):
        app = App("optest", backend=env.url, settings=Settings(namespace=namespace))
        task = app.task(concurrency="limit")(optasks.work.func)
        try:
            record = app.backend.get(task(1).id)
            assert record is not None
            limits[namespace] = record.running_limit
        finally:
            app.close()
    assert limits == {NS: 1, NS_B: 3}


@pytest.mark.timeout(150)
def test_two_namespaces_sharing_a_backend_count_and_claim_only_their_own(env: Env) -> None:
    """WorkerPool "twin" of App optest in NS and in NS_B, one backend: each pool's status
    counts only its own namespace's backlog, and a worker of NS_B never claims NS's calls."""
    for namespace in (NS, NS_B):
        env.pool("twin", namespace=namespace, enabled=False)
    submit(env.backend, "twin", 30, namespace=NS)
    submit(env.backend, "twin", 7, namespace=NS_B)

    def backlog(namespace: str) -> int | None:
        status = env.get("workerpools", "twin", namespace).get("status") or {}
        return status.get("backlog")

    wait_until("each pool's own backlog", lambda: (backlog(NS), backlog(NS_B)) == (30, 7), 40)
    metrics = env.operator.metrics()
    assert f'kubenenc_operator_pool_backlog{{pool="{NS}/twin"}} 30' in metrics
    assert f'kubenenc_operator_pool_backlog{{pool="{NS_B}/twin"}} 7' in metrics
    worker = spawn_worker(env, "twin", 4, "twin-b.log", {"KUBENENC_NAMESPACE": NS_B})
    try:
        wait_until(
            "NS_B's calls done",
            lambda: env.backend.counts(pool=queue("twin", NS_B)).get(Status.SUCCESS, 0) == 7,
            timeout=60,
            interval=0.2,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(40)
    ours = env.backend.counts(pool=queue("twin", NS))
    assert ours.get(Status.PENDING, 0) == 30 and sum(ours.values()) == 30
    wait_until("NS_B's backlog drained", lambda: (backlog(NS), backlog(NS_B)) == (30, 0), 40)


@pytest.mark.timeout(200)
def test_a_changed_taskdefinition_changes_later_calls_without_restarts(env: Env) -> None:
    """The TaskDefinition's retries, back-off and timeout reach the SDK and a running worker
    (both in namespace NS) through the backend; a change applies to the next calls."""
    env.pool("shape", minReplicas=0, maxReplicas=1)
    apply(env.kube, custom_path(NS, "taskdefinitions"), taskdef(
        "flaky", task="tests.operator.optasks:flaky", retries=1, backoffSeconds=0.05,
        timeoutSeconds=30, priority=5,
    ))  # fmt: skip
    stored_as = f"{NS}/task:tests.operator.optasks.flaky"
    wait_until("the options in the backend", lambda: env.backend.get_policy(stored_as), 40)
    app = App("optest", backend=env.url, settings=Settings(namespace=NS))
    flaky = app.task(optasks.flaky.func)  # the decorator says: no retries, no timeout
    worker = spawn_worker(env, "shape", 2, "flaky-worker.log", {"KUBENENC_NAMESPACE": NS})
    try:

        def run_once(i: int) -> Any:
            inv = flaky(i)
            return wait_until(
                f"flaky({i}) FAILED",
                lambda: (
                    (r := app.backend.get(inv.id)) is not None and r.status is Status.FAILED and r
                ),
                timeout=60,
                interval=0.1,
            )

        first = run_once(1)
        assert (first.max_retries, first.timeout, first.priority, first.pool) == (
            1,
            30.0,
            5,
            queue("shape"),
        )
        assert first.attempt == 2  # one try and one retry
        env.kube.patch(custom_path(NS, "taskdefinitions", "flaky"),
                       {"spec": {"retries": 3, "timeoutSeconds": 7}})  # fmt: skip
        wait_until(
            "the new options in the backend",
            lambda: '"retries":3' in (env.backend.get_policy(stored_as) or ""),
            timeout=40,
        )
        time.sleep(POLICY_TTL + 0.1)  # the SDK's cache of the options
        second = run_once(2)
        assert (second.max_retries, second.timeout) == (3, 7.0)
        assert second.attempt == 4
        # An explicit call option still wins.
        third = app.backend.get(flaky.with_options(retries=0)(3).id)
        assert third is not None and third.max_retries == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(40)
        app.close()
    # Deleting the definition removes its options at the next full sweep.
    status, _ = env.kube.request("DELETE", custom_path(NS, "taskdefinitions", "flaky"))
    assert status in (200, 202)
    wait_until("the options gone", lambda: env.backend.get_policy(stored_as) is None, 40)


# -- the enforcer -------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_the_enforcer_hands_back_the_work_of_a_killed_worker(env: Env) -> None:
    """No other worker runs on this pool, so only the operator's sweep can recover it."""
    # The operator sweeps only the backends its WorkerPools name (it opens a backend when it
    # first reads a pool's load): without a pool of its own, this test passed only after
    # another test's pool had opened the backend. A fixed pool, so nothing scales; its
    # backlog in the status shows that the operator reads the backend.
    env.pool("lonely", enabled=False)
    wait_until(
        "the operator to read the pool's backend",
        lambda: "backlog" in (env.get("workerpools", "lonely").get("status") or {}),
        timeout=40,
    )
    task = "tests.operator.optasks.slow"
    args = {"seconds": 600}
    inv = NewInvocation(
        id=InvocationId(uuid.uuid4().hex), app="optest", task=TaskId(task),
        args=json.dumps(args), call_key=call_key(task, args, scope="optest"), display="slow(600)",
        pool=queue("lonely"),
    )  # fmt: skip
    env.backend.register([inv], time.time())
    worker = spawn_worker(env, "lonely", 1, "lonely.log")
    try:
        wait_until("the worker to run it",
                   lambda: (env.backend.get(inv.id) or inv).status is Status.RUNNING,  # type: ignore[union-attr]
                   timeout=30)  # fmt: skip
    finally:
        worker.kill()  # SIGKILL: no hand-back, no unregister
        worker.wait(10)
    record = wait_until(
        "the operator to hand it back",
        lambda: (r := env.backend.get(inv.id)) is not None and r.status is Status.PENDING and r,
        timeout=30,
    )
    assert record.lost == 1
    assert "kubenenc_operator_recovered_total" in env.operator.metrics()


@pytest.mark.timeout(90)
def test_the_enforcer_fails_a_run_a_live_worker_left_past_its_timeout(env: Env) -> None:
    """A worker that still beats but is hung: recover leaves it alone, the overdue check
    fails its run (and frees the slot)."""
    task = "tests.operator.optasks.slow"
    args = {"seconds": 600}
    inv = NewInvocation(
        id=InvocationId(uuid.uuid4().hex), app="optest", task=TaskId(task),
        args=json.dumps(args), call_key=call_key(task, args, scope="optest"), display="slow(600)",
        pool=queue("hung"), timeout=1.0, running_key="slow#*", running_limit=1,
    )  # fmt: skip
    env.backend.register([inv], time.time())
    worker = WorkerId(f"hung-{uuid.uuid4().hex[:8]}")
    assert [r.id for r in env.backend.claim(queue("hung"), worker, 1, time.time())] == [inv.id]
    stop = threading.Event()

    def beat() -> None:
        beater = open_backend(env.url)
        try:
            while not stop.is_set():
                beater.heartbeat(WorkerInfo(worker, queue("hung"), 1, 1, 0, time.time(), "pod"))
                stop.wait(0.3)
        finally:
            beater.close()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        record = wait_until(
            "the operator to fail the overdue run",
            lambda: (r := env.backend.get(inv.id)) is not None and r.status is Status.FAILED and r,
            timeout=30,
        )
    finally:
        stop.set()
        thread.join(5)
    assert record.error is not None and record.error.type == "kubenenc.errors.TaskTimeout"
    assert f"its worker {worker} did not stop it" in record.error.message
    assert record.lost == 0  # failed as overdue, not recovered as a dead worker's
    assert "kubenenc_operator_overdue_failed_total" in env.operator.metrics()


# -- as admin, and the service account's log ----------------------------------------------------


@pytest.mark.timeout(200)
def test_the_operator_also_runs_as_admin_and_a_restart_changes_nothing(env: Env) -> None:
    def run_admin_operator(log: str) -> OperatorProcess:
        op = start_operator(env.cluster.kubeconfig, env.tmp / log, [ADMIN_NS], "admin-lease")
        wait_until("the admin operator to lead",
                   lambda: "kubenenc_operator_leader 1" in _safe_metrics(op), 30)  # fmt: skip
        return op

    op = run_admin_operator("admin.log")
    try:
        env.pool("solo", namespace=ADMIN_NS, minReplicas=2, maxReplicas=2)
        dep = wait_until("the Deployment",
                         lambda: env.kube.get(deployment_path(ADMIN_NS, "solo")), 40)  # fmt: skip
        assert dep["spec"]["replicas"] == 2
        wait_until(
            "the pool's status",
            lambda: (env.get("workerpools", "solo", ADMIN_NS).get("status") or {}).get("replicas"),
            20,
        )
    finally:
        assert op.stop() == 0, op.text()[-3000:]
    before = env.kube.get(deployment_path(ADMIN_NS, "solo")) or {}
    pool_before = env.get("workerpools", "solo", ADMIN_NS)
    op = run_admin_operator("admin-again.log")
    try:
        time.sleep(3)  # several scaling ticks and the resume handlers
    finally:
        assert op.stop() == 0, op.text()[-3000:]
    after = env.kube.get(deployment_path(ADMIN_NS, "solo")) or {}
    # The Deployment's spec was not touched (its status may move: the kwok pods' readiness).
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    pool_after = env.get("workerpools", "solo", ADMIN_NS)
    for key in ("replicas", "desiredReplicas", "lastScaleTime", "selector"):
        assert pool_after["status"].get(key) == pool_before["status"].get(key), key
    scaling = [condition(p["status"]["conditions"], "Scaling") for p in (pool_before, pool_after)]
    assert scaling[0] == scaling[1]
    # Deleting the pool deletes its Deployment (owner reference, garbage collector).
    status, _ = env.kube.request("DELETE", custom_path(ADMIN_NS, "workerpools", "solo"))
    assert status in (200, 202)
    wait_until("the Deployment collected",
               lambda: env.kube.get(deployment_path(ADMIN_NS, "solo")) is None, 90)  # fmt: skip
    # kopf keeps its bookkeeping in annotations, never in the user's status.
    assert set(pool_after["status"]) <= {
        "observedGeneration", "replicas", "desiredReplicas", "readyReplicas", "backlog",
        "running", "paused", "selector", "lowSince", "lastScaleTime", "scalingEvents",
        "conditions",
    }  # fmt: skip


@pytest.mark.timeout(30)
def test_the_service_account_was_never_refused(env: Env) -> None:
    """Runs last in this module: the RBAC of operator/rbac/rbac.yaml sufficed for all of it."""
    log = env.operator.text()
    assert "Forbidden" not in log and " 403" not in log, log[-5000:]
    assert "kubenenc_operator_scaling_decisions_total" in env.operator.metrics()
