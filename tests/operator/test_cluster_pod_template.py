"""WorkerPool ``spec.template`` on a real API server: each field reaches the Deployment, a
change rolls the pods, and the CRD refuses what would break a pod or weaken its hardening.

Uses the same operator fixture as ``test_cluster.py`` (an operator run as the chart's
ServiceAccount), started once for this module.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from kubenenc_operator.kube import custom_path, deployment_path
from kubenenc_operator.models import API_VERSION

from tests.operator.test_cluster import NS, ROOT, Env, backend_url, env  # noqa: F401 - fixtures
from tests.operator.test_pod_template import TEMPLATE, readme_pool_spec
from tests.support import wait_until

pytestmark = pytest.mark.controlplane


def pool_body(name: str, template: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": "WorkerPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"image": "example.com/shop:1", "app": "tests.operator.optasks:app",
                 "appName": "optest",
                 "backend": {"secretName": "backend"}, "autoscaling": {"enabled": False},
                 "template": template, **spec},
    }  # fmt: skip


@pytest.mark.timeout(150)
def test_every_template_field_reaches_the_deployment_and_a_change_rolls(env: Env) -> None:  # noqa: F811
    status, body = env.kube.request(
        "POST", custom_path(NS, "workerpools"), pool_body("tmpl", TEMPLATE, logFormat="json")
    )
    assert status == 201, body
    dep = wait_until("the Deployment", lambda: env.kube.get(deployment_path(NS, "tmpl")), 40)
    template = dep["spec"]["template"]
    pod = template["spec"]
    (c,) = pod["containers"]
    assert template["metadata"]["labels"]["team"] == "shop"
    assert template["metadata"]["labels"]["kubenenc.io/pool"] == "tmpl"
    assert template["metadata"]["annotations"]["example.com/owner"] == "shop-team"
    assert c["resources"] == TEMPLATE["resources"]
    env_vars = {e["name"]: e for e in c["env"]}
    assert env_vars["STRIPE_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "stripe", "key": "api-key"
    }  # fmt: skip
    assert env_vars["MODE"]["value"] == "live"
    assert c["envFrom"] == TEMPLATE["envFrom"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models"}
    assert "tmp" in volumes
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == TEMPLATE["tolerations"]
    assert pod["affinity"] == TEMPLATE["affinity"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": {"kubenenc.io/pool": "tmpl"}}
    assert pod["priorityClassName"] == "batch-high"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["serviceAccountName"] == "shop-worker"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["args"][-2:] == ["--log-format", "json"]

    # A change to the template rolls the pods: a new pod template, so a new generation.
    generation = dep["metadata"]["generation"]
    changed = copy.deepcopy(TEMPLATE)
    changed["nodeSelector"] = {"gpu": "h100"}
    env.kube.patch(custom_path(NS, "workerpools", "tmpl"), {"spec": {"template": changed}})
    rolled = wait_until(
        "the Deployment to take the new template",
        lambda: (
            (d := env.kube.get(deployment_path(NS, "tmpl")) or {})
            and d["spec"]["template"]["spec"].get("nodeSelector") == {"gpu": "h100"}
            and d
        ),
        timeout=40,
    )
    assert rolled["metadata"]["generation"] > generation
    assert rolled["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def _with(**template: Any) -> dict[str, Any]:
    return {
        "image": "i",
        "app": "a:b",
        "appName": "b",
        "backend": {"secretName": "b"},
        "template": template,
    }


INVALID = [
    (_with(securityContext={"runAsNonRoot": False}), "runAsNonRoot cannot be false"),
    (_with(securityContext={"runAsUser": 0}), "greater than or equal to 1"),
    (_with(securityContext={"seccompProfile": {"type": "Unconfined"}}), "use RuntimeDefault"),
    (_with(resources={"limits": {"memory": "lots"}}), "must be Kubernetes quantities"),
    (_with(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}), "raise the limit"),
    (_with(env=[{"name": "KUBENENC_BACKEND", "value": "x"}]), "is set by the operator"),
    (_with(env=[{"name": "KUBENENC_WORKER__MAX_LOST", "value": "9"}]), "is set by the operator"),
    ({**_with(), "heartbeatTimeoutSeconds": 0}, "heartbeatTimeoutSeconds"),
    ({**_with(), "maxLost": -1}, "maxLost"),
    (_with(env=[{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]),
     "keep one"),
    (_with(env=[{"name": "A", "valueFrom": {}}]), "set exactly one of secretKeyRef"),
    (_with(envFrom=[{"prefix": "X_"}]), "set exactly one of secretRef, configMapRef"),
    (_with(volumes=[{"name": "tmp", "emptyDir": {}}]), 'volume name "tmp" is the operator'),
    (_with(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
     "must name an entry of template.volumes"),
    (_with(volumes=[{"name": "d", "emptyDir": {}}], volumeMounts=[{"name": "d",
           "mountPath": "/tmp"}]), "other than / and /tmp"),
    (_with(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]), "remove value"),
    (_with(topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone",
           "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}]), "minDomains needs"),
    (_with(labels={"kubenenc.io/pool": "other"}), "the operator selects its pods with them"),
    (_with(annotations={"controller.kubernetes.io/pod-deletion-cost": "1"}),
     "the operator writes them"),
    (_with(priorityClassName="Not_Valid"), "priorityClassName must be a Kubernetes name"),
    ({**_with(resources={}), "resources": {}}, "resources is set twice"),
]  # fmt: skip


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("spec", "message"), INVALID)
def test_invalid_templates_are_refused_with_a_message_saying_what_to_change(
    env: Env,  # noqa: F811
    spec: dict[str, Any],
    message: str,
) -> None:
    status, body = env.kube.request("POST", custom_path(NS, "workerpools"), {
        "apiVersion": API_VERSION, "kind": "WorkerPool", "metadata": {"name": "bad"},
        "spec": spec,
    })  # fmt: skip
    assert status == 422, body
    assert message in body["message"], body["message"]


@pytest.mark.timeout(120)
def test_the_readme_template_example_is_accepted(env: Env) -> None:  # noqa: F811
    status, body = env.kube.request("POST", custom_path(NS, "workerpools") + "?dryRun=All", {
        "apiVersion": API_VERSION, "kind": "WorkerPool", "metadata": {"name": "readme"},
        "spec": readme_pool_spec(),
    })  # fmt: skip
    assert status == 201, body


@pytest.mark.timeout(120)
def test_the_keda_example_pool_is_accepted(env: Env) -> None:  # noqa: F811
    pool = next(yaml.safe_load_all((ROOT / "examples" / "keda" / "scaledobject.yaml").read_text()))
    pool["metadata"]["namespace"] = NS
    status, body = env.kube.request("POST", custom_path(NS, "workerpools") + "?dryRun=All", pool)
    assert status == 201, body


@pytest.mark.timeout(180)
def test_a_template_change_rolls_the_pods_keeping_one_ready(env: Env) -> None:  # noqa: F811
    """The controller-manager replaces the pods (kwok runs them) with a new ReplicaSet, never
    dropping below the ready pods asked for (maxUnavailable 0: each old pod goes, and drains,
    only once its replacement is ready)."""
    body = pool_body("roll", {"labels": {"version": "1"}}, replicas=1)
    status, created = env.kube.request("POST", custom_path(NS, "workerpools"), body)
    assert status == 201, created
    selector = "kubenenc.io/pool=roll"
    sets = f"/apis/apps/v1/namespaces/{NS}/replicasets"

    def ready() -> int:
        dep = env.kube.get(deployment_path(NS, "roll")) or {}
        return int((dep.get("status") or {}).get("readyReplicas") or 0)

    wait_until("one ready pod", lambda: ready() == 1, 60)
    (first,) = env.kube.list(sets, label_selector=selector)
    env.kube.patch(custom_path(NS, "workerpools", "roll"),
                   {"spec": {"template": {"labels": {"version": "2"}}}})  # fmt: skip
    seen_ready: list[int] = []

    def rolled() -> bool:
        seen_ready.append(ready())
        dep = env.kube.get(deployment_path(NS, "roll")) or {}
        st = dep.get("status") or {}
        replica_sets = env.kube.list(sets, label_selector=selector)
        old = [r for r in replica_sets if r["metadata"]["uid"] == first["metadata"]["uid"]]
        return bool(
            len(replica_sets) == 2
            and st.get("observedGeneration") == dep["metadata"]["generation"]
            and st.get("updatedReplicas") == 1
            and st.get("readyReplicas") == 1
            and old
            and old[0]["spec"]["replicas"] == 0
        )

    wait_until("the new ReplicaSet to replace the old one", rolled, 90, interval=0.1)
    assert min(seen_ready) >= 1, seen_ready  # never without a ready pod
    pods = env.kube.list(f"/api/v1/namespaces/{NS}/pods", label_selector=selector)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert live and all(p["metadata"]["labels"]["version"] == "2" for p in live)
