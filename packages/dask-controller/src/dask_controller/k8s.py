"""The one module of the operator that talks to the Kubernetes API (kubernetes_asyncio).

Objects go in and come out as plain dicts in wire format (camelCase). Creating something that
exists and deleting something that is gone are not errors (409/404 are handled here), so the
reconcile functions can be re-run at any time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any, Protocol

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from dask_crds.constants import GROUP, PLURALS, VERSION
from dask_crds.labels import selector as _selector

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


async def load_config(kubeconfig: str | None = None) -> None:
    """Load credentials: in-cluster service account first, then a kubeconfig file."""
    if kubeconfig is None:
        try:
            incluster: Any = config.load_incluster_config
            incluster()
            return
        except config.ConfigException:
            pass
    await config.load_kube_config(config_file=kubeconfig)


async def _json(call: Awaitable[Any]) -> Obj:
    """Await a ``_preload_content=False`` call; its JSON body, or ``ApiException`` on an error.

    Without preloading, kubernetes_asyncio hands back error responses instead of raising.
    """
    resp = await call
    data = await resp.read()
    if resp.status >= 400:
        exc = ApiException(status=resp.status, reason=resp.reason)
        exc.body = data.decode(errors="replace")
        raise exc
    result: Obj = json.loads(data) if data else {}
    return result


async def _json_unless(call: Awaitable[Any], *statuses: int) -> Obj | None:
    """Like :func:`_json`, but ``None`` when the API answers one of ``statuses`` (404: gone,
    409: exists or changed) — the outcomes a level-triggered pass simply takes as they are."""
    try:
        return await _json(call)
    except ApiException as exc:
        if exc.status in statuses:
            return None
        raise


class KubeApi(Protocol):
    """The calls the reconcile functions make (implemented by :class:`Kube`; faked in tests)."""

    async def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]: ...
    async def get_pod(self, namespace: str, name: str) -> Obj | None: ...
    async def create_pod(self, namespace: str, body: Obj) -> bool: ...
    async def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool: ...
    async def patch_pod_metadata(
        self, namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None: ...
    async def get_service(self, namespace: str, name: str) -> Obj | None: ...
    async def create_service(self, namespace: str, body: Obj) -> bool: ...
    async def patch_service_metadata(
        self, namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None: ...
    async def patch_service(self, namespace: str, name: str, patch: Obj) -> None: ...
    async def get_custom(self, kind: str, namespace: str, name: str) -> Obj | None: ...
    async def list_custom(
        self, kind: str, namespace: str, selector: Mapping[str, str]
    ) -> list[Obj]: ...
    async def create_custom(self, kind: str, namespace: str, body: Obj) -> bool: ...
    async def patch_custom(self, kind: str, namespace: str, name: str, patch: Obj) -> bool: ...
    async def patch_custom_status(
        self, kind: str, namespace: str, name: str, status: Obj
    ) -> bool: ...
    async def delete_custom(
        self, kind: str, namespace: str, name: str, uid: str | None = None
    ) -> bool: ...
    async def read_pod_log(
        self, namespace: str, name: str, tail_lines: int | None = None
    ) -> str | None: ...


class Kube:
    """A thin async facade over the API calls the operator makes. ``async with Kube() as k:``."""

    def __init__(self) -> None:
        self._api_client = client.ApiClient()
        # Typed as Any: the generated client's stubs do not know dict bodies or ``_content_type``.
        self.core: Any = client.CoreV1Api(self._api_client)
        self.custom: Any = client.CustomObjectsApi(self._api_client)

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._api_client.close()

    # -- pods ------------------------------------------------------------------------------

    async def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
        resp = await _json(
            self.core.list_namespaced_pod(
                namespace, label_selector=_selector(selector), _preload_content=False
            )
        )
        items: list[Obj] = resp.get("items", [])
        return items

    async def get_pod(self, namespace: str, name: str) -> Obj | None:
        return await _json_unless(
            self.core.read_namespaced_pod(name, namespace, _preload_content=False), 404
        )

    async def create_pod(self, namespace: str, body: Obj) -> bool:
        """Create a pod; ``False`` if one of that name already exists."""
        call = self.core.create_namespaced_pod(namespace, body, _preload_content=False)
        return await _json_unless(call, 409) is not None

    async def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a pod (only the incarnation ``uid`` if given); ``False`` if already gone."""
        body: Obj = {"preconditions": {"uid": uid}} if uid else {}
        call = self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        return await _json_unless(call, 404, 409) is not None

    async def patch_pod_metadata(
        self, namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None:
        patch = {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}}
        await _json_unless(
            self.core.patch_namespaced_pod(
                name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False
            ),
            404,
        )

    async def read_pod_log(
        self, namespace: str, name: str, tail_lines: int | None = None
    ) -> str | None:
        """The log of a pod's first container (the last ``tail_lines``); ``None`` if the pod is
        gone or has no log yet."""
        resp = await self.core.read_namespaced_pod_log(
            name, namespace, tail_lines=tail_lines, _preload_content=False
        )
        data = await resp.read()
        if resp.status in (400, 404):  # 400: the container has not started
            return None
        if resp.status >= 400:
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = data.decode(errors="replace")
            raise exc
        text: str = data.decode(errors="replace")
        return text

    # -- services --------------------------------------------------------------------------

    async def get_service(self, namespace: str, name: str) -> Obj | None:
        return await _json_unless(
            self.core.read_namespaced_service(name, namespace, _preload_content=False), 404
        )

    async def create_service(self, namespace: str, body: Obj) -> bool:
        call = self.core.create_namespaced_service(namespace, body, _preload_content=False)
        return await _json_unless(call, 409) is not None

    async def patch_service_metadata(
        self, namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> None:
        patch = {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}}
        await self.patch_service(namespace, name, patch)

    async def patch_service(self, namespace: str, name: str, patch: Obj) -> None:
        """Merge-patch a Service (nothing if it is gone)."""
        await _json_unless(
            self.core.patch_namespaced_service(
                name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False
            ),
            404,
        )

    # -- custom resources ------------------------------------------------------------------

    async def get_custom(self, kind: str, namespace: str, name: str) -> Obj | None:
        return await _json_unless(
            self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, _plural(kind), name, _preload_content=False
            ),
            404,
        )

    async def list_custom(
        self, kind: str, namespace: str, selector: Mapping[str, str]
    ) -> list[Obj]:
        resp = await _json(
            self.custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                _plural(kind),
                label_selector=_selector(selector),
                _preload_content=False,
            )
        )
        items: list[Obj] = resp.get("items", [])
        return items

    async def create_custom(self, kind: str, namespace: str, body: Obj) -> bool:
        call = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, _plural(kind), body, _preload_content=False
        )
        return await _json_unless(call, 409) is not None

    async def patch_custom(self, kind: str, namespace: str, name: str, patch: Obj) -> bool:
        """Merge-patch a custom resource; ``False`` if it is gone."""
        call = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, _plural(kind), name, patch,
            _content_type=MERGE_PATCH, _preload_content=False,
        )  # fmt: skip
        return await _json_unless(call, 404) is not None

    async def patch_custom_status(self, kind: str, namespace: str, name: str, status: Obj) -> bool:
        """Merge-patch the status subresource; ``False`` if the object is gone."""
        call = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, _plural(kind), name, {"status": status},
            _content_type=MERGE_PATCH, _preload_content=False,
        )  # fmt: skip
        return await _json_unless(call, 404) is not None

    async def delete_custom(
        self, kind: str, namespace: str, name: str, uid: str | None = None
    ) -> bool:
        """Delete a custom resource in the background (its children go by garbage collection);
        only the incarnation ``uid`` if given. ``False`` if already gone."""
        body: Obj = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        call = self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, _plural(kind), name, body=body, _preload_content=False
        )
        return await _json_unless(call, 404, 409) is not None

    # -- kopf peering ----------------------------------------------------------------------

    async def ensure_kopf_peering(self, name: str, namespace: str | None) -> None:
        """Create kopf's peering object (a ClusterKopfPeering when ``namespace`` is None) unless
        it exists. A missing CRD is an error that says how to install it."""
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
        if namespace:
            call = self.custom.create_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", body, _preload_content=False
            )
        else:
            call = self.custom.create_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", body, _preload_content=False
            )
        try:
            await _json_unless(call, 409)
        except ApiException as exc:
            if exc.status == 403:  # not ours to create; an administrator may have made it
                logger.warning("cannot create %s %s (forbidden); assuming it exists", kind, name)
                return
            if exc.status == 404:
                raise PeeringUnavailable(
                    f"--peering {name}: the {kind} CRD (group kopf.dev) is not installed; "
                    "install it with the Helm chart (peering.installCRDs=true) or run without "
                    "--peering"
                ) from exc
            raise


class PeeringUnavailable(RuntimeError):
    """kopf peering was asked for but cannot work here."""


def _plural(kind: str) -> str:
    for k, plural in PLURALS.items():
        if k == kind:
            return plural
    raise ValueError(f"unknown kind {kind!r}")
