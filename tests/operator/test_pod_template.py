"""WorkerPool ``spec.template`` rendered into the Deployment's pod template (no cluster)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubenenc_operator.models import WorkerPoolSpec
from kubenenc_operator.resources import (
    HARDENED_CONTAINER,
    TEMPLATE_HASH,
    deployment,
    deployment_patch,
    pod_template,
)
from pydantic import ValidationError

BASE = {
    "image": "example/shop:1",
    "app": "shop.tasks:app",
    "appName": "shop",
    "backend": {"secretName": "b"},
}

TEMPLATE: dict[str, Any] = {
    "labels": {"team": "shop"},
    "annotations": {"example.com/owner": "shop-team"},
    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                  "limits": {"memory": "1Gi", "nvidia.com/gpu": "1"}},
    "env": [{"name": "STRIPE_KEY",
             "valueFrom": {"secretKeyRef": {"name": "stripe", "key": "api-key"}}},
            {"name": "MODE", "value": "live"}],
    "envFrom": [{"configMapRef": {"name": "shop-config"}, "prefix": "SHOP_"}],
    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
    "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
    "nodeSelector": {"gpu": "a100"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
    "priorityClassName": "batch-high",
    "imagePullSecrets": [{"name": "registry"}],
    "serviceAccountName": "shop-worker",
    "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                        "supplementalGroups": [3000]},
}  # fmt: skip


def spec(**fields: Any) -> WorkerPoolSpec:
    return WorkerPoolSpec.model_validate({**BASE, **fields})


def test_every_template_field_reaches_the_pod() -> None:
    rendered = pod_template("shop", spec(template=TEMPLATE, logFormat="json"))
    pod = rendered["spec"]
    (c,) = pod["containers"]
    assert rendered["metadata"]["labels"]["team"] == "shop"
    assert rendered["metadata"]["labels"]["kubenenc.io/pool"] == "shop"
    assert rendered["metadata"]["annotations"] == {"example.com/owner": "shop-team"}
    assert c["resources"] == TEMPLATE["resources"]
    env = {e["name"]: e for e in c["env"]}
    assert env["STRIPE_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "stripe", "key": "api-key"}}
    assert env["MODE"] == {"name": "MODE", "value": "live"}
    assert "KUBENENC_BACKEND" in env  # the operator's wiring stays
    assert c["envFrom"] == TEMPLATE["envFrom"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models"}} in pod["volumes"]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    assert c["volumeMounts"][1:] == TEMPLATE["volumeMounts"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == TEMPLATE["tolerations"]
    assert pod["affinity"] == TEMPLATE["affinity"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": {"kubenenc.io/pool": "shop"}}
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["priorityClassName"] == "batch-high"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["serviceAccountName"] == "shop-worker"
    assert pod["automountServiceAccountToken"] is True  # a named account: its token too
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
        "supplementalGroups": [3000], "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    assert c["securityContext"] == HARDENED_CONTAINER
    assert c["args"][-2:] == ["--log-format", "json"]


def test_the_selector_labels_win_over_template_labels() -> None:
    # The CRD refuses these keys; the renderer keeps the selector right even if one slips by.
    sneaky = spec(template={"labels": {"kubenenc.io/pool": "other", "team": "x"}})
    labels = pod_template("shop", sneaky)["metadata"]["labels"]
    assert labels["kubenenc.io/pool"] == "shop" and labels["team"] == "x"


def test_the_operators_hardening_wins() -> None:
    weak = spec(template={"securityContext": {
        "runAsNonRoot": False, "seccompProfile": {"type": "Unconfined"}}})  # fmt: skip
    context = pod_template("shop", weak)["spec"]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsUser"] != 0
    local = spec(template={"securityContext": {"seccompProfile": {
        "type": "Localhost", "localhostProfile": "profiles/worker.json"}}})  # fmt: skip
    assert pod_template("shop", local)["spec"]["securityContext"]["seccompProfile"]["type"] == (
        "Localhost"
    )


def test_spec_level_env_and_template_env_add_up() -> None:
    both = spec(env=[{"name": "A", "value": "1"}], template={"env": [{"name": "B", "value": "2"}]})
    names = [e["name"] for e in pod_template("shop", both)["spec"]["containers"][0]["env"]]
    assert names[-2:] == ["A", "B"]


def test_without_a_template_the_pod_is_unchanged() -> None:
    plain = pod_template("shop", spec())
    assert "--log-format" not in plain["spec"]["containers"][0]["args"]
    assert set(plain["spec"]) == {
        "containers", "terminationGracePeriodSeconds", "securityContext", "volumes",
        "automountServiceAccountToken",
    }  # fmt: skip
    assert plain["spec"]["automountServiceAccountToken"] is False
    assert plain["metadata"] == {"labels": plain["metadata"]["labels"]}


def test_a_template_change_moves_the_hash_so_the_pods_roll() -> None:
    before = deployment("shop", "ns", "uid", spec(template=TEMPLATE), 2)
    after = deployment(
        "shop", "ns", "uid", spec(template={**TEMPLATE, "nodeSelector": {"gpu": "h100"}}), 2
    )
    patch = deployment_patch(after, before)
    assert patch is not None
    assert (
        patch["metadata"]["annotations"][TEMPLATE_HASH]
        != (before["metadata"]["annotations"][TEMPLATE_HASH])
    )
    assert patch["spec"]["template"]["spec"]["nodeSelector"] == {"gpu": "h100"}
    assert deployment_patch(before, before) is None


@pytest.mark.parametrize(
    "template",
    [
        {"securityContext": {"runAsUser": 0}},
        {"unknownField": 1},
        {"env": [{"name": "X", "value": "1", "valueFrom": {}, "extra": 1}]},
        {"tolerations": [{"operator": "Sometimes"}]},
    ],
)
def test_the_models_refuse_what_the_schema_refuses(template: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(template=template)


def readme_pool_spec() -> dict[str, Any]:
    """The README's WorkerPool ``template`` example, as a full spec."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
                if "  template:" in b]  # fmt: skip
    return yaml.safe_load(block)["spec"]  # type: ignore[no-any-return]


def test_the_readme_template_example_is_valid_and_renders() -> None:
    pod = pod_template("shop", WorkerPoolSpec.model_validate(readme_pool_spec()))["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["securityContext"]["runAsUser"] == 1000
