"""The README's metrics table lists exactly what the worker and the operator export, and the
KEDA example scales a WorkerPool on metrics that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from kubenenc_operator.metrics import Metrics
from kubenenc_operator.models import API_VERSION, WorkerPoolSpec
from kubenenc_worker.metrics import Metrics as WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]


def exported() -> set[str]:
    worker = WorkerMetrics().render("p")
    operator = Metrics().render()
    return set(re.findall(r"^# TYPE (\S+) ", worker + "\n" + operator, flags=re.MULTILINE))


def test_the_readme_table_is_what_is_exported() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(kubenenc_\w+)` \|", section, flags=re.MULTILINE))
    assert listed == exported()


def test_the_keda_example_targets_a_pool_on_exported_metrics() -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples" / "keda" / "scaledobject.yaml").read_text()))
    pool, scaled = docs
    assert pool["apiVersion"] == API_VERSION and pool["kind"] == "WorkerPool"
    spec = WorkerPoolSpec.model_validate(pool["spec"])
    assert spec.autoscaling.enabled is False  # KEDA alone sets spec.replicas
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        API_VERSION, "WorkerPool", pool["metadata"]["name"],
    )  # fmt: skip
    names = {re.search(r"(kubenenc_\w+)", t["metadata"]["query"]).group(1)  # type: ignore[union-attr]
             for t in scaled["spec"]["triggers"]}  # fmt: skip
    assert names <= exported()
    assert names == {"kubenenc_operator_pool_queue_depth",
                     "kubenenc_operator_pool_oldest_pending_seconds"}  # fmt: skip
