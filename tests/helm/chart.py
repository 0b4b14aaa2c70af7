"""Helpers of the chart tests: find helm, render the chart, index what it renders."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.controlplane import default_bin_dir
from tests.support import require

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubenenc"
CI_VALUES = CHART / "ci"
KUBE_VERSION = "1.31.0"
"""Passed to `helm template`: a helm built without version ldflags assumes Kubernetes 1.20,
which the chart's kubeVersion (>= 1.29, for CEL validation messages) refuses."""


def helm_binary() -> str:
    """The cached helm of tests/cluster (or one on PATH); skip (fail under CI) without one."""
    cached = default_bin_dir() / "helm"
    found = str(cached) if os.access(cached, os.X_OK) else shutil.which("helm")
    require(found is not None, f"helm is neither in {cached.parent} nor on PATH")
    assert found is not None
    return found


def helm(
    *args: str, timeout: float = 60, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run helm without a cluster (private config/cache dirs under ``home``); never raises."""
    home = home or Path(tempfile.gettempdir()) / "kubenenc-helm-tests"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(
        [helm_binary(), *args], check=False, capture_output=True, text=True, timeout=timeout,
        env=env,
    )  # fmt: skip


def render(
    *values_files: Path, sets: Iterable[str] = (), release: str = "kubenenc",
    namespace: str = "kubenenc-system", api_versions: Iterable[str] = (),
) -> list[dict[str, Any]]:  # fmt: skip
    """``helm template`` the chart; the rendered objects (CRDs included)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--include-crds",
            "--kube-version", KUBE_VERSION]  # fmt: skip
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    for version in api_versions:  # what a real server's discovery would report
        args += ["--api-versions", version]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(kind, name): object}``."""
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def rule_set(rules: Iterable[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """RBAC rules flattened to (apiGroup, resource, verb) triples, so that equal permissions
    compare equal however they are grouped."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }
