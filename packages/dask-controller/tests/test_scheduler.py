"""The scheduler adapter against a real in-process ``distributed`` scheduler on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import dask
import pytest
from distributed import Client as _Client
from distributed import Scheduler, Worker

from dask_controller.builders import SCHEDULER_HTTP_ROUTES
from dask_controller.scheduler import SchedulerClient, SchedulerUnavailable

Client: Any = _Client  # untyped in distributed

pytestmark = pytest.mark.timeout(60)

DEFAULT_ROUTES = [r for r in SCHEDULER_HTTP_ROUTES if r != "distributed.http.scheduler.api"]


@dataclass
class Running:
    scheduler: Scheduler
    workers: dict[str, Worker]

    @property
    def http_url(self) -> str:
        server: Any = self.scheduler.http_server
        return f"http://127.0.0.1:{server.port}"


async def _start(names: list[str], routes: list[str]) -> Running:
    with dask.config.set({"distributed.scheduler.http.routes": routes}):
        scheduler = await Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0")
    workers = {}
    for name in names:
        workers[name] = await Worker(
            scheduler.address, name=name, host="127.0.0.1", nthreads=1, dashboard=False
        )
    return Running(scheduler, workers)


async def _stop(running: Running) -> None:
    for w in running.workers.values():
        await w.close()
    await running.scheduler.close()


@pytest.fixture
async def cluster() -> AsyncIterator[Running]:
    running = await _start(
        ["c-default-worker-a", "c-default-worker-b", "c-big-worker-c"], SCHEDULER_HTTP_ROUTES
    )
    yield running
    await _stop(running)


@pytest.fixture
async def cluster_without_api() -> AsyncIterator[Running]:
    running = await _start(["c-default-worker-a", "c-default-worker-b"], DEFAULT_ROUTES)
    yield running
    await _stop(running)


@pytest.mark.parametrize("use_http", [True, False], ids=["http", "rpc-only"])
async def test_get_workers_maps_names_to_addresses(cluster: Running, use_http: bool) -> None:
    url = cluster.http_url if use_http else None
    async with SchedulerClient(cluster.scheduler.address, url, timeout=5) as s:
        workers = await s.get_workers()
        assert s.http_api is use_http
    assert {w.name: w.address for w in workers} == {
        name: w.address for name, w in cluster.workers.items()
    }


async def test_http_404_falls_back_to_rpc(cluster_without_api: Running) -> None:
    running = cluster_without_api
    async with SchedulerClient(running.scheduler.address, running.http_url, timeout=5) as s:
        workers = await s.get_workers()
        assert s.http_api is False  # capability detected, remembered
        assert sorted(w.name for w in workers) == sorted(running.workers)
        result = await s.retire_workers(["c-default-worker-a"])
    assert result.via == "rpc"
    assert result.retired == ("c-default-worker-a",)


async def test_workers_to_close_only_ranks_the_given_group(cluster: Running) -> None:
    group = ["c-default-worker-a", "c-default-worker-b"]
    async with Client(cluster.scheduler.address, asynchronous=True) as client:
        # Data on worker b makes worker a the cheaper one to retire.
        [fut] = await client.scatter(
            [list(range(10_000))], workers=[cluster.workers[group[1]].address]
        )
        async with SchedulerClient(cluster.scheduler.address, cluster.http_url, timeout=5) as s:
            assert await s.workers_to_close(1, group) == ["c-default-worker-a"]
            assert sorted(await s.workers_to_close(5, group) or []) == group
            assert await s.workers_to_close(0, group) == []
            assert await s.workers_to_close(2, ["someone-else"]) == []
        del fut


@pytest.mark.parametrize("use_http", [True, False], ids=["http", "rpc-only"])
async def test_retire_moves_data_and_removes_only_named_worker(
    cluster: Running, use_http: bool
) -> None:
    victim = "c-default-worker-b"
    async with Client(cluster.scheduler.address, asynchronous=True) as client:
        [fut] = await client.scatter([{"payload": 42}], workers=[cluster.workers[victim].address])
        url = cluster.http_url if use_http else None
        async with SchedulerClient(cluster.scheduler.address, url, timeout=10) as s:
            result = await s.retire_workers([victim])
            assert result.retired == (victim,)
            assert result.via == ("http" if use_http else "rpc")
            remaining = {w.name for w in await s.get_workers()}
        assert victim not in remaining
        assert remaining == {"c-default-worker-a", "c-big-worker-c"}
        assert await fut.result() == {"payload": 42}  # the data survived the retirement


async def test_retire_unknown_name_retires_nothing(cluster: Running) -> None:
    async with SchedulerClient(cluster.scheduler.address, cluster.http_url, timeout=5) as s:
        assert (await s.retire_workers(["never-connected"])).retired == ()
        assert (await s.retire_workers([])).retired == ()
        assert len(await s.get_workers()) == 3


async def test_adaptive_target_both_transports(cluster: Running) -> None:
    async with SchedulerClient(cluster.scheduler.address, cluster.http_url, timeout=5) as s:
        via_http = await s.adaptive_target()
    async with SchedulerClient(cluster.scheduler.address, None, timeout=5) as s:
        via_rpc = await s.adaptive_target()
    assert via_http == via_rpc
    assert via_http >= 0


async def test_unreachable_scheduler_is_a_typed_error() -> None:
    # Nothing listens on port 1 of the loopback address.
    async with SchedulerClient("tcp://127.0.0.1:1", "http://127.0.0.1:1", timeout=0.5) as s:
        with pytest.raises(SchedulerUnavailable, match="get_workers"):
            await s.get_workers()
        with pytest.raises(SchedulerUnavailable):
            await s.retire_workers(["x"])
        with pytest.raises(SchedulerUnavailable):
            await s.adaptive_target()
        assert await s.workers_to_close(1, ["x"]) is None


async def test_timeout_on_a_silent_server() -> None:
    """A server that accepts connections and never answers must not hang the operator."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with SchedulerClient(
            f"tcp://127.0.0.1:{port}", f"http://127.0.0.1:{port}", timeout=0.5
        ) as s:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(SchedulerUnavailable):
                await s.get_workers()
            assert loop.time() - start < 5
    finally:
        server.close()
        await server.wait_closed()
