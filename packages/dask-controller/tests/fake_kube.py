"""An in-memory stand-in for :class:`dask_controller.k8s.Kube`, for reconcile tests.

It keeps objects as wire-format dicts, assigns uids and creation timestamps, honours label
selectors, delete preconditions and 404/409 semantics like the API server, and records calls.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]


def _merge(into: Obj, patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        elif v is None:
            into.pop(k, None)
        else:
            into[k] = copy.deepcopy(v)


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.calls: list[tuple[str, str]] = []
        self._uids = itertools.count(1)
        self._clock = itertools.count(1)
        self.logs: dict[str, str] = {}

    # helpers for tests
    def add(self, kind: str, body: Obj) -> Obj:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", "ns1")
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{next(self._clock):02d}Z")
        body.setdefault("kind", kind)
        self.objects[(kind, meta["namespace"], meta["name"])] = body
        return body

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for (k, _, _), o in sorted(self.objects.items()) if k == kind]

    def names(self, kind: str) -> list[str]:
        return [o["metadata"]["name"] for o in self.of_kind(kind)]

    def set_pod_log(self, name: str, text: str) -> None:
        self.logs[name] = text

    def set_pod_state(self, name: str, phase: str = "Running", ready: bool = True) -> None:
        for (k, _, n), o in self.objects.items():
            if k == "Pod" and n == name:
                o["status"] = {
                    "phase": phase,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                }

    def _get(self, kind: str, ns: str, name: str) -> Obj | None:
        obj = self.objects.get((kind, ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    def _list(self, kind: str, ns: str, selector: Mapping[str, str]) -> list[Obj]:
        out = []
        for (k, n, _), o in sorted(self.objects.items()):
            labels = o["metadata"].get("labels") or {}
            if k == kind and n == ns and all(labels.get(a) == b for a, b in selector.items()):
                out.append(copy.deepcopy(o))
        return out

    def _create(self, kind: str, ns: str, body: Obj) -> bool:
        self.calls.append(("create", f"{kind}/{body['metadata']['name']}"))
        if (kind, ns, body["metadata"]["name"]) in self.objects:
            return False
        body = copy.deepcopy(body)
        if kind == "Pod":
            body.setdefault("status", {"phase": "Pending"})
        self.add(kind, body)
        return True

    # the KubeApi protocol
    async def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
        return self._list("Pod", namespace, selector)

    async def get_pod(self, namespace: str, name: str) -> Obj | None:
        return self._get("Pod", namespace, name)

    async def create_pod(self, namespace: str, body: Obj) -> bool:
        return self._create("Pod", namespace, body)

    async def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        self.calls.append(("delete", f"Pod/{name}"))
        obj = self.objects.get(("Pod", namespace, name))
        if obj is None or (uid is not None and obj["metadata"]["uid"] != uid):
            return False
        del self.objects[("Pod", namespace, name)]
        return True

    async def patch_pod_metadata(
        self, namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None:
        obj = self.objects.get(("Pod", namespace, name))
        if obj is not None:
            self.calls.append(("patch", f"Pod/{name}"))
            _merge(obj, {"metadata": {"labels": labels, "annotations": annotations}})

    async def get_service(self, namespace: str, name: str) -> Obj | None:
        return self._get("Service", namespace, name)

    async def create_service(self, namespace: str, body: Obj) -> bool:
        return self._create("Service", namespace, body)

    async def patch_service_metadata(
        self, namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None:
        obj = self.objects.get(("Service", namespace, name))
        if obj is not None:
            self.calls.append(("patch", f"Service/{name}"))
            _merge(obj, {"metadata": {"labels": labels, "annotations": annotations}})

    async def patch_service(self, namespace: str, name: str, patch: Obj) -> None:
        obj = self.objects.get(("Service", namespace, name))
        if obj is not None:
            self.calls.append(("patch", f"Service/{name}"))
            _merge(obj, patch)

    async def get_custom(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._get(kind, namespace, name)

    async def list_custom(
        self, kind: str, namespace: str, selector: Mapping[str, str]
    ) -> list[Obj]:
        return self._list(kind, namespace, selector)

    async def create_custom(self, kind: str, namespace: str, body: Obj) -> bool:
        return self._create(kind, namespace, body)

    async def patch_custom(self, kind: str, namespace: str, name: str, patch: Obj) -> bool:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return False
        self.calls.append(("patch", f"{kind}/{name}"))
        _merge(obj, patch)
        return True

    async def patch_custom_status(self, kind: str, namespace: str, name: str, status: Obj) -> bool:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return False
        self.calls.append(("status", f"{kind}/{name}"))
        obj["status"] = copy.deepcopy(status)
        return True

    async def delete_custom(
        self, kind: str, namespace: str, name: str, uid: str | None = None
    ) -> bool:
        self.calls.append(("delete", f"{kind}/{name}"))
        obj = self.objects.get((kind, namespace, name))
        if obj is None or (uid is not None and obj["metadata"]["uid"] != uid):
            return False
        del self.objects[(kind, namespace, name)]
        return True

    async def read_pod_log(
        self, namespace: str, name: str, tail_lines: int | None = None
    ) -> str | None:
        if ("Pod", namespace, name) not in self.objects:
            return None
        text = self.logs.get(name)
        if text is None or tail_lines is None:
            return text
        return "\n".join(text.splitlines()[-tail_lines:])
