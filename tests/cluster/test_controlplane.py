"""Smoke tests of the control-plane fixture: a real API server does what a cluster does.

Each test uses its own namespace, polls with an explicit deadline, and stays well under the
per-test timeout; the first one also pays for the session fixture's startup.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import Cluster
from tests.support import wait_until

pytestmark = pytest.mark.controlplane

TESTDATA = Path(__file__).parent / "testdata"


def create_namespace(cluster: Cluster, name: str) -> None:
    """Create namespace ``name`` and wait for its ``default`` ServiceAccount.

    The ServiceAccount admission plugin rejects pods until the controller manager has made
    that account, so a test that creates a pod right away would otherwise be flaky.
    """
    core = k8s_client.CoreV1Api(cluster.api_client)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    wait_until(
        f"ServiceAccount {name}/default",
        lambda: (
            cluster.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default").status
            == 200
        ),
        timeout=30,
    )


@pytest.mark.timeout(300)
def test_api_server_is_up_with_rbac_and_version(control_plane: Cluster) -> None:
    version = control_plane.request("GET", "/version")
    assert version.status == 200
    # The build stamps the real version (not v0.0.0-master) into the binary.
    assert re.fullmatch(r"v1\.\d+\.\d+", version.body["gitVersion"]), version.body
    assert version.body["major"] == "1"
    assert version.body["gitVersion"].startswith(f"v1.{version.body['minor']}.")
    # An unknown token is rejected: authentication is really on.
    assert control_plane.request("GET", "/api/v1/pods", token="not-a-token").status == 401
    node = k8s_client.CoreV1Api(control_plane.api_client).read_node(control_plane.node_name)
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True"


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.kubenenc.test
spec:
  group: smoke.kubenenc.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
                color: {type: string}
"""


@pytest.mark.timeout(120)
def test_kubectl_applies_crd_and_custom_resource(control_plane: Cluster, tmp_path: Path) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD)
    control_plane.kubectl("apply", "-f", str(crd))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.smoke.kubenenc.test", "--timeout=60s"
    )
    control_plane.kubectl("create", "namespace", "smoke-crd")

    widget = tmp_path / "widget.yaml"
    widget.write_text(
        "apiVersion: smoke.kubenenc.test/v1\nkind: Widget\n"
        "metadata: {name: w1, namespace: smoke-crd}\nspec: {size: 3, color: blue}\n"
    )
    # The CRD's discovery can lag a moment behind Established; retry apply briefly.
    wait_until(
        "kubectl apply of the Widget",
        lambda: control_plane.kubectl("apply", "-f", str(widget), check=False).returncode == 0,
        timeout=30,
    )
    got = json.loads(
        control_plane.kubectl("get", "widget", "w1", "-n", "smoke-crd", "-o", "json").stdout
    )
    assert got["kind"] == "Widget"
    assert got["spec"] == {"size": 3, "color": "blue"}

    # The schema is enforced by the API server.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: smoke.kubenenc.test/v1\nkind: Widget\n"
        "metadata: {name: w2, namespace: smoke-crd}\nspec: {size: 0}\n"
    )
    rejected = control_plane.kubectl("apply", "-f", str(bad), check=False)
    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[k8s_client.V1Pod]:
    pods: list[k8s_client.V1Pod] = (
        k8s_client.CoreV1Api(cluster.api_client)
        .list_namespaced_pod(namespace, label_selector=selector)
        .items
    )
    return pods


@pytest.mark.timeout(120)
def test_deployment_pods_run_on_kwok_node_and_scale_down(control_plane: Cluster) -> None:
    namespace, labels = "smoke-deploy", {"app": "smoke"}
    create_namespace(control_plane, namespace)
    apps = k8s_client.AppsV1Api(control_plane.api_client)
    apps.create_namespaced_deployment(
        namespace,
        k8s_client.V1Deployment(
            metadata=k8s_client.V1ObjectMeta(name="smoke"),
            spec=k8s_client.V1DeploymentSpec(
                replicas=3,
                selector=k8s_client.V1LabelSelector(match_labels=labels),
                template=k8s_client.V1PodTemplateSpec(
                    metadata=k8s_client.V1ObjectMeta(labels=labels),
                    spec=k8s_client.V1PodSpec(
                        containers=[
                            k8s_client.V1Container(name="app", image="registry.invalid/app:0")
                        ]
                    ),
                ),
            ),
        ),
    )

    def running() -> list[k8s_client.V1Pod]:
        pods = _pods(control_plane, namespace, "app=smoke")
        ok = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return pods if len(ok) == 3 and len(pods) == 3 else []

    pods = wait_until("3 Running pods", running, timeout=60)
    assert {p.spec.node_name for p in pods} == {control_plane.node_name}
    assert len({p.metadata.name for p in pods}) == 3
    ready = wait_until(
        "deployment readyReplicas == 3",
        lambda: (
            apps.read_namespaced_deployment_status("smoke", namespace).status.ready_replicas == 3
        ),
        timeout=30,
    )
    assert ready

    apps.patch_namespaced_deployment_scale("smoke", namespace, {"spec": {"replicas": 1}})

    def one_left() -> list[k8s_client.V1Pod]:
        pods = _pods(control_plane, namespace, "app=smoke")
        return pods if len(pods) == 1 else []

    remaining = wait_until("exactly 1 pod left", one_left, timeout=60)
    assert remaining[0].status.phase == "Running"
    assert remaining[0].metadata.name in {p.metadata.name for p in pods}


@pytest.mark.timeout(120)
def test_service_account_rbac_denies_then_allows_only_get(control_plane: Cluster) -> None:
    namespace = "smoke-rbac"
    create_namespace(control_plane, namespace)
    core_admin = k8s_client.CoreV1Api(control_plane.api_client)
    core_admin.create_namespaced_pod(
        namespace,
        k8s_client.V1Pod(
            metadata=k8s_client.V1ObjectMeta(name="target"),
            spec=k8s_client.V1PodSpec(
                containers=[k8s_client.V1Container(name="app", image="registry.invalid/app:0")]
            ),
        ),
    )
    token = control_plane.service_account_token(namespace, "reader")
    pod_path = f"/api/v1/namespaces/{namespace}/pods/target"

    # Authenticated as the service account, but no binding: forbidden.
    denied = control_plane.request("GET", pod_path, token=token)
    assert denied.status == 403, denied.text
    assert f"system:serviceaccount:{namespace}:reader" in denied.body["message"]

    rbac = k8s_client.RbacAuthorizationV1Api(control_plane.api_client)
    rbac.create_namespaced_role(
        namespace,
        k8s_client.V1Role(
            metadata=k8s_client.V1ObjectMeta(name="pod-getter"),
            rules=[k8s_client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        k8s_client.V1RoleBinding(
            metadata=k8s_client.V1ObjectMeta(name="reader-gets-pods"),
            role_ref=k8s_client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-getter"
            ),
            subjects=[
                k8s_client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )
    # The RBAC authorizer reads bindings through an informer: allow it a moment.
    wait_until(
        "the RoleBinding to take effect",
        lambda: control_plane.request("GET", pod_path, token=token).status == 200,
        timeout=30,
    )

    # Same checks through the kubernetes client and a service-account kubeconfig.
    sa_core = k8s_client.CoreV1Api(control_plane.service_account_api_client(namespace, "reader"))
    assert sa_core.read_namespaced_pod("target", namespace).metadata.name == "target"
    with pytest.raises(ApiException) as deleted:
        sa_core.delete_namespaced_pod("target", namespace)
    assert deleted.value.status == 403
    with pytest.raises(ApiException) as listed:
        sa_core.list_namespaced_pod(namespace)
    assert listed.value.status == 403
    assert control_plane.request("DELETE", pod_path, token=token).status == 403
    # The pod is still there.
    assert core_admin.read_namespaced_pod("target", namespace).metadata.deletion_timestamp is None


@pytest.mark.timeout(120)
def test_helm_template_and_install_tiny_chart(control_plane: Cluster) -> None:
    chart = str(TESTDATA / "tinychart")
    rendered = control_plane.helm(
        "template", "demo", chart, "--namespace", "smoke-helm", "--set", "greeting=hi"
    ).stdout
    assert "kind: ConfigMap" in rendered
    assert "name: demo-settings" in rendered
    assert 'greeting: "hi"' in rendered

    control_plane.helm(
        "install", "demo", chart,
        "--namespace", "smoke-helm", "--create-namespace",
        "--set", "greeting=hi", "--wait", "--timeout", "60s",
    )  # fmt: skip
    core = k8s_client.CoreV1Api(control_plane.api_client)
    assert core.read_namespaced_config_map("demo-settings", "smoke-helm").data == {
        "greeting": "hi",
        "chart": "tinychart-0.1.0",
    }
    deployment = k8s_client.AppsV1Api(control_plane.api_client).read_namespaced_deployment(
        "demo-app", "smoke-helm"
    )
    assert deployment.status.ready_replicas == 1
    releases = json.loads(control_plane.helm("list", "-n", "smoke-helm", "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]

    control_plane.helm("uninstall", "demo", "-n", "smoke-helm", "--wait", "--timeout", "60s")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("demo-settings", "smoke-helm")
    assert gone.value.status == 404


@pytest.mark.timeout(120)
def test_stop_ends_every_process_and_removes_the_workdir(control_plane: Cluster) -> None:
    """A second, minimal control plane (etcd + apiserver) beside the session one."""
    with ControlPlane(bin_dir=control_plane.bin_dir) as plane:
        pids = plane.pids()
        assert set(pids) == {"etcd", "kube-apiserver"}
        assert plane.request("GET", "/readyz").status == 200
        workdir = plane.workdir
        assert plane.log_path("kube-apiserver").stat().st_size > 0
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopped and reaped: no such process any more
    assert not workdir.exists()
    # The session's control plane is untouched.
    assert control_plane.request("GET", "/readyz").status == 200
