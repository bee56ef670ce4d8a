"""Idle shutdown: the decision, the cluster pass that carries it out, and a real scheduler's
``check_idle`` over RPC."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from distributed import Client as _Client
from distributed import Scheduler
from fake_kube import FakeKube

from dask_controller import builders as b
from dask_controller import idle
from dask_controller import reconcile as r
from dask_controller.scheduler import SchedulerClient
from dask_controller.settings import Settings

Client: Any = _Client  # untyped in distributed
MANIFESTS = Path(__file__).parent / "manifests"
SETTINGS = Settings(scheduler_timeout=2.0, scheduler_poll_interval=5.0)
T0 = 1_800_000_000.0

pytestmark = pytest.mark.timeout(60)


def test_busy_scheduler_is_not_idle() -> None:
    dec = idle.decide(10, None, True, T0, {"idleSince": "2027-01-15T07:00:00Z"})
    assert dec.idle_since is None
    assert dec.action == "none"
    assert (dec.condition.status, dec.condition.reason) == ("False", "Busy")


def test_idle_within_timeout_counts_down() -> None:
    dec = idle.decide(10, T0 - 4, True, T0, {})
    assert dec.idle_since == "2027-01-15T07:59:56Z"
    assert dec.action == "none"
    assert dec.remaining == pytest.approx(6)
    assert (dec.condition.status, dec.condition.reason) == ("True", "Idle")


def test_timeout_warns_first_then_deletes() -> None:
    first = idle.decide(10, T0 - 11, True, T0, {})
    assert first.action == "warn"
    assert first.condition.reason == idle.EXCEEDED
    warned = {"conditions": [{"type": "Idle", "status": "True", "reason": idle.EXCEEDED}]}
    assert idle.decide(10, T0 - 12, True, T0 + 1, warned).action == "delete"
    # busy again after the warning: no deletion
    assert idle.decide(10, None, True, T0 + 1, warned).action == "none"


def test_idle_action_suspend_suspends_instead() -> None:
    first = idle.decide(10, T0 - 11, True, T0, {}, idle_action="Suspend")
    assert first.action == "warn"
    assert "suspending the cluster" in first.condition.message
    warned = {"conditions": [{"type": "Idle", "status": "True", "reason": idle.EXCEEDED}]}
    assert idle.decide(10, T0 - 12, True, T0 + 1, warned, idle_action="Suspend").action == (
        "suspend"
    )


def test_unreachable_scheduler_never_deletes_and_keeps_idle_since() -> None:
    warned = {
        "idleSince": "2027-01-15T07:00:00Z",
        "conditions": [{"type": "Idle", "status": "True", "reason": idle.EXCEEDED}],
    }
    dec = idle.decide(10, None, False, T0, warned, "connection refused")
    assert dec.action == "none"
    assert dec.idle_since == "2027-01-15T07:00:00Z"
    assert (dec.condition.status, dec.condition.reason) == ("Unknown", "SchedulerUnreachable")


def test_scheduler_clock_ahead_does_not_shorten_the_timeout() -> None:
    dec = idle.decide(10, T0 + 3600, True, T0, {})
    assert dec.idle_since == "2027-01-15T08:00:00Z"
    assert dec.action == "none"


# -- the DaskCluster pass --------------------------------------------------------------------


def _manifest(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return obj


class Answers:
    """What the monkeypatched scheduler says: (reachable, idle_since, error)."""

    value: tuple[bool, float | None, str] = (True, None, "")
    calls = 0


async def _ask(
    cluster: Mapping[str, Any], service: Mapping[str, Any], domain: str, timeout: float
) -> tuple[bool, float | None, str]:
    Answers.calls += 1
    return Answers.value


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    monkeypatch.setattr(idle, "ask_scheduler", _ask)
    Answers.value, Answers.calls = (True, None, ""), 0
    k = FakeKube()
    body = _manifest("simple-cluster.yaml")
    body["spec"]["idleTimeout"] = 10
    k.add("DaskCluster", body)
    return k


async def _pass(kube: FakeKube) -> r.Outcome:
    obj = await kube.get_custom("DaskCluster", "ns1", "simple")
    assert obj is not None
    return await r.reconcile_cluster(kube, SETTINGS, obj)


def _status(kube: FakeKube) -> dict[str, Any]:
    status: dict[str, Any] = kube.objects[("DaskCluster", "ns1", "simple")].get("status") or {}
    return status


def _idle_condition(kube: FakeKube) -> dict[str, Any]:
    [cond] = [c for c in _status(kube)["conditions"] if c["type"] == "Idle"]
    assert isinstance(cond, dict)
    return cond


async def test_idle_cluster_is_warned_then_deleted(kube: FakeKube) -> None:
    await _pass(kube)  # creates the scheduler pod; not running yet: nobody is asked
    assert Answers.calls == 0
    assert _idle_condition(kube)["status"] == "Unknown"
    kube.set_pod_state("simple-scheduler", "Running", ready=True)

    Answers.value = (True, time.time() - 3, "")
    out = await _pass(kube)
    assert _status(kube)["idleSince"].endswith("Z")
    assert _idle_condition(kube)["reason"] == "Idle"
    assert out.requeue_after is not None
    assert out.requeue_after <= SETTINGS.scheduler_poll_interval

    Answers.value = (True, time.time() - 30, "")
    out = await _pass(kube)
    assert ("Warning", "IdleTimeout") in [(e.type, e.reason) for e in out.events]
    assert ("DaskCluster", "ns1", "simple") in kube.objects  # the Event comes first
    assert _idle_condition(kube)["reason"] == idle.EXCEEDED

    out = await _pass(kube)
    assert ("DaskCluster", "ns1", "simple") not in kube.objects
    assert "IdleShutdown" in [e.reason for e in out.events]


async def test_idle_action_suspend_keeps_the_cluster_without_pods(kube: FakeKube) -> None:
    kube.objects[("DaskCluster", "ns1", "simple")]["spec"]["idleAction"] = "Suspend"
    await _pass(kube)
    kube.set_pod_state("simple-scheduler", "Running", ready=True)
    Answers.value = (True, time.time() - 30, "")
    out = await _pass(kube)
    assert ("Warning", "IdleTimeout") in [(e.type, e.reason) for e in out.events]
    out = await _pass(kube)
    cluster = kube.objects[("DaskCluster", "ns1", "simple")]  # kept
    assert cluster["spec"]["suspend"] is True
    assert "suspended DaskCluster simple: idle timeout" in [e.message for e in out.events]
    # the next pass stops the scheduler, and nobody asks it whether it is idle any more
    calls = Answers.calls
    await _pass(kube)
    assert "simple-scheduler" not in kube.names("Pod")
    assert _status(kube)["phase"] == "Suspended"
    assert Answers.calls == calls
    assert _status(kube)["idleSince"] is None


async def test_busy_or_unreachable_cluster_is_kept(kube: FakeKube) -> None:
    await _pass(kube)
    kube.set_pod_state("simple-scheduler", "Running", ready=True)
    Answers.value = (True, time.time() - 30, "")
    await _pass(kube)  # warned
    Answers.value = (False, None, "connection refused")
    for _ in range(3):
        out = await _pass(kube)
        assert not [e for e in out.events if e.reason in ("IdleTimeout", "IdleShutdown")]
    assert ("DaskCluster", "ns1", "simple") in kube.objects
    Answers.value = (True, None, "")
    await _pass(kube)
    assert _status(kube).get("idleSince") is None  # null in a merge patch: removed
    assert _idle_condition(kube)["reason"] == "Busy"


async def test_no_timeout_no_question(kube: FakeKube) -> None:
    kube.objects[("DaskCluster", "ns1", "simple")]["spec"]["idleTimeout"] = 0
    await _pass(kube)
    kube.set_pod_state("simple-scheduler", "Running", ready=True)
    await _pass(kube)
    assert Answers.calls == 0
    assert "Idle" not in {c["type"] for c in _status(kube)["conditions"]}


# -- a real scheduler ------------------------------------------------------------------------


@pytest.fixture
async def real_scheduler() -> AsyncIterator[Scheduler]:
    s = await Scheduler(host="127.0.0.1", port=0, dashboard=False)
    yield s
    await s.close()


async def test_check_idle_of_a_real_scheduler(real_scheduler: Scheduler) -> None:
    """Over RPC (no dashboard): an empty scheduler is idle; one with a task waiting for a
    worker is not."""
    async with SchedulerClient(real_scheduler.address, None, timeout=5) as sched:
        since = await sched.check_idle()
        assert since is not None
        assert since <= time.time()
        async with Client(real_scheduler.address, asynchronous=True) as client:
            fut = client.submit(time.sleep, 5)
            deadline = time.monotonic() + 10
            busy = await sched.check_idle()
            while busy is not None and time.monotonic() < deadline:
                busy = await sched.check_idle()
            assert busy is None
            await client.cancel(fut)


@pytest.fixture
async def http_scheduler() -> AsyncIterator[Scheduler]:
    with dask.config.set({"distributed.scheduler.http.routes": b.SCHEDULER_HTTP_ROUTES}):
        s = await Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0")
    yield s
    await s.close()


async def test_check_idle_over_the_http_api(http_scheduler: Scheduler) -> None:
    """The HTTP route `/api/v1/check_idle` answers first (the RPC address here is unusable,
    so an answer proves the HTTP path)."""
    server: Any = http_scheduler.http_server
    url = f"http://127.0.0.1:{server.port}"
    async with SchedulerClient("tcp://127.0.0.1:1", url, timeout=5) as sched:
        since = await sched.check_idle()
        assert since is not None
        assert sched.http_api is True
