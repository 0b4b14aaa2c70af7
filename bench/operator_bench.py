"""Operator benchmark against a private control plane (etcd + kube-apiserver), in one run.

    python bench/operator_bench.py [--taskdefs 500] [--repeat 5]

Measures, with the operator running as a subprocess (admin kubeconfig) and reading a Redis
backend (a SQLite file when redis-server or the Redis plugin is missing):

- backlog -> replicas: time from registering 50 pending invocations on a pool at zero to the
  Deployment's ``spec.replicas`` changing (median and max of --repeat pools; target <= 2 s);
- TaskDefinitions: time to create --taskdefs of them (a chain of dependsOn, one pool), and
  from the first create until every one reports ``Ready=True`` (target <= 30 s);
- operator RSS (VmRSS of the process) once they are all Ready, and again 10 s later
  (target <= 150 MiB);
- operator CPU time (user + system, from /proc) from the first create until all are Ready,
  and over the next 10 s (the steady cost of 500 definitions: one full sweep).

``--profile PATH`` records the operator with py-spy during the TaskDefinitions phase.

Needs the binaries of tests/cluster/build-binaries.sh. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from kubenenc.backends import Backend, available_backends, open_backend  # noqa: E402
from kubenenc.concurrency import call_key  # noqa: E402
from kubenenc.ids import InvocationId, TaskId  # noqa: E402
from kubenenc.records import NewInvocation  # noqa: E402
from kubenenc.scope import queue_name, scope  # noqa: E402
from kubenenc_operator.kube import Kube, custom_path, deployment_path  # noqa: E402
from kubenenc_operator.models import API_VERSION  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.cluster.controlplane import ControlPlane, default_bin_dir  # noqa: E402
from tests.support import free_port  # noqa: E402

NS = "bench"


def wait(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.02) -> float:
    """Poll until ``probe()`` is truthy; returns the monotonic time it became so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def create(kube: Kube, collection: str, obj: dict[str, Any]) -> None:
    status, body = kube.request("POST", collection, obj)
    if status >= 300 and status != 409:
        raise RuntimeError(f"POST {collection}: {status} {body.get('message')}")


def install(kube: Kube, url: str) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        create(kube, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
               yaml.safe_load(path.read_text()))  # fmt: skip
    create(kube, "/api/v1/namespaces", {"metadata": {"name": NS}})
    create(kube, f"/api/v1/namespaces/{NS}/secrets",
           {"metadata": {"name": "backend"}, "stringData": {"url": url}})  # fmt: skip
    wait("CRDs served", lambda: kube.request("GET", custom_path(NS, "taskdefinitions"))[0] == 200,
         30, 0.2)  # fmt: skip


def pool(kube: Kube, name: str) -> None:
    create(kube, custom_path(NS, "workerpools"), {
        "apiVersion": API_VERSION, "kind": "WorkerPool", "metadata": {"name": name},
        "spec": {"image": "example/bench:1", "app": "bench.tasks:app", "appName": "bench",
                 "slots": 10,
                 "backend": {"secretName": "backend"},
                 "autoscaling": {"minReplicas": 0, "maxReplicas": 10, "maxStep": 10}},
    })  # fmt: skip


def submit(backend: Backend, pool_name: str, n: int) -> None:
    new = []
    for i in range(n):
        args = {"i": i}
        task = "bench.tasks.work"
        new.append(NewInvocation(
            id=InvocationId(uuid.uuid4().hex), app="bench", task=TaskId(task),
            args=json.dumps(args), call_key=call_key(task, args, scope=scope("bench", NS)),
            display=f"work({i})",
            pool=queue_name(scope("bench", NS), pool_name),  # what WorkerPool pool_name counts
        ))  # fmt: skip
    backend.register(new, time.time())


def replicas(kube: Kube, name: str) -> int:
    return int(((kube.get(deployment_path(NS, name)) or {}).get("spec") or {}).get("replicas", -1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def backlog_latencies(kube: Kube, backend: Backend, repeat: int) -> list[float]:
    out = []
    for i in range(repeat):
        name = f"lat{i}"
        pool(kube, name)
        wait(f"{name} at zero", lambda name=name: replicas(kube, name) == 0, 30)
        began = time.monotonic()
        submit(backend, name, 50)
        done = wait(f"{name} scaled", lambda name=name: replicas(kube, name) > 0, 30)
        out.append(done - began)
    return out


def taskdefs(kube: Kube, n: int) -> tuple[float, float]:
    pool(kube, "tdpool")
    began = time.monotonic()
    for i in range(n):
        spec: dict[str, Any] = {"task": f"bench.tasks:t{i}", "pool": "tdpool"}
        if i:
            spec["dependsOn"] = [f"td{i - 1}"]
        create(kube, custom_path(NS, "taskdefinitions"), {
            "apiVersion": API_VERSION, "kind": "TaskDefinition",
            "metadata": {"name": f"td{i}"}, "spec": spec,
        })  # fmt: skip
    applied = time.monotonic() - began

    def all_ready() -> bool:
        items = kube.list(custom_path(NS, "taskdefinitions"))
        ready = sum(
            1
            for item in items
            for c in (item.get("status") or {}).get("conditions") or []
            if c["type"] == "Ready" and c["status"] == "True"
        )
        return ready == n

    done = wait(f"{n} TaskDefinitions Ready", all_ready, 300, 0.5)
    return applied, done - began


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taskdefs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--profile", metavar="PATH", help="py-spy the operator during the TaskDefinitions phase "
        "(raw collapsed stacks to PATH; needs py-spy)",
    )  # fmt: skip
    args = parser.parse_args()
    redis = None
    tmp = Path(tempfile.mkdtemp(prefix="opbench-"))
    if shutil.which("redis-server") and "redis" in available_backends():
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL,
        )  # fmt: skip
        url, kind = f"redis://127.0.0.1:{port}/0", "redis"
        time.sleep(0.5)
    else:
        url, kind = f"sqlite:///{tmp / 'bench.db'}", "sqlite"
    plane = ControlPlane(bin_dir=default_bin_dir())
    operator = None
    try:
        plane.start()
        api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig_path))
        kube = Kube(api)
        install(kube, url)
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig_path),
               "KUBENENC_OPERATOR_NAMESPACES": json.dumps([NS]),
               "KUBENENC_OPERATOR_METRICS_PORT": str(free_port()),
               "KUBENENC_OPERATOR_HEALTH_PORT": str(free_port())}  # fmt: skip
        with (tmp / "operator.log").open("wb") as log:
            operator = subprocess.Popen([sys.executable, "-m", "kubenenc_operator"], env=env,
                                        stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        backend = open_backend(url)
        latencies = backlog_latencies(kube, backend, args.repeat)
        rss_idle = rss_mib(operator.pid)
        spy = None
        if args.profile:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(operator.pid), "--format",
                                    "raw", "-o", args.profile, "--nonblocking"],
                                   stdout=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1)
        cpu_before = cpu_seconds(operator.pid)
        applied, ready = taskdefs(kube, args.taskdefs)
        cpu_ready = cpu_seconds(operator.pid) - cpu_before
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        rss_ready = rss_mib(operator.pid)
        cpu_before = cpu_seconds(operator.pid)
        time.sleep(10)
        rss_later = rss_mib(operator.pid)
        cpu_idle = cpu_seconds(operator.pid) - cpu_before
        backend.close()
    finally:
        if operator is not None:
            operator.send_signal(signal.SIGTERM)
            operator.wait(30)
        plane.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    table = Table(title=f"operator benchmark ({kind} backend, scale interval 1 s)")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    table.add_row("backlog -> replicas, median", f"{statistics.median(latencies):.2f} s", "<= 2 s")
    table.add_row("backlog -> replicas, max", f"{max(latencies):.2f} s", "")
    table.add_row(f"create {args.taskdefs} TaskDefinitions", f"{applied:.1f} s", "")
    table.add_row(f"first create -> all {args.taskdefs} Ready", f"{ready:.1f} s", "<= 30 s")
    table.add_row(f"last create -> all {args.taskdefs} Ready", f"{ready - applied:.1f} s", "")
    table.add_row(f"operator CPU, create -> all {args.taskdefs} Ready", f"{cpu_ready:.1f} s", "")
    table.add_row(
        f"operator CPU, next 10 s with {args.taskdefs} Ready", f"{cpu_idle:.1f} s", "< 10 s"
    )
    table.add_row(f"operator RSS, {args.repeat} pools only", f"{rss_idle:.0f} MiB", "")
    table.add_row("operator RSS, all Ready", f"{rss_ready:.0f} MiB", "<= 150 MiB")
    table.add_row("operator RSS, 10 s later", f"{rss_later:.0f} MiB", "")
    Console().print(table)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
