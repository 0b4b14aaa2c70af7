"""The CRDs in crds/ are what the models generate, and carry what users and tools rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubenenc import ConcurrencyPolicy
from kubenenc_operator import crdgen

CRDS = Path(__file__).resolve().parents[2] / "crds"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / name).read_text())  # type: ignore[no-any-return]


def version(name: str) -> dict[str, Any]:
    return load(name)["spec"]["versions"][0]  # type: ignore[no-any-return]


def test_checked_in_crds_match_the_models() -> None:
    stale = crdgen.out_of_sync(CRDS)
    assert not stale, f"run `python -m kubenenc_operator.crdgen`; stale: {stale}"
    assert crdgen.main(["--check", "--out", str(CRDS)]) == 0


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    (tmp_path / "workerpools.yaml").write_text("# edited by hand\n")
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 1


def test_names_status_and_scale_subresources() -> None:
    shorts = {load(n)["spec"]["names"]["kind"]: load(n)["spec"]["names"]["shortNames"]
              for n in crdgen.definitions()}  # fmt: skip
    assert shorts == {"WorkerPool": ["kwp"], "TaskDefinition": ["ktd"],
                      "ConcurrencyPolicy": ["kcp"]}  # fmt: skip
    for name in crdgen.definitions():
        v = version(name)
        assert v["subresources"]["status"] == {}
        status = v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        assert "observedGeneration" in status
        cond = status["conditions"]["items"]["properties"]
        assert {"type", "status", "reason", "message", "lastTransitionTime"} <= set(cond)
    assert version("workerpools.yaml")["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_pool_printer_columns() -> None:
    columns = [c["name"] for c in version("workerpools.yaml")["additionalPrinterColumns"]]
    for wanted in ("Desired", "Ready", "Backlog", "Running", "Paused", "Age"):
        assert wanted in columns


def test_policy_spec_is_the_sdk_model_by_alias() -> None:
    spec = version("concurrencypolicies.yaml")["schema"]["openAPIV3Schema"]["properties"]["spec"]
    aliases = {f.alias for f in ConcurrencyPolicy.model_fields.values()}
    assert set(spec["properties"]) == aliases == {
        "runningLimit", "key", "registration", "rate", "burst",
    }  # fmt: skip
    assert spec["properties"]["registration"]["enum"] == ["allow", "dedupe", "reject"]
    assert spec["properties"]["runningLimit"]["minimum"] == 1


def _rules(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        found += [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        for value in node.values():
            found += _rules(value)
    elif isinstance(node, list):
        for value in node:
            found += _rules(value)
    return found


def test_cel_rules_are_present_where_the_schema_cannot_say_it() -> None:
    pool = _rules(version("workerpools.yaml")["schema"])
    assert "self.minReplicas <= self.maxReplicas" in pool
    assert any(":" in r and "matches" in r for r in pool)  # module:attr
    task = _rules(version("taskdefinitions.yaml")["schema"])
    assert any("self.metadata.name in self.spec.dependsOn" in r for r in task)
    assert any("maxBackoffSeconds >= self.backoffSeconds" in r for r in task)
    key = _rules(version("concurrencypolicies.yaml")["schema"])
    assert any("exists_one" in r for r in key)
