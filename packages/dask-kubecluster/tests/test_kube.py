"""The API module against a small local HTTP/websocket server speaking the Kubernetes wire format.

This checks what the in-memory fake cannot: the requests kubernetes_asyncio really sends (paths,
merge-patch content type, the port-forward websocket and its query), and how API errors are
translated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from kubernetes_asyncio import client
from kubernetes_asyncio.stream import WsApiClient

from dask_kubecluster.errors import CRDNotInstalledError, PermissionDeniedError
from dask_kubecluster.kube import Kube
from dask_kubecluster.portforward import PortForward

NS = "ns"
BASE = "/apis/kubernetes.dask.org/v1"


class FakeAPI:
    def __init__(self) -> None:
        self.crds = True
        self.forbidden = False
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.ws_queries: list[dict[str, str]] = []
        self.ws_protocols: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(BASE, self.discovery)
        app.router.add_route("*", BASE + "/namespaces/{ns}/{plural}/{name}", self.object)
        app.router.add_post(BASE + "/namespaces/{ns}/{plural}", self.create)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/portforward", self.portforward)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/log", self.log)
        return app

    def _status(self, code: int, reason: str, message: str) -> web.Response:
        body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message}
        return web.json_response(body, status=code)

    async def discovery(self, request: web.Request) -> web.Response:
        if not self.crds:
            return web.Response(status=404, text="404 page not found")
        resources = [
            {"name": p, "namespaced": True, "kind": k, "verbs": ["get"], "singularName": ""}
            for p, k in (("daskclusters", "DaskCluster"), ("daskworkergroups", "DaskWorkerGroup"))
        ]
        group_version = "kubernetes.dask.org/v1"
        return web.json_response(
            {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}
        )

    async def create(self, request: web.Request) -> web.Response:
        if self.forbidden:
            message = 'daskclusters is forbidden: User "x" cannot create'
            return self._status(403, "Forbidden", message)
        body = await request.json()
        self.objects[body["metadata"]["name"]] = body
        self.requests.append(("POST", request.path, request.content_type))
        return web.json_response(body, status=201)

    async def object(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append((request.method, request.path, request.content_type))
        if name not in self.objects:
            return self._status(404, "NotFound", f"{name} not found")
        if request.method == "PATCH":
            patch = await request.json()
            self.objects[name]["spec"]["worker"].update(patch["spec"]["worker"])
        if request.method == "DELETE":
            return web.json_response(self.objects.pop(name))
        return web.json_response(self.objects[name])

    async def log(self, request: web.Request) -> web.Response:
        return web.Response(text=f"log of {request.match_info['pod']}\n")

    async def portforward(self, request: web.Request) -> web.WebSocketResponse:
        self.ws_queries.append(dict(request.query))
        self.ws_protocols.append(request.headers.get("Sec-WebSocket-Protocol", ""))
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        port = int(request.query["ports"]).to_bytes(2, "little")
        await ws.send_bytes(b"\x00" + port)
        await ws.send_bytes(b"\x01" + port)
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                break
            assert msg.data[0] == 0
            await ws.send_bytes(b"\x00" + request.match_info["pod"].encode() + b">" + msg.data[1:])
        return ws


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeAPI, Kube]]:
    fake = FakeAPI()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cfg = client.Configuration(host=f"http://127.0.0.1:{port}")
    kube = Kube(client.ApiClient(cfg), WsApiClient(cfg), NS, in_cluster=False)
    try:
        yield fake, kube
    finally:
        await kube.close()
        await runner.cleanup()


def _cluster() -> dict[str, Any]:
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": {"name": "foo"},
        "spec": {"worker": {"replicas": 1}},
    }


async def test_crd_discovery(api: tuple[FakeAPI, Kube]) -> None:
    fake, kube = api
    await kube.check_crds()
    fake.crds = False
    with pytest.raises(CRDNotInstalledError, match="CRD is not installed"):
        await kube.check_crds()


async def test_create_get_patch_delete(api: tuple[FakeAPI, Kube]) -> None:
    fake, kube = api
    assert await kube.get_cluster("foo") is None
    await kube.create_cluster(_cluster())
    assert (await kube.get_cluster("foo") or {})["metadata"]["name"] == "foo"
    await kube.patch_cluster("foo", {"spec": {"worker": {"replicas": 4}}})
    assert fake.objects["foo"]["spec"]["worker"]["replicas"] == 4
    patch = [r for r in fake.requests if r[0] == "PATCH"]
    path = f"{BASE}/namespaces/ns/daskclusters/foo"
    assert patch == [("PATCH", path, "application/merge-patch+json")]
    assert await kube.delete_cluster("foo") is True
    assert await kube.delete_cluster("foo") is False


async def test_forbidden_is_a_permission_error(api: tuple[FakeAPI, Kube]) -> None:
    fake, kube = api
    fake.forbidden = True
    with pytest.raises(PermissionDeniedError, match="cannot create"):
        await kube.create_cluster(_cluster())


async def test_pod_log(api: tuple[FakeAPI, Kube]) -> None:
    _, kube = api
    assert await kube.pod_log("foo-scheduler") == "log of foo-scheduler\n"


async def test_port_forward_over_the_api_websocket(api: tuple[FakeAPI, Kube]) -> None:
    fake, kube = api

    async def resolve() -> str:
        return "foo-scheduler"

    async def opener(pod: str) -> Any:
        return await kube.open_port_forward(pod, 8786)

    forward = PortForward(opener, resolve, 8786)
    port = await forward.start()
    try:
        for payload in (b"first", b"second"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            await writer.drain()
            expected = b"foo-scheduler>" + payload
            assert await reader.readexactly(len(expected)) == expected
            writer.close()
            await writer.wait_closed()
    finally:
        await forward.stop()
    assert fake.ws_queries == [{"ports": "8786"}, {"ports": "8786"}]
    assert fake.ws_protocols == ["v4.channel.k8s.io", "v4.channel.k8s.io"]
