"""The scheduler adapter against a real in-process ``distributed`` scheduler on 127.0.0.1."""

from __future__ import annotations

import ast
import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import dask
import pytest
from distributed import Client as _Client
from distributed import Scheduler, Worker

from dask_controller.builders import SCHEDULER_HTTP_ROUTES, SCHEDULER_PRELOAD_SOURCE
from dask_controller.scheduler import DemandUnavailable, SchedulerClient, SchedulerUnavailable

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


# -- the operator's scheduler preload (per-resource demand) -------------------------------------


async def _start_with_preload(preload: list[str]) -> Running:
    config = {"distributed.scheduler.http.routes": SCHEDULER_HTTP_ROUTES}
    with dask.config.set(config):
        scheduler = await Scheduler(
            host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0", preload=preload
        )
    plain = await Worker(
        scheduler.address, name="c-default-worker-a", host="127.0.0.1", nthreads=2,
        dashboard=False,
    )  # fmt: skip
    return Running(scheduler, {"c-default-worker-a": plain})


@pytest.mark.parametrize("use_http", [True, False], ids=["http", "rpc-only"])
async def test_preload_serves_demand_by_requested_resource(use_http: bool) -> None:
    """The preload *text* the builders inject, run by a real scheduler: GPU tasks wait for a
    worker (none offers GPU), plain tasks run on the plain worker."""
    running = await _start_with_preload([SCHEDULER_PRELOAD_SOURCE])
    try:
        async with Client(running.scheduler.address, asynchronous=True) as client:
            _RELEASE.clear()
            gpu = client.map(_blocked, range(3), resources={"GPU": 1}, pure=False)
            plain = client.map(_blocked, range(2), pure=False)

            def processing() -> int:
                return sum(len(ws.processing) for ws in running.scheduler.workers.values())

            await _until(lambda: len(running.scheduler.unrunnable) == 3 and processing() == 2)
            url = running.http_url if use_http else None
            async with SchedulerClient(running.scheduler.address, url, timeout=5) as s:
                snap = await s.demand()
            _RELEASE.set()
            await client.gather(plain)
            del gpu
    finally:
        await _stop(running)
    assert snap.target_duration == 5.0
    assert [(w.request, w.tasks) for w in snap.waiting] == [((("GPU", 1.0),), 3)]
    assert snap.waiting[0].seconds > 0
    [worker] = snap.workers
    assert (worker.name, worker.nthreads, worker.offers) == ("c-default-worker-a", 2, ())
    assert [(w.request, w.tasks) for w in worker.processing] == [((), 2)]
    assert worker.memory_limit > 0


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``check`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in itertools.count():
        if check():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


#: The in-process worker's tasks block on this until the test has looked.
_RELEASE = threading.Event()


def _blocked(i: int) -> int:
    _RELEASE.wait(30)
    return i


@pytest.mark.parametrize("use_http", [True, False], ids=["http", "rpc-only"])
async def test_scheduler_without_preload_has_no_demand(cluster: Running, use_http: bool) -> None:
    url = cluster.http_url if use_http else None
    async with SchedulerClient(cluster.scheduler.address, url, timeout=5) as s:
        with pytest.raises(DemandUnavailable, match="404" if use_http else "no 'dask_operator"):
            await s.demand()
        # a 404 on the demand route says nothing about the rest of the HTTP API
        assert s.http_api is (None if use_http else False)
        assert await s.adaptive_target() >= 0


def test_preload_imports_only_what_every_scheduler_image_has() -> None:
    """The preload runs as text inside images that have distributed and nothing of ours."""
    allowed = {"__future__", "collections", "itertools", "json", "logging", "typing"}
    allowed |= {"dask", "distributed", "tornado"}
    tree = ast.parse(SCHEDULER_PRELOAD_SOURCE)
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= allowed, imported - allowed


def test_preload_never_breaks_the_scheduler(caplog: pytest.LogCaptureFixture) -> None:
    """A scheduler unlike the one the summary expects still starts, and the operator is told."""
    from dask_controller import scheduler_preload as sp

    sp.dask_setup(object())  # no handlers, no HTTP application: logged, not raised
    assert "demand summary not served" in caplog.text
    answer = sp.answer(object())
    assert answer["version"] == sp.VERSION
    assert "AttributeError" in answer["error"]


@pytest.mark.parametrize(
    ("body", "permanent"),
    [
        ({"version": 1, "error": "AttributeError: no queued"}, False),  # may pass
        ({"version": 0, "waiting": []}, True),  # a scheduler of another operator release
        ({"version": 1, "waiting": "?"}, False),
    ],
)
def test_useless_demand_answers_are_typed(body: dict[str, Any], permanent: bool) -> None:
    with pytest.raises(DemandUnavailable) as info:
        SchedulerClient._snapshot(body)
    assert info.value.permanent is permanent


async def test_preload_samples_long_queues_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past SCAN tasks the summary samples the whole queue: GPU tasks submitted after many
    plain ones are still seen, in proportion. The scheduler has no workers; the plain tasks are
    pinned to an absent worker so that they wait among the unrunnable, not in the queue."""
    from dask_controller import scheduler_preload as sp

    monkeypatch.setattr(sp, "SCAN", 40)
    scheduler = await Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0")
    try:
        async with Client(scheduler.address, asynchronous=True) as client:
            absent = ["tcp://127.0.0.1:9"]
            plain = client.map(_blocked, range(300), pure=False, workers=absent)
            gpu = client.map(_blocked, range(300, 400), resources={"GPU": 1}, pure=False)
            await _until(lambda: len(scheduler.unrunnable) == 400)
            waiting = {tuple(w["resources"]): w["tasks"] for w in sp.demand(scheduler)["waiting"]}
            del plain, gpu
    finally:
        await scheduler.close()
    assert sum(waiting.values()) == 400
    assert 50 <= waiting[("GPU",)] <= 150, waiting
