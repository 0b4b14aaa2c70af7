"""A thin, typed wrapper over the Kubernetes REST API, speaking plain dicts.

The handlers need a dozen calls (read and patch a Deployment, list pods, read a Secret,
patch a status with a resourceVersion precondition, a Lease); raw paths keep each call
explicit about its patch type, and :class:`KubeApi` is the protocol the unit tests fake.
The ``kubernetes`` package is used only for its configuration loading and HTTP client.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from kubenenc_operator.models import API_VERSION

MERGE = "application/merge-patch+json"


class KubeError(RuntimeError):
    """An API call answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: Any) -> None:
        self.status = status
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{method} {path}: {status} {message}")


class KubeApi(Protocol):
    """What the reconcilers need from Kubernetes."""

    def get(self, path: str) -> dict[str, Any] | None:
        """GET ``path``; None on 404."""
        ...

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to the collection ``path``."""
        ...

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch of ``path``; a ``metadata.resourceVersion`` in ``body`` is a
        precondition (409 when the object changed)."""
        ...

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace ``path`` (optimistic: ``body`` carries the resourceVersion read)."""
        ...

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Items of the collection ``path``."""
        ...


def custom_path(namespace: str, plural: str, name: str | None = None, sub: str = "") -> str:
    """Path of a kubenenc custom resource (or its collection, or a subresource)."""
    path = f"/apis/{API_VERSION}/namespaces/{quote(namespace)}/{plural}"
    if name is not None:
        path += f"/{quote(name)}"
    return path + (f"/{sub}" if sub else "")


def deployment_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments"
    return path + (f"/{quote(name)}" if name else "")


def pods_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/pods"
    return path + (f"/{quote(name)}" if name else "")


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"


def lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
    return path + (f"/{quote(name)}" if name else "")


def secret_value(secret: dict[str, Any], key: str) -> str | None:
    """The decoded ``data[key]`` of a Secret (or ``stringData``), or None."""
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    value = (secret.get("stringData") or {}).get(key)
    return str(value) if value is not None else None


def load_api_client() -> k8s_client.ApiClient:
    """In a pod: the service account; elsewhere: ``$KUBECONFIG`` or ``~/.kube/config``."""
    configuration = k8s_client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return k8s_client.ApiClient(configuration)


class Kube:
    """:class:`KubeApi` over a ``kubernetes.client.ApiClient``."""

    def __init__(self, api: k8s_client.ApiClient, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One call; returns (status, decoded JSON body) and never raises on 4xx/5xx."""
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, data, _ = self.api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(
            method, url, header_params=headers, body=data, _request_timeout=self.timeout
        )
        response.read()  # type: ignore[no-untyped-call]
        raw = response.data or b"{}"
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = {"message": raw.decode(errors="replace")}
        return response.status, decoded

    def _ok(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        status, data = self.request(method, path, body, **kw)
        if status >= 300:
            raise KubeError(status, method, path, data)
        return data  # type: ignore[no-any-return]

    def get(self, path: str) -> dict[str, Any] | None:
        status, data = self.request("GET", path)
        if status == 404:
            return None
        if status >= 300:
            raise KubeError(status, "GET", path, data)
        return data  # type: ignore[no-any-return]

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._ok("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._ok("PATCH", path, body, content_type=MERGE)

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._ok("PUT", path, body)

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        return list(self._ok("GET", path, query=query).get("items") or [])
