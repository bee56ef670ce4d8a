"""An in-memory stand-in for :class:`dask_kubecluster.kube.Kube` and a tiny fake operator.

It lets the unit tests drive ``KubeCluster`` through its whole life (create, wait, connect,
scale, adapt, worker groups, logs, close) against a real local Dask scheduler, with no
Kubernetes. Port-forward streams are bridged to the scheduler's TCP port, speaking the same
channel protocol as the Kubernetes API.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from dataclasses import dataclass, field
from types import SimpleNamespace, TracebackType
from typing import Any

from dask_kubecluster.errors import crd_missing_error

READY_STATUS: dict[str, Any] = {
    "phase": "Running",
    "hostIP": "10.0.0.5",
    "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
}


@dataclass
class World:
    """What the fake API server holds, and how the fake operator behaves."""

    crds: bool = True
    operator: bool = True
    #: scheduler pod status the fake operator creates (default: running and ready).
    scheduler_status: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(READY_STATUS))
    #: where port-forward streams go: (host, port) of the real scheduler.
    scheduler_tcp: tuple[str, int] | None = None
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    autoscalers: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    connections: int = 0
    forwards: list[tuple[str, int]] = field(default_factory=list)

    def operate(self, cluster: dict[str, Any]) -> None:
        """What the operator would do for a new DaskCluster."""
        if not self.operator:
            return
        name = cluster["metadata"]["name"]
        cluster["status"] = {"phase": "Running"}
        self.groups[f"{name}-default"] = {
            "metadata": {"name": f"{name}-default", "labels": {"dask.org/cluster-name": name}},
            "spec": {"cluster": name, "worker": copy.deepcopy(cluster["spec"]["worker"])},
        }
        self.pods[f"{name}-scheduler"] = {
            "metadata": {
                "name": f"{name}-scheduler",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"dask.org/cluster-name": name, "dask.org/component": "scheduler"},
            },
            "spec": copy.deepcopy(cluster["spec"]["scheduler"]["spec"]),
            "status": copy.deepcopy(self.scheduler_status),
        }
        self.pods[f"{name}-default-worker-abc"] = {
            "metadata": {
                "name": f"{name}-default-worker-abc",
                "labels": {"dask.org/cluster-name": name, "dask.org/component": "worker"},
            },
            "spec": {},
            "status": {"phase": "Running"},
        }
        self.logs[f"{name}-scheduler"] = "distributed.scheduler - INFO - Scheduler at: tcp://x"
        self.logs[f"{name}-default-worker-abc"] = "distributed.worker - INFO - Start worker"


class FakeKube:
    def __init__(self, world: World, namespace: str) -> None:
        self.world = world
        self.namespace = namespace
        self.in_cluster = False
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    async def check_crds(self) -> None:
        if not self.world.crds:
            raise crd_missing_error("kubernetes.dask.org")

    # custom resources
    async def get_cluster(self, name: str) -> dict[str, Any] | None:
        obj = self.world.clusters.get(name)
        return copy.deepcopy(obj) if obj else None

    async def create_cluster(self, body: dict[str, Any]) -> dict[str, Any]:
        self.world.calls.append("create_cluster")
        obj = copy.deepcopy(body)
        self.world.clusters[obj["metadata"]["name"]] = obj
        self.world.operate(obj)
        return obj

    async def patch_cluster(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.world.calls.append(f"patch_cluster {patch}")
        replicas = patch["spec"]["worker"]["replicas"]
        self.world.clusters[name]["spec"]["worker"]["replicas"] = replicas
        return self.world.clusters[name]

    async def delete_cluster(self, name: str) -> bool:
        self.world.calls.append("delete_cluster")
        if self.world.clusters.pop(name, None) is None:
            return False
        for store in (self.world.groups, self.world.autoscalers, self.world.pods):
            for key in [k for k in store if k.startswith(name)]:
                del store[key]
        return True

    async def get_worker_group(self, name: str) -> dict[str, Any] | None:
        return self.world.groups.get(name)

    async def list_worker_groups(self, cluster: str) -> list[dict[str, Any]]:
        return [g for g in self.world.groups.values() if g["spec"]["cluster"] == cluster]

    async def create_worker_group(self, body: dict[str, Any]) -> dict[str, Any]:
        self.world.groups[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    async def scale_worker_group(self, name: str, replicas: int) -> dict[str, Any]:
        self.world.groups[name]["spec"]["worker"]["replicas"] = replicas
        return self.world.groups[name]

    async def delete_worker_group(self, name: str) -> bool:
        return self.world.groups.pop(name, None) is not None

    async def get_autoscaler(self, name: str) -> dict[str, Any] | None:
        return self.world.autoscalers.get(name)

    async def apply_autoscaler(self, body: dict[str, Any]) -> dict[str, Any]:
        self.world.autoscalers[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    async def delete_autoscaler(self, name: str) -> bool:
        return self.world.autoscalers.pop(name, None) is not None

    # core
    async def scheduler_pod(self, cluster: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.world.pods.get(f"{cluster}-scheduler"))

    async def list_pods(self, cluster: str, component: str | None = None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(p)
            for p in self.world.pods.values()
            if p["metadata"]["labels"]["dask.org/cluster-name"] == cluster
            and (component is None or p["metadata"]["labels"]["dask.org/component"] == component)
        ]

    async def scheduler_service(self, cluster: str) -> dict[str, Any] | None:
        obj = self.world.clusters.get(cluster)
        if obj is None or not self.world.operator:
            return None
        return {
            "metadata": {"name": f"{cluster}-scheduler"},
            "spec": copy.deepcopy(obj["spec"]["scheduler"]["service"]),
        }

    async def pod_log(
        self, pod: str, container: str | None = None, tail_lines: int | None = None
    ) -> str:
        return self.world.logs.get(pod, "")

    async def previous_log_tail(self, pod: str, container: str, lines: int = 30) -> str:
        return "\n".join(self.world.logs.get(pod, "").splitlines()[-lines:])

    async def open_port_forward(self, pod: str, port: int) -> Bridge:
        self.world.forwards.append((pod, port))
        assert self.world.scheduler_tcp is not None
        return Bridge(*self.world.scheduler_tcp)


class Bridge:
    """A port-forward websocket whose far end is a local TCP port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._headers = [bytes([0, 0x52, 0x22]), bytes([1, 0x52, 0x22])]

    async def __aenter__(self) -> Bridge:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def send_bytes(self, data: bytes) -> None:
        assert self._writer is not None
        assert data[0] == 0
        self._writer.write(data[1:])
        await self._writer.drain()

    def __aiter__(self) -> Bridge:
        return self

    async def __anext__(self) -> Any:
        if self._headers:
            return SimpleNamespace(data=self._headers.pop(0))
        assert self._reader is not None
        data = await self._reader.read(65536)
        if not data:
            raise StopAsyncIteration
        return SimpleNamespace(data=bytes([0]) + data)
