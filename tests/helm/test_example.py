"""examples/shop runs: its tasks with a real worker on SQLite, its resources parse with the
operator's own models (the source of the CRD schemas) and agree with the tasks' options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import ROOT
from tests.support import free_port

EXAMPLE = ROOT / "examples" / "shop"


def resources() -> list[dict[str, Any]]:
    """Every object in examples/shop/k8s/."""
    return [
        doc
        for path in sorted((EXAMPLE / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"] for o in resources() if o["kind"] == kind}


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``shop.tasks`` imported from the example folder, forgotten afterwards."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import shop.tasks

    yield shop.tasks
    for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[name]


def test_resources_are_valid_for_the_operators_models() -> None:
    from kubenenc import ConcurrencyPolicy
    from kubenenc_operator.models import API_VERSION, TaskDefinitionSpec, WorkerPoolSpec

    models = {
        "WorkerPool": WorkerPoolSpec,
        "TaskDefinition": TaskDefinitionSpec,
        "ConcurrencyPolicy": ConcurrencyPolicy,
    }
    kinds = []
    for obj in resources():
        assert obj["apiVersion"] == API_VERSION
        assert "namespace" not in obj["metadata"]  # applied with -n
        models[obj["kind"]].model_validate(obj["spec"])
        kinds.append(obj["kind"])
    assert sorted(set(kinds)) == sorted(models)


def test_task_definitions_agree_with_the_tasks(shop: Any) -> None:
    pools = of_kind("WorkerPool")
    policies = of_kind("ConcurrencyPolicy")
    definitions = of_kind("TaskDefinition")
    assert pools.keys() == {shop.POOL}
    assert pools[shop.POOL]["app"] == "shop.tasks:app"
    tasks = {t.name: t for t in shop.app.tasks.values()}
    assert definitions.keys() == tasks.keys()
    for name, spec in definitions.items():
        task = tasks[name]
        assert spec["task"] == f"shop.tasks:{name}"
        assert spec["pool"] == task.options.pool == shop.POOL
        assert spec.get("retries", 0) == task.options.retries
        assert spec.get("concurrencyPolicyRef") == task.options.concurrency
        if task.options.concurrency is not None:
            assert task.options.concurrency in policies
            for key in policies[task.options.concurrency].get("key") or ():
                assert key in task.signature.parameters
        for dependency in spec.get("dependsOn", ()):
            assert dependency in definitions
    assert definitions["ship"]["dependsOn"] == ["checkout"]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_submit_script_against_a_real_worker_on_sqlite(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KUBENENC_BACKEND": f"sqlite:///{tmp_path / 'shop.db'}",
        "PYTHONPATH": str(EXAMPLE),
        "SHOP_GATEWAY_KEY": "sk-test-4242",  # the pod gets it from the Secret shop-gateway
    }
    # Before any worker runs: a second checkout of a queued order is the first one (dedupe).
    dedupe = subprocess.run(
        [sys.executable, "-c", "import submit; from shop.tasks import checkout\n"
         "submit.store_policies()\n"
         "a = checkout('order-x', 1, [('pen', 1)]); b = checkout('order-x', 1, [('pen', 1)])\n"
         "print(a.id == b.id, a.status.value)"],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert dedupe.returncode == 0, dedupe.stderr
    assert dedupe.stdout.split() == ["True", "PENDING"]

    port = free_port()
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker", "worker", "--app", "shop.tasks:app",
             "--pool", "shop-workers", "--concurrency", "2", "--http-port", str(port),
             "--log-format", "json"],
            cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _ready(port):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker never became ready"
            time.sleep(0.1)
        out = subprocess.run(
            [sys.executable, "submit.py", "--orders", "8", "--timeout", "60"],
            cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
    finally:
        worker.terminate()
        code = worker.wait(40)
    assert out.returncode == 0, out.stdout + out.stderr + (tmp_path / "worker.log").read_text()
    lines = out.stdout.splitlines()
    assert lines[0].startswith("submitted 8 orders")
    assert lines[-1].startswith("8/8 orders shipped")
    for n in range(8):
        assert f"order order-{n:04d} shipped to customer {n % 3}" in out.stdout
    assert code == 0  # SIGTERM drained cleanly
    # The worker logged JSON; the tasks' lines carry their run, and the key from the env.
    records = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    charges = [r for r in records if r["message"].startswith("charging customer")]
    assert charges and all(r["message"].endswith("(gateway key ...4242)") for r in charges)
    assert all(r["task"] == "shop.tasks.charge" and r["invocation_id"] for r in charges)
    orders = [r for r in records if r["logger"] == "shop" and r["message"].startswith("order")]
    assert {r["task"] for r in orders} == {"shop.tasks.checkout"}
