"""The Workers page's Kubernetes part against a real kube-apiserver (tests/cluster): the
example's WorkerPool, TaskDefinitions and ConcurrencyPolicies with a status as the operator
writes it, read by :class:`kubenenc_dashboard.cluster.ClusterView`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubenenc.backends.memory import MemoryBackend
from kubenenc_dashboard import DashboardSettings, create_app
from kubenenc_dashboard.cluster import ClusterView
from starlette.testclient import TestClient

from tests.cluster.fixtures import Cluster
from tests.support import wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
NS = "dash-k8s"


@pytest.fixture(scope="module")
def shop(control_plane: Cluster) -> Cluster:
    """The CRDs, and the example project's resources in namespace dash-k8s."""
    cluster = control_plane
    # Created without strict field validation, as the other suites' REST calls do: the API
    # server refuses the WorkerPool schema's propertyNames as an unknown field (strict
    # decoding, and server-side apply's typed patch alike); another module may have made them.
    made = cluster.kubectl("create", "--validate=false", "-f", str(ROOT / "crds"), check=False)
    assert made.returncode == 0 or "AlreadyExists" in made.stderr, made.stderr
    for name in ("workerpools", "taskdefinitions", "concurrencypolicies"):
        # Retried: right after the create, a CRD may have no conditions yet (kubectl errors).
        wait_until(
            f"crd/{name} to be established",
            lambda name=name: cluster.kubectl(  # type: ignore[misc]
                "wait", "--for=condition=Established", f"crd/{name}.kubenenc.io",
                "--timeout=10s", check=False,
            ).returncode == 0,
            timeout=60,
        )  # fmt: skip
    cluster.kubectl("create", "namespace", NS, check=False)
    wait_until(
        "the example to apply",
        lambda: (
            cluster.kubectl(
                "apply", "-n", NS, "-f", str(ROOT / "examples" / "shop" / "k8s"), check=False
            ).returncode
            == 0
        ),
        timeout=30,
    )
    status = {
        "status": {
            "replicas": 2, "desiredReplicas": 3, "readyReplicas": 1, "backlog": 17,
            "running": 6, "paused": 2, "lastScaleTime": "2026-12-07T01:00:00Z",
            "scalingEvents": [
                {"time": "2026-12-07T00:50:00Z", "fromReplicas": 1, "toReplicas": 3,
                 "reason": "ScaledOut", "message": "1 -> 3 replicas (40 pending)"},
                {"time": "2026-12-07T01:00:00Z", "fromReplicas": 3, "toReplicas": 2,
                 "reason": "ScaledIn", "message": "3 -> 2 replicas (0 pending)"},
            ],
            "conditions": [{
                "type": "Ready", "status": "False", "reason": "Scaling",
                "message": "1 of 2 pods ready", "lastTransitionTime": "2026-12-07T01:00:00Z",
            }],
        }
    }  # fmt: skip
    cluster.kubectl(
        "patch", "workerpool", "shop-workers", "-n", NS, "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    counts = {"status": {"invocations": {"SUCCESS": 40, "FAILED": 2}}}
    cluster.kubectl(
        "patch", "taskdefinition", "charge", "-n", NS, "--subresource=status",
        "--type=merge", "-p", json.dumps(counts),
    )  # fmt: skip
    return cluster


def _workers_page(view: ClusterView) -> str:
    client = TestClient(create_app(MemoryBackend(), DashboardSettings(), view))
    page = client.get("/workers")
    assert page.status_code == 200
    return page.text


def test_the_workers_page_shows_pools_tasks_and_policies(shop: Cluster) -> None:
    view = ClusterView.connect(str(shop.kubeconfig), [NS])
    state = view.read()
    assert state.errors == {}
    [pool] = state.resources["workerpools"]
    fields = dict(pool.fields)
    assert (pool.namespace, pool.name) == (NS, "shop-workers")
    assert fields["backlog"] == "17"
    assert fields["replicas"] == "2 (ready 1, wanted 3, 1-5)"
    assert (fields["running"], fields["paused"]) == ("6", "2")
    assert pool.conditions == [("Ready", "False", "Scaling", "1 of 2 pods ready")]
    # The CRD keeps the operator's scaling history; the page lists it newest first.
    assert [(at, change, reason) for at, change, reason, _ in pool.history] == [
        ("2026-12-07T01:00:00Z", "3 → 2", "ScaledIn"),
        ("2026-12-07T00:50:00Z", "1 → 3", "ScaledOut"),
    ]
    tasks = {t.name: dict(t.fields) for t in state.resources["taskdefinitions"]}
    assert tasks["charge"]["invocations"] == "FAILED 2, SUCCESS 40"
    assert tasks["charge"]["policy"] == "one-charge-per-customer"
    policies = {p.name: dict(p.fields) for p in state.resources["concurrencypolicies"]}
    assert policies["one-charge-per-customer"]["running limit"] == "1"
    assert policies["one-checkout-per-order"]["registration"] == "dedupe"
    text = _workers_page(view)
    assert f'data-name="{NS}/shop-workers"' in text
    assert "1 of 2 pods ready" in text
    assert f'data-history="{NS}/shop-workers"' in text and "3 -&gt; 2 replicas (0 pending)" in text
    assert "running now" in text  # each ConcurrencyPolicy says what runs under it
    assert "shop.tasks:charge" in text


def test_another_namespace_shows_none_and_no_rights_shows_why(shop: Cluster) -> None:
    empty = ClusterView.connect(str(shop.kubeconfig), ["default"]).read()
    assert empty.errors == {}
    assert all(rows == [] for rows in empty.resources.values())
    shop.kubectl("create", "serviceaccount", "nobody", "-n", NS, check=False)
    nobody = ClusterView.connect(str(shop.service_account_kubeconfig(NS, "nobody")))
    state = nobody.read()
    assert set(state.errors) == {"workerpools", "taskdefinitions", "concurrencypolicies"}
    assert "403" in state.errors["workerpools"]
    assert "cannot list workerpools: 403" in _workers_page(nobody)
