"""The per-object reconcile loop: passes on kicks, coalesces them, resyncs, stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
import yaml
from fake_kube import FakeKube

from dask_controller import handlers

MANIFESTS = Path(__file__).parent / "manifests"

pytestmark = pytest.mark.timeout(30)


class Stop:
    """Stands in for kopf's DaemonStopped flag."""

    def __init__(self) -> None:
        self.value = False
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.value

    def set(self) -> None:
        self.value = True
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


async def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)  # poll interval of a deadline loop


async def test_loop_reconciles_on_kick_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()
    kube.add("DaskCluster", yaml.safe_load((MANIFESTS / "simple-cluster.yaml").read_text()))
    posted: list[tuple[str, str]] = []

    def fake_event(obj: Any, *, type: str, reason: str, message: str = "") -> None:
        posted.append((type, reason))

    monkeypatch.setattr(handlers, "_kube", lambda: kube)
    monkeypatch.setattr(kopf, "event", fake_event)
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)  # only kicks may trigger passes

    stop = Stop()
    task = asyncio.create_task(
        handlers._loop("DaskCluster", "ns1", "simple", cast(kopf.DaemonStopped, stop))
    )
    await _eventually(lambda: "simple-scheduler" in kube.names("Pod"))
    assert ("Normal", "SchedulerPodCreated") in posted

    # A deleted scheduler pod comes back on the next kick (a pod event), long before resync.
    await kube.delete_pod("ns1", "simple-scheduler")
    for _ in range(5):  # a burst of kicks coalesces
        handlers._kick("DaskCluster", "ns1", "simple")
    await _eventually(lambda: "simple-scheduler" in kube.names("Pod"))

    # Kicks for loops that do not exist are dropped, not remembered.
    handlers._kick("DaskCluster", "ns1", "nobody")
    assert ("DaskCluster", "ns1", "nobody") not in handlers._kicks

    stop.set()  # no kick needed: the loop wakes up on the stop flag itself
    await asyncio.wait_for(task, 5)
    assert ("DaskCluster", "ns1", "simple") not in handlers._kicks


async def test_loop_ends_when_object_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()
    monkeypatch.setattr(handlers, "_kube", lambda: kube)
    stop = Stop()
    await asyncio.wait_for(
        handlers._loop("DaskWorkerGroup", "ns1", "gone", cast(kopf.DaemonStopped, stop)), 5
    )


def test_repeated_events_are_posted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from dask_controller.reconcile import Event, Outcome

    posted: list[str] = []
    monkeypatch.setattr(
        kopf, "event", lambda obj, *, type, reason, message="": posted.append(reason)
    )
    monkeypatch.setattr(handlers, "_posted", {})
    obj: dict[str, Any] = {"metadata": {"uid": "u1"}}
    out = Outcome(events=[Event("Warning", "SchedulerUnreachable", "boom")])
    for _ in range(3):
        handlers._post(obj, out)
    handlers._post(obj, Outcome(events=[Event("Warning", "SchedulerUnreachable", "other")]))
    assert posted == ["SchedulerUnreachable", "SchedulerUnreachable"]
