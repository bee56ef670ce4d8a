"""The one module that talks to the Kubernetes API (kubernetes_asyncio).

Objects go in and come out as plain dicts in API shape (camelCase), so the pure modules never see
client model classes. API errors are translated into :mod:`dask_kubecluster.errors` types here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.stream import WsApiClient

from dask_crds import constants as c
from dask_crds import naming
from dask_crds.labels import selector
from dask_kubecluster import discovery
from dask_kubecluster.errors import PermissionDeniedError, crd_missing_error

_CLUSTERS = c.PLURALS["DaskCluster"]
_GROUPS = c.PLURALS["DaskWorkerGroup"]
_AUTOSCALERS = c.PLURALS["DaskAutoscaler"]


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _translate(exc: ApiException, what: str) -> Exception:
    if _status(exc) == 403:
        reason = ""
        try:
            reason = json.loads(exc.body or b"{}").get("message", "")
        except (TypeError, ValueError, AttributeError):
            reason = str(exc.body or "")
        return PermissionDeniedError(
            f"the Kubernetes API refused to {what}: {reason}. Your user or service account needs "
            "the Role described in docs/kubecluster.md#rbac"
        )
    return exc


class Kube:
    """Async access to the objects of one namespace. Create with :meth:`connect`."""

    def __init__(self, api: Any, ws_api: Any, namespace: str, in_cluster: bool) -> None:
        self._api = api
        self._ws_api = ws_api
        self.namespace = namespace
        self.in_cluster = in_cluster
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.ws_core = client.CoreV1Api(ws_api)

    @classmethod
    async def connect(
        cls, namespace: str, context: str | None = None, config_file: str | None = None
    ) -> Kube:
        """Load in-cluster credentials when in a pod, else the kubeconfig (``$KUBECONFIG``)."""
        cfg = client.Configuration()
        inside = discovery.in_cluster()
        if inside and context is None and config_file is None:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config_file = config_file or discovery.kubeconfig_env()
            await config.load_kube_config(
                config_file=config_file,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
        return cls(client.ApiClient(cfg), WsApiClient(cfg), namespace, inside)

    async def close(self) -> None:
        await self._api.close()
        await self._ws_api.close()

    def to_dict(self, obj: Any) -> dict[str, Any]:
        """A client model object as an API-shaped (camelCase) dict."""
        data = self._api.sanitize_for_serialization(obj)
        return data if isinstance(data, dict) else {}

    # ---------------------------------------------------------------- custom resources

    async def check_crds(self) -> None:
        """Raise CRDNotInstalledError when the API has no DaskCluster resource."""
        try:
            resources = await self.custom.get_api_resources(c.GROUP, c.VERSION)
        except ApiException as exc:
            if _status(exc) == 404:
                raise crd_missing_error(c.GROUP) from None
            raise _translate(exc, f"discover the {c.GROUP} API") from exc
        names = {r.name for r in (getattr(resources, "resources", None) or [])}
        if _CLUSTERS not in names:
            raise crd_missing_error(c.GROUP)

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, plural, name
            )
        except ApiException as exc:
            if _status(exc) == 404:
                return None
            raise _translate(exc, f"get {plural}/{name}") from exc
        return dict(obj)

    async def _create(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            obj = await self.custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, plural, dict(body)
            )
        except ApiException as exc:
            if _status(exc) == 404:
                raise crd_missing_error(c.GROUP) from None
            raise _translate(exc, f"create {plural}") from exc
        return dict(obj)

    async def _patch(self, plural: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        try:
            # A dict body would be sent as a JSON patch otherwise: ask for a merge patch.
            options: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
            obj = await self.custom.patch_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, plural, name, dict(patch), **options
            )
        except ApiException as exc:
            raise _translate(exc, f"patch {plural}/{name}") from exc
        return dict(obj)

    async def _delete(self, plural: str, name: str) -> bool:
        """Delete; False when it did not exist."""
        try:
            await self.custom.delete_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, plural, name
            )
        except ApiException as exc:
            if _status(exc) == 404:
                return False
            raise _translate(exc, f"delete {plural}/{name}") from exc
        return True

    async def get_cluster(self, name: str) -> dict[str, Any] | None:
        return await self._get(_CLUSTERS, name)

    async def create_cluster(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._create(_CLUSTERS, body)

    async def patch_cluster(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._patch(_CLUSTERS, name, patch)

    async def delete_cluster(self, name: str) -> bool:
        return await self._delete(_CLUSTERS, name)

    async def get_worker_group(self, name: str) -> dict[str, Any] | None:
        return await self._get(_GROUPS, name)

    async def list_worker_groups(self, cluster: str) -> list[dict[str, Any]]:
        try:
            result = await self.custom.list_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, _GROUPS,
                label_selector=selector({c.LABEL_CLUSTER: cluster}),
            )  # fmt: skip
        except ApiException as exc:
            raise _translate(exc, "list daskworkergroups") from exc
        items = [dict(i) for i in result.get("items", [])]
        # Groups created by hand may lack the label: match on spec.cluster too.
        try:
            everything = await self.custom.list_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, _GROUPS
            )
        except ApiException:
            return items
        names = {i["metadata"]["name"] for i in items}
        for item in everything.get("items", []):
            if (
                item.get("spec", {}).get("cluster") == cluster
                and item["metadata"]["name"] not in names
            ):
                items.append(dict(item))
        return items

    async def create_worker_group(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._create(_GROUPS, body)

    async def scale_worker_group(self, name: str, replicas: int) -> dict[str, Any]:
        return await self._patch(_GROUPS, name, {"spec": {"worker": {"replicas": replicas}}})

    async def delete_worker_group(self, name: str) -> bool:
        return await self._delete(_GROUPS, name)

    async def get_autoscaler(self, name: str) -> dict[str, Any] | None:
        return await self._get(_AUTOSCALERS, name)

    async def apply_autoscaler(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if await self.get_autoscaler(name) is None:
            return await self._create(_AUTOSCALERS, body)
        return await self._patch(_AUTOSCALERS, name, {"spec": body["spec"]})

    async def delete_autoscaler(self, name: str) -> bool:
        return await self._delete(_AUTOSCALERS, name)

    # ---------------------------------------------------------------- core objects

    async def scheduler_pod(self, cluster: str) -> dict[str, Any] | None:
        """The newest non-terminating scheduler pod of ``cluster``."""
        pods = await self.list_pods(cluster, component="scheduler")
        live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
        if not live:
            return None
        live.sort(key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")))
        return live[-1]

    async def list_pods(self, cluster: str, component: str | None = None) -> list[dict[str, Any]]:
        labels = {c.LABEL_CLUSTER: cluster}
        if component:
            labels[c.LABEL_COMPONENT] = component
        try:
            result = await self.core.list_namespaced_pod(
                self.namespace, label_selector=selector(labels)
            )
        except ApiException as exc:
            raise _translate(exc, "list pods") from exc
        return [self.to_dict(p) for p in result.items]

    async def scheduler_service(self, cluster: str) -> dict[str, Any] | None:
        try:
            svc = await self.core.read_namespaced_service(
                naming.scheduler_name(cluster), self.namespace
            )
        except ApiException as exc:
            if _status(exc) == 404:
                return None
            raise _translate(exc, "read the scheduler service") from exc
        return self.to_dict(svc)

    async def pod_log(
        self, pod: str, container: str | None = None, tail_lines: int | None = None
    ) -> str:
        kwargs: dict[str, Any] = {}
        if container:
            kwargs["container"] = container
        if tail_lines:
            kwargs["tail_lines"] = tail_lines
        try:
            text = await self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except ApiException as exc:
            if _status(exc) in (400, 404):  # container not started yet, pod gone
                return ""
            raise _translate(exc, f"read the log of pod {pod}") from exc
        return str(text)

    async def previous_log_tail(self, pod: str, container: str, lines: int = 30) -> str:
        """The end of the previous (crashed) container's log, else of the current one."""
        try:
            text = await self.core.read_namespaced_pod_log(
                pod, self.namespace, container=container, previous=True, tail_lines=lines
            )
            if text:
                return str(text).rstrip()
        except ApiException:
            pass
        return (await self.pod_log(pod, container, lines)).rstrip()

    async def open_port_forward(self, pod: str, port: int) -> Any:
        """A websocket (aiohttp) port-forward stream to ``port`` of ``pod``; an async CM."""
        return await self.ws_core.connect_get_namespaced_pod_portforward(
            pod, self.namespace, ports=port, _preload_content=False
        )
