"""The chart against a real API server (the ``control_plane`` fixture of tests/cluster).

One release, ``knc`` in namespace ``helm-kubenenc`` (enforcing the "restricted" Pod Security
Standard, so a pod of the chart that asked for more would never be admitted), goes through
its life in file order: install; the operator, run here as a subprocess with the token of
the chart's own ServiceAccount, reconciles the example project (examples/shop/k8s) with no
403; upgrade with changed values; uninstall, after which only the CRDs remain.

The release and namespace names differ from tests/operator's (``kubenenc-system``), so both
suites share the session's control plane without touching each other's objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fixtures import Cluster
from tests.helm.chart import CHART, ROOT, rule_set
from tests.support import free_port, stop_process, wait_until

pytestmark = pytest.mark.controlplane

RELEASE = "knc"
NS = "helm-kubenenc"
SHOP = "helm-shop"
NAME = "knc-kubenenc"  # <release>-<chart>: the release name does not contain the chart's
OPERATOR = f"{NAME}-operator"
CRDS = ["concurrencypolicies.kubenenc.io", "taskdefinitions.kubenenc.io", "workerpools.kubenenc.io"]
EXAMPLE = ROOT / "examples" / "shop"


def get(cluster: Cluster, path: str) -> dict[str, Any] | None:
    """GET as admin; None on 404."""
    response = cluster.request("GET", path)
    if response.status == 404:
        return None
    assert response.status == 200, (path, response.status, response.text[:500])
    return response.body


def items(cluster: Cluster, path: str) -> list[dict[str, Any]]:
    body = get(cluster, path) or {}
    return list(body.get("items") or [])


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def established(cluster: Cluster, name: str) -> bool:
    crd = get(cluster, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    return condition(crd, "Established").get("status") == "True"


def create_namespace(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        body["metadata"]["labels"] = labels
    response = cluster.request("POST", "/api/v1/namespaces", body)
    assert response.status in (201, 409), response.text
    wait_until(
        f"the default ServiceAccount of {name}",
        lambda: get(cluster, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        timeout=30,
    )


def can_i(cluster: Cluster, verb: str, resource: str, *, namespace: str | None = None) -> bool:
    """``kubectl auth can-i`` as the chart's ServiceAccount."""
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{NS}:{OPERATOR}"]
    args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    result = cluster.kubectl(*args, check=False, timeout=30)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def operator_deployment(cluster: Cluster) -> dict[str, Any] | None:
    return get(cluster, f"/apis/apps/v1/namespaces/{NS}/deployments/{OPERATOR}")


def running_pods(cluster: Cluster, component: str, count: int) -> list[dict[str, Any]]:
    """Wait for exactly ``count`` live pods of ``component`` (operator, redis) of the release's
    current template, Running on the kwok node.

    Running proves what matters here: the pods were admitted under Pod Security "restricted"
    and scheduled. Readiness is not waited for (no ``helm --wait``): on this loaded machine
    the node controller sometimes marks the kwok node NotReady for a moment, which flips every
    pod to unready for good (kwok never sets Ready again), and a wait would time out.
    """
    deployment = get(cluster, f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-{component}")
    assert deployment is not None
    template = deployment["spec"]["template"]

    def current() -> list[dict[str, Any]]:
        pods = items(
            cluster,
            f"/api/v1/namespaces/{NS}/pods?labelSelector=app.kubernetes.io/component%3D{component}",
        )
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        fresh = [
            p
            for p in live
            if p["spec"]["containers"][0].get("env") == template["spec"]["containers"][0].get("env")
            and p["status"].get("phase") == "Running"
        ]
        return fresh if len(live) == len(fresh) == count else []

    return wait_until(f"{count} {component} pod(s) Running", current, timeout=90)


@dataclass
class Release:
    cluster: Cluster
    install_output: str
    installed: bool = True


@pytest.fixture(scope="module")
def release(control_plane: Cluster) -> Iterator[Release]:
    """The chart installed as ``knc`` into a namespace enforcing Pod Security "restricted"."""
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    create_namespace(control_plane, NS, restricted)
    result = control_plane.helm(
        "install", RELEASE, str(CHART), "--namespace", NS,
        "--set", "image.repository=kubenenc-operator", "--set", "image.tag=test", timeout=120,
    )  # fmt: skip
    state = Release(control_plane, result.stdout + result.stderr)
    try:
        yield state
    finally:
        if state.installed:
            control_plane.helm("uninstall", RELEASE, "-n", NS, "--wait", check=False)


# -- install ------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_install_establishes_the_crds_and_prints_the_notes(release: Release) -> None:
    for name in CRDS:
        wait_until(f"CRD {name} Established", lambda n=name: established(release.cluster, n), 30)
    out = release.install_output
    assert "would violate PodSecurity" not in out
    assert "kubectl apply -n shop -f examples/shop/k8s/" in out
    assert "`helm upgrade` does NOT update CustomResourceDefinitions" in out
    assert "kubectl apply --server-side --force-conflicts -f charts/kubenenc/crds/" in out
    releases = json.loads(release.cluster.helm("list", "-n", NS, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [(RELEASE, "deployed")]


@pytest.mark.timeout(120)
def test_operator_deployment_is_restricted_and_running(release: Release) -> None:
    deployment = operator_deployment(release.cluster)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    (running,) = running_pods(release.cluster, "operator", 1)  # admitted under "restricted"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "kubenenc-operator:test"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # The namespace really enforces "restricted": a pod that asks for nothing is refused.
    plain = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }  # fmt: skip
    refused = release.cluster.request("POST", f"/api/v1/namespaces/{NS}/pods", plain)
    assert refused.status == 403
    assert 'violates PodSecurity "restricted:latest"' in refused.body["message"]
    assert running["spec"]["nodeName"] == release.cluster.node_name
    service = get(release.cluster, f"/api/v1/namespaces/{NS}/services/{OPERATOR}-metrics")
    assert service is not None
    assert service["spec"]["ports"][0]["port"] == 8080


@pytest.mark.timeout(120)
def test_rbac_objects_match_the_operator_rbac_and_nothing_more(release: Release) -> None:
    cluster = release.cluster
    source = {
        doc["kind"]: doc
        for doc in yaml.safe_load_all((ROOT / "operator" / "rbac" / "rbac.yaml").read_text())
        if doc
    }
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    cluster_role = get(cluster, f"{rbac}/clusterroles/{OPERATOR}")
    role = get(cluster, f"{rbac}/namespaces/{NS}/roles/{OPERATOR}-leader")
    assert cluster_role is not None and role is not None
    assert rule_set(cluster_role["rules"]) == rule_set(source["ClusterRole"]["rules"])
    assert rule_set(role["rules"]) == rule_set(source["Role"]["rules"])
    subject = [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NS}]
    binding = get(cluster, f"{rbac}/clusterrolebindings/{OPERATOR}")
    assert binding is not None and binding["subjects"] == subject
    assert binding["roleRef"]["name"] == OPERATOR
    role_binding = get(cluster, f"{rbac}/namespaces/{NS}/rolebindings/{OPERATOR}-leader")
    assert role_binding is not None and role_binding["subjects"] == subject
    assert get(cluster, f"/api/v1/namespaces/{NS}/serviceaccounts/{OPERATOR}") is not None
    # What the operator may do ...
    assert can_i(cluster, "watch", "workerpools.kubenenc.io")
    assert can_i(cluster, "patch", "concurrencypolicies.kubenenc.io/status")
    assert can_i(cluster, "create", "deployments.apps", namespace="anywhere")
    assert can_i(cluster, "get", "secrets", namespace="anywhere")
    assert can_i(cluster, "update", "leases.coordination.k8s.io", namespace=NS)
    # ... and what it may not.
    assert not can_i(cluster, "delete", "deployments.apps", namespace="anywhere")
    assert not can_i(cluster, "list", "secrets", namespace="anywhere")
    assert not can_i(cluster, "create", "pods", namespace="anywhere")
    assert not can_i(cluster, "delete", "workerpools.kubenenc.io")
    assert not can_i(cluster, "update", "leases.coordination.k8s.io", namespace="default")
    assert not can_i(cluster, "create", "customresourcedefinitions.apiextensions.k8s.io")


@pytest.mark.timeout(120)
def test_admission_policy_narrows_the_operators_writes_below_rbac(
    release: Release, tmp_path: Path
) -> None:
    """RBAC lets the operator create Deployments and patch pods anywhere; the chart's
    ValidatingAdmissionPolicy lets it write only Deployments a WorkerPool controls, and on
    worker pods only the pod-deletion-cost annotation (what the real operator then does in
    the reconcile tests below)."""
    cluster = release.cluster
    admission = "/apis/admissionregistration.k8s.io/v1"
    policy = get(cluster, f"{admission}/validatingadmissionpolicies/{OPERATOR}-writes")
    assert policy is not None
    assert get(cluster, f"{admission}/validatingadmissionpolicybindings/{OPERATOR}-writes")
    wait_until(
        "the policy to be type-checked without warnings",
        lambda: (
            (p := get(cluster, f"{admission}/validatingadmissionpolicies/{OPERATOR}-writes"))
            and p.get("status", {}).get("observedGeneration") == p["metadata"]["generation"]
            and not p["status"].get("typeChecking", {}).get("expressionWarnings")
        ),
        timeout=30,
    )
    space = "helm-admission"
    create_namespace(cluster, space)
    as_operator = f"--as=system:serviceaccount:{NS}:{OPERATOR}"
    unowned = tmp_path / "unowned.yaml"
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "miner", "namespace": space,
                     "labels": {"app.kubernetes.io/managed-by": "kubenenc-operator"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "miner"}]}}},
    }  # fmt: skip
    unowned.write_text(yaml.safe_dump(deployment))
    assert can_i(cluster, "create", "deployments.apps", namespace=space)  # RBAC says yes ...
    denied = cluster.kubectl(as_operator, "create", "-f", str(unowned), check=False)
    assert denied.returncode != 0  # ... the policy says no
    assert "writes only the Deployments of WorkerPools" in denied.stderr
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "worker-1", "namespace": space, "labels": {"kubenenc.io/pool": "p"}},
        "spec": {"containers": [{"name": "worker", "image": "worker:1"}]},
    }  # fmt: skip
    created = cluster.request("POST", f"/api/v1/namespaces/{space}/pods", pod)
    assert created.status == 201, created.text

    token = cluster.service_account_token(NS, OPERATOR)  # the operator's own rights

    def patch(body: dict[str, Any]) -> tuple[int, str]:
        # Strategic merge: a container's image changes in place (a legal pod update that
        # only admission can refuse), other fields merge as with a merge patch.
        reply = cluster.plane.request(
            "PATCH", f"/api/v1/namespaces/{space}/pods/worker-1", body, token=token,
            content_type="application/strategic-merge-patch+json",
        )  # fmt: skip
        return reply.status, reply.text

    cost = "controller.kubernetes.io/pod-deletion-cost"
    status, text = patch({"metadata": {"annotations": {cost: "-5"}}})
    assert status == 200, text
    for body in (
        {"metadata": {"annotations": {"other": "x"}}},
        {"metadata": {"labels": {"kubenenc.io/pool": "q"}}},
        {"spec": {"containers": [{"name": "worker", "image": "miner:1"}]}},
    ):
        status, text = patch(body)
        assert status == 403, (body, status, text)
        assert "only the pod-deletion-cost annotation" in text, text
    got = get(cluster, f"/api/v1/namespaces/{space}/pods/worker-1")
    assert got is not None and got["metadata"]["annotations"] == {cost: "-5"}
    assert got["spec"]["containers"][0]["image"] == "worker:1"
    cluster.request("DELETE", f"/api/v1/namespaces/{space}")


# -- the operator, with the chart's ServiceAccount token, on the example ------------------------


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.proc)


def start_operator(kubeconfig: Path, log: Path) -> OperatorProcess:
    """``kubenenc operator`` with the environment the chart's Deployment gives it."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBENENC_OPERATOR_NAMESPACES": json.dumps([SHOP]),
        "KUBENENC_OPERATOR_LEASE_NAMESPACE": NS,
        "KUBENENC_OPERATOR_LEASE_NAME": OPERATOR,
        "KUBENENC_OPERATOR_IDENTITY": "local-test-operator",
        "KUBENENC_OPERATOR_METRICS_HOST": "127.0.0.1",
        "KUBENENC_OPERATOR_METRICS_PORT": str(free_port()),
        "KUBENENC_OPERATOR_HEALTH_PORT": str(free_port()),
        "KUBENENC_OPERATOR_SCALE_INTERVAL": "0.5",
        "KUBENENC_OPERATOR_STATUS_INTERVAL": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubenenc_cli", "operator"],  # = `kubenenc operator`
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return OperatorProcess(proc, log)


def submit_charges(url: str, n: int) -> None:
    """``n`` pending charges of the example, submitted with the SDK as a user outside the
    cluster would: in the workers' namespace (their queues and policies)."""
    script = (
        "import sys; from shop.tasks import app, charge\n"
        f"app.configure({url!r})\n"
        f"charge.parallelize([(c, 10) for c in range({n})])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE), "KUBENENC_NAMESPACE": SHOP}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=EXAMPLE, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def reconcile_example(cluster: Cluster, tmp_path: Path) -> None:
    """Run the operator as the chart's ServiceAccount, apply examples/shop/k8s, see it
    reconciled and scaled, delete it, and find no 403 in the operator's log."""
    from kubenenc.backends import open_backend

    create_namespace(cluster, SHOP)
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    secret = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "kubenenc-backend", "namespace": SHOP}, "stringData": {"url": url},
    }  # fmt: skip
    assert cluster.request("POST", f"/api/v1/namespaces/{SHOP}/secrets", secret).status == 201
    kubeconfig = cluster.service_account_kubeconfig(NS, OPERATOR)  # the chart's SA: exists
    operator = start_operator(kubeconfig, tmp_path / "operator.log")
    backend = open_backend(url)
    try:
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{OPERATOR}"

        def leading() -> bool:
            assert operator.proc.poll() is None, operator.text()[-3000:]
            lease = get(cluster, lease_path) or {}
            return bool((lease.get("spec") or {}).get("holderIdentity") == "local-test-operator")

        wait_until("the operator to take the Lease in the release namespace", leading, 60)

        applied = cluster.kubectl("apply", "-n", SHOP, "-f", str(EXAMPLE / "k8s"), timeout=60)
        assert applied.stdout.count("created") == 7, applied.stdout

        path = f"/apis/apps/v1/namespaces/{SHOP}/deployments/shop-workers"
        deployment = wait_until("the pool's Deployment", lambda: get(cluster, path), 60)
        assert deployment["metadata"]["ownerReferences"][0]["kind"] == "WorkerPool"
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "kubenenc-shop:0.1.0"
        assert container["args"][:5] == ["worker", "--app", "shop.tasks:app", "--pool",
                                         "shop-workers"]  # fmt: skip
        assert container["args"][-2:] == ["--log-format", "json"]
        assert container["resources"]["limits"] == {"memory": "1Gi"}
        gateway = next(e for e in container["env"] if e["name"] == "SHOP_GATEWAY_KEY")
        assert gateway["valueFrom"]["secretKeyRef"] == {"name": "shop-gateway", "key": "api-key"}

        kubenenc = f"/apis/kubenenc.io/v1alpha1/namespaces/{SHOP}"
        for name in ("one-charge-per-customer", "one-checkout-per-order"):
            policy = wait_until(
                f"ConcurrencyPolicy {name} Ready",
                lambda n=name: (
                    (p := get(cluster, f"{kubenenc}/concurrencypolicies/{n}"))
                    and condition(p, "Ready").get("status") == "True"
                    and p
                ),
                timeout=60,
            )
            assert policy["status"]["backends"] == 1
            # Written where the workers read it, under the namespace (see kubenenc.task_defaults).
            assert backend.get_policy(f"{SHOP}/{name}") is not None
        for name in ("price", "charge", "checkout", "ship"):
            wait_until(
                f"TaskDefinition {name} Ready",
                lambda n=name: (
                    condition(get(cluster, f"{kubenenc}/taskdefinitions/{n}"), "Ready").get(
                        "status"
                    )
                    == "True"
                ),
                timeout=60,
            )

        # Work arrives: the pool scales out from the backlog (8 per pod, at most 5 pods).
        submit_charges(url, 40)
        wait_until(
            "the pool to scale out",
            lambda: ((get(cluster, path) or {}).get("spec") or {}).get("replicas", 0) > 1,
            timeout=60,
        )
        wait_until(  # the status is written after the Deployment is patched
            "the pool's status to show the backlog",
            lambda: (
                (
                    (get(cluster, f"{kubenenc}/workerpools/shop-workers") or {}).get("status") or {}
                ).get("backlog", 0)
                >= 1
            ),
            timeout=30,
        )

        # Deleting the resources: the policies' finalizer is removed by the operator.
        cluster.kubectl("delete", "-n", SHOP, "-f", str(EXAMPLE / "k8s"), "--wait=false")
        wait_until(
            "the example resources to be gone",
            lambda: (
                not any(
                    items(cluster, f"{kubenenc}/{plural}")
                    for plural in ("workerpools", "taskdefinitions", "concurrencypolicies")
                )
            ),
            timeout=60,
        )
        assert backend.get_policy(f"{SHOP}/one-charge-per-customer") is None
        wait_until(
            "the pool's Deployment to be garbage-collected",
            lambda: get(cluster, path) is None,
            timeout=60,
        )
    finally:
        code = operator.stop()
        backend.close()
        cluster.request("DELETE", f"/api/v1/namespaces/{SHOP}/secrets/kubenenc-backend")
    log = operator.text()
    assert code == 0, log[-3000:]
    assert " 403" not in log and "Forbidden" not in log and "forbidden" not in log, log[-5000:]


@pytest.mark.timeout(240)
def test_operator_with_the_chart_token_reconciles_the_example(
    release: Release, tmp_path: Path
) -> None:
    reconcile_example(release.cluster, tmp_path)


# -- upgrade and uninstall ----------------------------------------------------------------------


def redis_password(cluster: Cluster) -> str:
    import base64

    secret = get(cluster, f"/api/v1/namespaces/{NS}/secrets/{NAME}-redis")
    assert secret is not None
    return base64.b64decode(secret["data"]["password"]).decode()


@pytest.mark.timeout(240)
def test_upgrade_with_changed_values(release: Release) -> None:
    cluster = release.cluster
    create_namespace(cluster, SHOP)  # watched namespaces must exist: the chart puts a Role there
    result = cluster.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NS, "--reuse-values",
        "--set", "replicaCount=2", "--set", "redis.enabled=true",
        "--set", "metrics.service.enabled=false", "--set", f"operator.watchNamespaces={{{SHOP}}}",
        timeout=120, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        state = cluster.kubectl(
            "get", "deploy,rs,pods,pdb,events", "-n", NS, "-o", "wide", check=False
        )
        pytest.fail(f"helm upgrade failed: {result.stderr}\n{state.stdout}{state.stderr}")
    assert "would violate PodSecurity" not in result.stdout + result.stderr
    running_pods(cluster, "operator", 2)
    deployment = operator_deployment(cluster)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBENENC_OPERATOR_NAMESPACES"] == f'["{SHOP}"]'
    assert get(cluster, f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{OPERATOR}")
    assert get(cluster, f"/api/v1/namespaces/{NS}/services/{OPERATOR}-metrics") is None
    redis = get(cluster, f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-redis")
    assert redis is not None
    running_pods(cluster, "redis", 1)  # admitted under "restricted"
    assert get(cluster, f"/api/v1/namespaces/{NS}/services/{NAME}-redis") is not None
    password = redis_password(cluster)

    cluster.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NS, "--reuse-values",
        "--set", "replicaCount=1", timeout=120,
    )  # fmt: skip
    assert redis_password(cluster) == password  # the generated password survives upgrades
    assert get(cluster, f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{OPERATOR}") is None
    history = json.loads(cluster.helm("history", RELEASE, "-n", NS, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2, 3]


@pytest.mark.timeout(240)
def test_with_watched_namespaces_a_role_there_is_enough(release: Release, tmp_path: Path) -> None:
    """After the upgrade above (operator.watchNamespaces=[helm-shop]) the operator has no
    cluster-wide rights, only a Role in helm-shop, and still reconciles the example."""
    cluster = release.cluster
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    assert get(cluster, f"{rbac}/clusterroles/{OPERATOR}") is None
    assert get(cluster, f"{rbac}/clusterrolebindings/{OPERATOR}") is None
    assert get(cluster, f"{rbac}/namespaces/{SHOP}/roles/{OPERATOR}") is not None
    assert can_i(cluster, "watch", "workerpools.kubenenc.io", namespace=SHOP)
    assert not can_i(cluster, "watch", "workerpools.kubenenc.io", namespace="default")
    assert not can_i(cluster, "watch", "workerpools.kubenenc.io")  # all namespaces
    reconcile_example(cluster, tmp_path)


@pytest.mark.timeout(240)
def test_dashboard_installs_on_the_bundled_redis(release: Release) -> None:
    """dashboard.enabled (with the Redis the upgrade above turned on): its pod is admitted
    under Pod Security "restricted" and runs; the Service and the Ingress exist."""
    cluster = release.cluster
    cluster.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", NS, "--reuse-values",
        "--set", "dashboard.enabled=true", "--set", "dashboard.ingress.enabled=true",
        timeout=120,
    )  # fmt: skip
    running_pods(cluster, "dashboard", 1)
    deployment = get(cluster, f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-dashboard")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{NAME}-dashboard"
    (container,) = pod["containers"]
    assert container["command"][:2] == ["kubenenc", "dashboard"]
    # After the upgrade above the operator watches helm-shop only, and so does the dashboard:
    # it may read the custom resources there and nothing else.
    who = f"--as=system:serviceaccount:{NS}:{NAME}-dashboard"
    for verb, resource, ns in (
        ("list", "workerpools.kubenenc.io", SHOP), ("watch", "taskdefinitions.kubenenc.io", SHOP),
    ):  # fmt: skip
        out = cluster.kubectl("auth", "can-i", verb, resource, who, f"--namespace={ns}",
                              check=False)  # fmt: skip
        assert out.stdout.strip() == "yes", out.stdout + out.stderr
    for args in (
        ("list", "workerpools.kubenenc.io", "--namespace=default"),
        ("patch", "workerpools.kubenenc.io", f"--namespace={SHOP}"),
        ("get", "secrets", f"--namespace={NS}"),
    ):
        out = cluster.kubectl("auth", "can-i", *args, who, check=False)
        assert out.stdout.strip() == "no", (args, out.stdout + out.stderr)
    service = get(cluster, f"/api/v1/namespaces/{NS}/services/{NAME}-dashboard")
    assert service is not None
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = get(cluster, f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{NAME}-dashboard")
    assert ingress is not None
    assert ingress["spec"]["rules"][0]["host"] == "kubenenc.example.com"


@pytest.mark.timeout(180)
def test_uninstall_leaves_only_the_crds(release: Release) -> None:
    cluster = release.cluster
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "90s", timeout=120)
    release.installed = False
    selector = f"?labelSelector=app.kubernetes.io/instance%3D{RELEASE}"
    left = {
        path: names
        for path in (
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            f"/apis/apps/v1/namespaces/{NS}/replicasets",
            f"/api/v1/namespaces/{NS}/services",
            f"/api/v1/namespaces/{NS}/secrets",
            f"/api/v1/namespaces/{NS}/serviceaccounts",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings",
            f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets",
            f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        )
        if (names := [i["metadata"]["name"] for i in items(cluster, path + selector)])
    }
    assert left == {}
    secrets = [s["metadata"]["name"] for s in items(cluster, f"/api/v1/namespaces/{NS}/secrets")]
    assert secrets == []  # helm's release records are gone too
    accounts = items(cluster, f"/api/v1/namespaces/{NS}/serviceaccounts")
    assert [a["metadata"]["name"] for a in accounts] == ["default"]
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    assert get(cluster, f"{rbac}/clusterroles/{OPERATOR}") is None
    assert get(cluster, f"{rbac}/clusterrolebindings/{OPERATOR}") is None
    wait_until(
        "the operator's pods to be gone",
        lambda: not items(cluster, f"/api/v1/namespaces/{NS}/pods"),
        timeout=60,
    )
    for name in CRDS:  # helm never deletes CRDs: the users' resources survive an uninstall
        assert established(cluster, name)
    assert json.loads(cluster.helm("list", "-n", NS, "-o", "json").stdout) == []


@pytest.mark.timeout(120)
def test_the_documented_crd_upgrade_applies_under_strict_validation(release: Release) -> None:
    """The README's upgrade step (server-side apply, which validates fields strictly): a
    schema keyword Kubernetes does not know (``propertyNames`` once) would fail it."""
    result = release.cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server",
        "-f", str(CHART / "crds"), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("serverside-applied") == len(CRDS), result.stdout
