"""Pytest fixtures for a real Kubernetes control plane (see tests/cluster/README.md).

Register from the root conftest with ``pytest_plugins = ["tests.cluster.fixtures"]``.

``control_plane`` (session scope) runs etcd, kube-apiserver (RBAC on), kube-controller-manager,
kube-scheduler and kwok with one fake node, and yields a :class:`Cluster`. When the binaries
are missing the tests that use it are skipped with the reason on a laptop, and fail when
``CI`` is set (to anything but ``""``, ``"false"`` or ``"0"``): CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from tests.cluster.controlplane import (
    BINARY_NAMES,
    ControlPlane,
    HttpResponse,
    MissingBinariesError,
    default_bin_dir,
    find_binaries,
)

__all__ = ["Cluster", "ci_is_set", "control_plane", "skip_or_fail"]


def ci_is_set() -> bool:
    """True when env ``CI`` is set to anything but empty, ``false`` or ``0``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "false", "0")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it when running under CI."""
    if ci_is_set():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@dataclass
class Cluster:
    """What the ``control_plane`` fixture yields.

    Attributes: ``kubeconfig`` (admin kubeconfig path), ``server_url``, ``admin_token``
    (a static token in ``system:masters``), ``ca_cert`` (CA that signed the server
    certificate), ``api_client`` (a ``kubernetes.client.ApiClient`` as admin), ``node_name``
    (the kwok node, Ready), ``bin_dir`` (where etcd, helm, ... live), ``plane`` (the
    underlying :class:`ControlPlane`, for logs and raw requests), ``tmp_dir`` (scratch space
    removed at session end).
    """

    plane: ControlPlane
    api_client: k8s_client.ApiClient
    bin_dir: Path
    tmp_dir: Path
    _clients: list[k8s_client.ApiClient] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig_path

    @property
    def server_url(self) -> str:
        return self.plane.server_url

    @property
    def admin_token(self) -> str:
        return self.plane.admin_token

    @property
    def ca_cert(self) -> Path:
        return self.plane.ca_cert_path

    @property
    def node_name(self) -> str:
        assert self.plane.node_name is not None
        return self.plane.node_name

    def service_account_token(self, namespace: str, name: str) -> str:
        """A TokenRequest token for ``namespace/name`` (both created if missing)."""
        return self.plane.service_account_token(namespace, name)

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig file that authenticates as ServiceAccount ``namespace/name``."""
        token = self.service_account_token(namespace, name)
        path = self.tmp_dir / f"sa-{namespace}-{name}.kubeconfig"
        return self.plane.write_kubeconfig(
            path, token=token, user=f"system:serviceaccount:{namespace}:{name}"
        )

    def api_client_for_kubeconfig(self, kubeconfig: Path) -> k8s_client.ApiClient:
        """A ``kubernetes`` ApiClient for ``kubeconfig``, closed at session end."""
        api = _new_api_client(kubeconfig)
        self._clients.append(api)
        return api

    def service_account_api_client(self, namespace: str, name: str) -> k8s_client.ApiClient:
        """A ``kubernetes`` ApiClient acting as ServiceAccount ``namespace/name``."""
        return self.api_client_for_kubeconfig(self.service_account_kubeconfig(namespace, name))

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> HttpResponse:
        """Raw API call (admin by default); returns status and JSON body, never raises on 4xx."""
        return self.plane.request(method, path, body, token=token)

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl`` against this server (admin kubeconfig by default).

        Uses the cached kubectl built with the server's version when present (no version
        skew), else the one on PATH.
        """
        cached = self.bin_dir / "kubectl"
        kubectl = str(cached) if os.access(cached, os.X_OK) else shutil.which("kubectl")
        if kubectl is None:
            skip_or_fail(f"kubectl is neither in {self.bin_dir} nor on PATH")
        return _run(
            [kubectl, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args], timeout, check
        )

    def helm(
        self, *args: str, kubeconfig: Path | None = None, timeout: float = 90, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached ``helm`` against this server, with private helm config/cache dirs."""
        try:
            helm = find_binaries(self.bin_dir, ("helm",))["helm"]
        except MissingBinariesError as exc:
            skip_or_fail(str(exc))
        helm_home = self.tmp_dir / "helm"
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }
        return _run(
            [str(helm), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            timeout,
            check,
            env,
        )

    def close(self) -> None:
        for api in [*self._clients, self.api_client]:
            api.close()  # type: ignore[no-untyped-call]
        self._clients.clear()


def _new_api_client(kubeconfig: Path) -> k8s_client.ApiClient:
    """A ``kubernetes`` ApiClient from a kubeconfig file (TLS verified against its CA)."""
    api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


def _run(
    argv: list[str], timeout: float, check: bool, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"command failed ({result.returncode}): {' '.join(argv)}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Cluster]:
    """A private etcd + kube-apiserver + controller manager + scheduler + kwok node.

    Startup takes well under 15 s with cached binaries; everything is stopped by pid and the
    temp directories removed at the end of the session.
    """
    bin_dir = default_bin_dir()
    try:
        find_binaries(bin_dir, BINARY_NAMES)
    except MissingBinariesError as exc:
        skip_or_fail(str(exc))
    plane = ControlPlane(
        bin_dir=bin_dir, with_controller_manager=True, with_scheduler=True, with_kwok=True
    )
    tmp_dir = Path(tempfile.mkdtemp(prefix="kubenenc-cluster-"))
    try:
        with plane:
            api = _new_api_client(plane.kubeconfig_path)
            cluster = Cluster(plane=plane, api_client=api, bin_dir=bin_dir, tmp_dir=tmp_dir)
            try:
                yield cluster
            finally:
                cluster.close()
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
