"""A small in-memory stand-in for the Kubernetes API, for the operator's unit tests.

It implements :class:`kubenenc_operator.kube.KubeApi` over a dict of objects by path, with
the one behaviour the reconcilers rely on: a merge patch carrying
``metadata.resourceVersion`` fails with 409 when the object has moved on. The control-plane
tests (tests/operator/test_cluster.py) check the same reconcilers against a real API server.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from kubenenc_operator.kube import KubeError


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKube:
    """Objects by path; ``calls`` records every write as (verb, path)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._versions = itertools.count(1)

    def put_object(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        self.objects[path] = obj
        return obj

    def get(self, path: str) -> dict[str, Any] | None:
        found = self.objects.get(path.removesuffix("/status"))
        return copy.deepcopy(found) if found is not None else None

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", path))
        meta = body.get("metadata", {})
        name = meta.get("name") or f"{meta.get('generateName', 'x')}{len(self.objects)}"
        full = f"{path}/{name}"
        if full in self.objects:
            raise KubeError(409, "POST", path, {"message": "already exists"})
        return self.put_object(full, body)

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", path))
        key = path.removesuffix("/status")
        if key not in self.objects:
            raise KubeError(404, "PATCH", path, {"message": "not found"})
        want = body.get("metadata", {}).get("resourceVersion")
        if want is not None and want != self.objects[key]["metadata"]["resourceVersion"]:
            raise KubeError(409, "PATCH", path, {"message": "the object has been modified"})
        body = copy.deepcopy(body)
        body.get("metadata", {}).pop("resourceVersion", None)
        return self.put_object(key, merge(self.objects[key], body))

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("put", path))
        have = self.objects.get(path)
        if (
            have is not None
            and body["metadata"].get("resourceVersion") != have["metadata"]["resourceVersion"]
        ):
            raise KubeError(409, "PUT", path, {"message": "the object has been modified"})
        return self.put_object(path, body)

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        items = []
        for key, obj in self.objects.items():
            if key.rpartition("/")[0] != path:
                continue
            if label_selector:
                k, _, v = label_selector.partition("=")
                if obj.get("metadata", {}).get("labels", {}).get(k) != v:
                    continue
            items.append(copy.deepcopy(obj))
        return items

    def events(self) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o.get("kind") == "Event"]
