"""DaskAutoscaler: the pure decisions, then reconcile passes against an in-memory API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import Scheduler
from fake_kube import FakeKube

from dask_controller import autoscaling as a
from dask_controller import decisions as d
from dask_controller import demand as dm
from dask_controller import reconcile as r
from dask_controller.scheduler import DemandUnavailable, SchedulerClient, SchedulerUnavailable
from dask_controller.settings import Settings

MANIFESTS = Path(__file__).parent / "manifests"
SETTINGS = Settings(scheduler_timeout=2.0, scheduler_poll_interval=5.0)
T0 = 1_800_000_000.0

pytestmark = pytest.mark.timeout(60)


# -- history and windows ---------------------------------------------------------------------


def test_record_keeps_change_points_only() -> None:
    h = a.record([], T0, 3, keep=60)
    h = a.record(h, T0 + 5, 3, keep=60)
    h = a.record(h, T0 + 10, 5, keep=60)
    assert h == [(T0, 3), (T0 + 10, 5)]
    # a point is dropped once its successor started more than `keep` seconds ago
    assert a.record(h, T0 + 71, 5, keep=60) == [(T0 + 10, 5)]
    assert a.record(h, T0 + 69, 5, keep=60) == h


def test_history_round_trips_and_tolerates_garbage() -> None:
    h = [(T0, 3), (T0 + 10.5, 5)]
    assert a.parse_history(a.dump_history(h)) == h
    assert a.parse_history("not json") == []
    assert a.parse_history(None) == []


def test_window_values() -> None:
    h = [(T0, 5), (T0 + 10, 2), (T0 + 20, 4)]
    assert a.window_values(h, T0 + 25, 0) == [4]
    assert a.window_values(h, T0 + 25, 10) == [2, 4]
    assert a.window_values(h, T0 + 25, 30) == [5, 2, 4]


# -- decide ----------------------------------------------------------------------------------


def _decide(current: int, rec: int, history: list[tuple[float, int]], **kw: Any) -> a.Decision:
    args: dict[str, Any] = {
        "minimum": 1, "maximum": 5, "now": T0 + 100, "up_window": 0, "down_window": 60,
    }  # fmt: skip
    args.update(kw)
    return a.decide(current, rec, history=history, **args)


def test_scale_up_at_once_and_clamped_to_maximum() -> None:
    dec = _decide(1, 9, [(T0 + 100, 5)])
    assert (dec.decision, dec.replicas) == ("ScaleUp", 5)
    assert "wants 9" in dec.reason
    assert "[1, 5]" in dec.reason


def test_scale_up_window_takes_the_lowest_recommendation() -> None:
    h = [(T0 + 80, 3), (T0 + 95, 5)]
    dec = _decide(1, 5, h, up_window=30)
    assert (dec.decision, dec.replicas) == ("ScaleUp", 3)
    dec = _decide(3, 5, h, up_window=30)
    assert dec.decision == "NoChange"
    assert "scale-up stabilisation" in dec.reason


def test_scale_down_waits_for_the_window() -> None:
    h = [(T0 + 50, 4), (T0 + 90, 1)]
    held = _decide(4, 1, h, down_window=60)
    assert (held.decision, held.replicas) == ("NoChange", 4)
    assert "scale-down stabilisation" in held.reason
    later = _decide(4, 1, h, down_window=60, now=T0 + 151)
    assert (later.decision, later.replicas) == ("ScaleDown", 1)


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    h = [(T0 + 30, 4), (T0 + 60, 3), (T0 + 90, 1)]
    # a value counts until the next one replaced it: the 4 was in force until T0+60
    assert _decide(4, 1, h, down_window=60).decision == "NoChange"
    dec = _decide(4, 1, h, down_window=30)
    assert (dec.decision, dec.replicas) == ("ScaleDown", 3)


def test_no_scale_down_while_workers_start() -> None:
    h = [(T0, 1)]
    dec = _decide(4, 1, h, starting=2)
    assert (dec.decision, dec.replicas) == ("NoChange", 4)
    assert "2 worker(s) are still starting" in dec.reason
    # scaling up is never held by starting workers
    assert _decide(1, 3, [(T0, 3)], starting=2).decision == "ScaleUp"


def test_bounds_are_hard() -> None:
    assert _decide(0, 0, [(T0, 1)]) == a.Decision(
        "ScaleUp", 1, "0 worker(s) is below the minimum 1"
    )
    dec = _decide(8, 5, [(T0 + 99, 5)], starting=3)
    assert (dec.decision, dec.replicas) == ("ScaleDown", 5)


def test_no_change_at_target() -> None:
    dec = _decide(3, 3, [(T0, 3)])
    assert (dec.decision, dec.replicas) == ("NoChange", 3)


def test_starting_workers_ignores_ready_terminating_and_failing_pods() -> None:
    pods = [
        d.PodView("ready", "Running", ready=True),
        d.PodView("pending", "Pending"),
        d.PodView("creating", "Running", ready=False),
        d.PodView("going", "Running", terminating=True),
        d.PodView("stuck", "Pending", reason="Unschedulable"),
        d.PodView("crash", "Running", reason="CrashLoopBackOff"),
        d.PodView("done", "Succeeded"),
    ]
    assert a.starting_workers(pods) == 2


# -- reconcile passes ------------------------------------------------------------------------


class FakeScheduler(SchedulerClient):
    """Answers adaptive_target with a settable number, or fails like an unreachable one;
    answers demand with a settable snapshot, or like a scheduler without the preload."""

    target: int | None = 1
    snapshot: dm.Snapshot | None = None
    failure: str | None = None
    calls = 0
    demand_calls = 0

    async def adaptive_target(self) -> int:
        FakeScheduler.calls += 1
        if FakeScheduler.target is None:
            raise SchedulerUnavailable("adaptive_target: connection refused")
        return FakeScheduler.target

    async def demand(self) -> dm.Snapshot:
        FakeScheduler.demand_calls += 1
        if FakeScheduler.failure is not None:
            raise DemandUnavailable(FakeScheduler.failure, permanent=False)
        if FakeScheduler.snapshot is None:
            raise DemandUnavailable("demand: GET /dask-operator/v1/demand: HTTP 404")
        return FakeScheduler.snapshot


def _fake(addr: str, url: str | None, timeout: float) -> SchedulerClient:
    return FakeScheduler(addr, url, timeout=timeout)


class Clock:
    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


def _manifest(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return obj


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    a._last_poll.clear()
    FakeScheduler.target, FakeScheduler.calls = 1, 0
    FakeScheduler.snapshot, FakeScheduler.demand_calls, FakeScheduler.failure = None, 0, None
    yield
    a._last_poll.clear()
    a._without_preload.clear()


@pytest.fixture
async def kube() -> FakeKube:
    k = FakeKube()
    k.add("DaskCluster", _manifest("simple-cluster.yaml"))
    cluster = await k.get_custom("DaskCluster", "ns1", "simple")
    assert cluster is not None
    await r.reconcile_cluster(k, SETTINGS, cluster)
    k.set_pod_state("simple-scheduler", "Running", ready=True)
    k.add("DaskAutoscaler", _manifest("autoscaler.yaml"))
    return k


async def _pass(kube: FakeKube, clock: Clock, name: str = "simple") -> r.Outcome:
    obj = await kube.get_custom("DaskAutoscaler", "ns1", name)
    assert obj is not None
    return await a.reconcile_autoscaler(
        kube, SETTINGS, obj, _fake, clock=clock.time, monotonic=clock.monotonic
    )


def _replicas(kube: FakeKube, group: str = "simple-default") -> int:
    obj = kube.objects[("DaskWorkerGroup", "ns1", group)]
    return int(obj["spec"]["worker"]["replicas"])


def _status(kube: FakeKube, name: str = "simple") -> dict[str, Any]:
    status: dict[str, Any] = kube.objects[("DaskAutoscaler", "ns1", name)].get("status") or {}
    return status


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


async def test_reference_autoscaler_scales_up_clamped_then_down_after_window(
    kube: FakeKube,
) -> None:
    clock = Clock()
    FakeScheduler.target = 50
    out = await _pass(kube, clock)
    assert _replicas(kube) == 10  # maximum of the reference autoscaler.yaml
    [ev] = out.events
    assert (ev.type, ev.reason) == ("Normal", "ScaleUp")
    st = _status(kube)
    assert st["desiredReplicas"] == 10
    assert st["recommendedReplicas"] == 50
    assert st["lastDecision"] == "ScaleUp"
    assert st["workerGroup"] == "simple-default"
    assert st["lastDecisionTime"] == "2027-01-15T08:00:00Z"
    assert _conditions(st)["SchedulerReachable"] == ("True", "SchedulerReachable")
    assert out.requeue_after == SETTINGS.scheduler_poll_interval
    # the autoscaler joins the cluster's lifetime
    [ref] = kube.objects[("DaskAutoscaler", "ns1", "simple")]["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"]) == ("DaskCluster", "simple")

    # all workers Ready; the scheduler wants fewer: held for the 60s default window
    for p in kube.names("Pod"):
        kube.set_pod_state(p, "Running", ready=True)
    FakeScheduler.target = 0
    clock.advance(5)
    out = await _pass(kube, clock)
    assert _replicas(kube) == 10
    assert out.events == []
    assert _status(kube)["lastDecision"] == "NoChange"
    clock.advance(61)
    out = await _pass(kube, clock)
    assert _replicas(kube) == 1  # the minimum
    assert [e.reason for e in out.events] == ["ScaleDown"]


async def test_pass_woken_by_its_own_write_does_not_poll_again(kube: FakeKube) -> None:
    clock = Clock()
    await _pass(kube, clock)
    assert FakeScheduler.calls == 1
    clock.advance(0.5)
    out = await _pass(kube, clock)
    assert FakeScheduler.calls == 1
    assert out.requeue_after == pytest.approx(4.5)
    # a spec edit (new generation) is acted on at once
    kube.objects[("DaskAutoscaler", "ns1", "simple")]["metadata"]["generation"] = 2
    await _pass(kube, clock)
    assert FakeScheduler.calls == 2


async def test_poll_times_of_vanished_autoscalers_are_forgotten(kube: FakeKube) -> None:
    clock = Clock()
    gone = ("ns1", "deleted-while-we-were-away", "uid-x")
    a._last_poll[gone] = clock.monotonic()
    clock.advance(a.STALE_POLL + 1)
    await _pass(kube, clock)
    assert gone not in a._last_poll
    assert len(a._last_poll) == 1  # the live one


async def test_history_survives_a_controller_restart(kube: FakeKube) -> None:
    clock = Clock()
    FakeScheduler.target = 4
    await _pass(kube, clock)
    for p in kube.names("Pod"):
        kube.set_pod_state(p, "Running", ready=True)
    FakeScheduler.target = 1
    clock.advance(30)
    await _pass(kube, clock)
    ann = kube.objects[("DaskAutoscaler", "ns1", "simple")]["metadata"]["annotations"]
    # seeded with the group's size (2) when the autoscaler started
    assert json.loads(ann[a.HISTORY_ANNOTATION]) == [[T0, 2], [T0, 4], [T0 + 30, 1]]
    a._last_poll.clear()  # "restart": nothing in memory
    clock.advance(50)  # the 4 was replaced 50s ago: still inside the 60s window
    await _pass(kube, clock)
    assert _replicas(kube) == 4
    clock.advance(15)
    await _pass(kube, clock)
    assert _replicas(kube) == 1


async def test_no_scale_down_while_workers_are_starting(kube: FakeKube) -> None:
    clock = Clock()
    kube.objects[("DaskAutoscaler", "ns1", "simple")]["spec"]["scaleDown"] = {
        "stabilizationWindowSeconds": 0
    }
    FakeScheduler.target = 3
    await _pass(kube, clock)
    assert _replicas(kube) == 3
    group = await kube.get_custom("DaskWorkerGroup", "ns1", "simple-default")
    assert group is not None
    await r.reconcile_worker_group(kube, SETTINGS, group)
    workers = [p for p in kube.names("Pod") if p.startswith("simple-default-worker-")]
    assert len(workers) == 3  # all Pending
    FakeScheduler.target = 1
    clock.advance(5)
    await _pass(kube, clock)
    assert _replicas(kube) == 3
    assert "still starting" in _status(kube)["lastDecisionReason"]
    for p in workers:
        kube.set_pod_state(p, "Running", ready=True)
    clock.advance(5)
    await _pass(kube, clock)
    assert _replicas(kube) == 1


async def test_unreachable_scheduler_changes_nothing(kube: FakeKube) -> None:
    clock = Clock()
    FakeScheduler.target = None
    out = await _pass(kube, clock)
    assert _replicas(kube) == 2
    st = _status(kube)
    assert _conditions(st)["SchedulerReachable"] == ("False", "SchedulerUnreachable")
    assert "lastDecision" not in st
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "SchedulerUnreachable")]
    # a scheduler pod that is not running is not asked at all
    kube.set_pod_state("simple-scheduler", "Pending", ready=False)
    FakeScheduler.target, FakeScheduler.calls = 5, 0
    clock.advance(10)
    await _pass(kube, clock)
    assert FakeScheduler.calls == 0
    assert _replicas(kube) == 2
    assert _conditions(_status(kube))["SchedulerReachable"] == ("False", "SchedulerNotRunning")


async def test_targets_another_worker_group(kube: FakeKube) -> None:
    clock = Clock()
    kube.add("DaskWorkerGroup", _manifest("simple-highmem.yaml"))
    body = _manifest("autoscaler.yaml")
    body["metadata"]["name"] = "highmem"
    body["spec"].update(workerGroup="simple-highmem", minimum=0, maximum=3)
    kube.add("DaskAutoscaler", body)
    FakeScheduler.target = 7
    await _pass(kube, clock, "highmem")
    assert _replicas(kube, "simple-highmem") == 3
    assert _replicas(kube, "simple-default") == 2  # untouched
    assert _status(kube, "highmem")["workerGroup"] == "simple-highmem"


async def test_missing_or_foreign_group_and_missing_cluster(kube: FakeKube) -> None:
    clock = Clock()
    spec = kube.objects[("DaskAutoscaler", "ns1", "simple")]["spec"]
    spec["workerGroup"] = "nope"
    await _pass(kube, clock)
    assert _conditions(_status(kube))["WorkerGroupFound"] == ("False", "WorkerGroupNotFound")
    other = _manifest("simple-highmem.yaml")
    other["metadata"]["name"] = "other-gpu"
    other["spec"]["cluster"] = "other"
    kube.add("DaskWorkerGroup", other)
    spec["workerGroup"] = "other-gpu"
    clock.advance(10)
    await _pass(kube, clock)
    assert _conditions(_status(kube))["WorkerGroupFound"] == (
        "False",
        "WorkerGroupNotInCluster",
    )
    assert _replicas(kube, "other-gpu") == 2
    spec["cluster"] = "missing"
    clock.advance(10)
    await _pass(kube, clock)
    assert _conditions(_status(kube))["ClusterFound"] == ("False", "ClusterNotFound")


async def test_invalid_spec_is_reported(kube: FakeKube) -> None:
    clock = Clock()
    spec = kube.objects[("DaskAutoscaler", "ns1", "simple")]["spec"]
    spec.update(minimum=5, maximum=2)
    out = await _pass(kube, clock)
    assert _conditions(_status(kube))["SpecValid"] == ("False", "InvalidSpec")
    assert out.events[0].reason == "InvalidSpec"
    assert _replicas(kube) == 2


async def test_deleted_autoscaler_leaves_replicas(kube: FakeKube) -> None:
    clock = Clock()
    FakeScheduler.target = 4
    await _pass(kube, clock)
    await kube.delete_custom("DaskAutoscaler", "ns1", "simple")
    cluster = await kube.get_custom("DaskCluster", "ns1", "simple")
    assert cluster is not None
    await r.reconcile_cluster(kube, SETTINGS, cluster)  # the cluster does not push its 2 back
    assert _replicas(kube) == 4


# -- against a real scheduler ----------------------------------------------------------------


@pytest.fixture
async def real_scheduler() -> AsyncIterator[Scheduler]:
    s = await Scheduler(host="127.0.0.1", port=0, dashboard=False)
    yield s
    await s.close()


async def test_adaptive_target_of_a_real_scheduler_over_rpc(
    kube: FakeKube, real_scheduler: Scheduler
) -> None:
    """No HTTP API (dashboard off): the RPC fallback answers; an empty scheduler wants no
    workers, so the group goes to the minimum once the window allows."""
    clock = Clock()

    def factory(addr: str, url: str | None, timeout: float) -> SchedulerClient:
        return SchedulerClient(real_scheduler.address, None, timeout=5)

    kube.objects[("DaskAutoscaler", "ns1", "simple")]["spec"]["scaleDown"] = {
        "stabilizationWindowSeconds": 0
    }
    obj = await kube.get_custom("DaskAutoscaler", "ns1", "simple")
    assert obj is not None
    await a.reconcile_autoscaler(
        kube, SETTINGS, obj, factory, clock=clock.time, monotonic=clock.monotonic
    )
    assert _status(kube)["recommendedReplicas"] == 0
    assert _replicas(kube) == 1


async def test_new_autoscaler_waits_the_window_before_its_first_scale_down(
    kube: FakeKube,
) -> None:
    clock = Clock()
    for p in kube.names("Pod"):
        kube.set_pod_state(p, "Running", ready=True)
    FakeScheduler.target = 0
    await _pass(kube, clock)
    assert _replicas(kube) == 2
    assert _status(kube)["lastDecision"] == "NoChange"
    clock.advance(61)
    await _pass(kube, clock)
    assert _replicas(kube) == 1


# -- per-group demand ------------------------------------------------------------------------

MEMORY_TASKS = dm.Work((("MEMORY", 32e9),), 5, 50.0)


async def _with_highmem(kube: FakeKube) -> None:
    """The reference highmem group (``--resources MEMORY=32e9``) with its own autoscaler."""
    kube.add("DaskWorkerGroup", _manifest("simple-highmem.yaml"))
    body = _manifest("autoscaler.yaml")
    body["metadata"]["name"] = "highmem"
    body["spec"].update(workerGroup="simple-highmem", minimum=0, maximum=3)
    kube.add("DaskAutoscaler", body)


async def test_one_kind_of_group_uses_the_schedulers_whole_cluster_target(
    kube: FakeKube,
) -> None:
    clock = Clock()
    FakeScheduler.target = 4
    await _pass(kube, clock)
    assert FakeScheduler.demand_calls == 0
    assert _status(kube)["demand"] == "Cluster"
    assert _status(kube)["lastDecisionReason"].startswith("the scheduler wants 4 worker(s)")


async def test_groups_offering_different_resources_are_sized_by_their_own_work(
    kube: FakeKube,
) -> None:
    await _with_highmem(kube)
    clock = Clock()
    FakeScheduler.target = 10  # the whole cluster's target would grow every group
    FakeScheduler.snapshot = dm.Snapshot(5.0, (MEMORY_TASKS,), ())
    await _pass(kube, clock, "highmem")
    await _pass(kube, clock, "simple")
    assert FakeScheduler.calls == 0
    assert _replicas(kube, "simple-highmem") == 3  # 5 wanted, maximum 3
    high = _status(kube, "highmem")
    assert (high["demand"], high["recommendedReplicas"], high["lastDecision"]) == (
        "WorkerGroup", 5, "ScaleUp",
    )  # fmt: skip
    assert "5 task(s) waiting for this group" in high["lastDecisionReason"]
    # the default group has none of that work: not grown, and shrunk once the window passes
    assert _replicas(kube) == 2
    default = _status(kube)
    assert (default["demand"], default["recommendedReplicas"]) == ("WorkerGroup", 0)
    for p in kube.names("Pod"):
        kube.set_pod_state(p, "Running", ready=True)
    clock.advance(61)
    await _pass(kube, clock)
    assert _replicas(kube) == 1


async def test_work_on_a_groups_workers_keeps_it(kube: FakeKube) -> None:
    await _with_highmem(kube)
    group = await kube.get_custom("DaskWorkerGroup", "ns1", "simple-highmem")
    assert group is not None
    await r.reconcile_worker_group(kube, SETTINGS, group)
    pods = sorted(p for p in kube.names("Pod") if p.startswith("simple-highmem-worker-"))
    busy = dm.WorkerLoad(pods[0], 1, (("MEMORY", 32e9),), 0, 0, (MEMORY_TASKS,))
    idle = dm.WorkerLoad(pods[1], 1, (("MEMORY", 32e9),), 0, 0)
    FakeScheduler.snapshot = dm.Snapshot(5.0, (), (busy, idle))
    await _pass(kube, Clock(), "highmem")
    assert _status(kube, "highmem")["recommendedReplicas"] == 5


async def test_scheduler_without_the_preload_falls_back_to_the_cluster_target(
    kube: FakeKube,
) -> None:
    await _with_highmem(kube)
    clock = Clock()
    FakeScheduler.target = 7
    await _pass(kube, clock, "highmem")
    assert _replicas(kube, "simple-highmem") == 3
    st = _status(kube, "highmem")
    assert st["demand"] == "Cluster"
    assert "does not serve per-group demand" in st["lastDecisionReason"]
    assert "HTTP 404" in st["lastDecisionReason"]
    # that scheduler pod is not asked again; a new one is
    clock.advance(10)
    await _pass(kube, clock, "highmem")
    assert FakeScheduler.demand_calls == 1
    kube.objects[("Pod", "ns1", "simple-scheduler")]["metadata"]["uid"] = "a-new-scheduler"
    clock.advance(10)
    await _pass(kube, clock, "highmem")
    assert FakeScheduler.demand_calls == 2


async def test_a_failed_demand_answer_falls_back_for_that_pass_only(kube: FakeKube) -> None:
    await _with_highmem(kube)
    clock = Clock()
    FakeScheduler.target = 2
    FakeScheduler.failure = "demand: the scheduler could not summarise its work: KeyError"
    await _pass(kube, clock, "highmem")
    st = _status(kube, "highmem")
    assert st["demand"] == "Cluster"
    assert "per-group demand failed this time" in st["lastDecisionReason"]
    FakeScheduler.failure = None
    FakeScheduler.snapshot = dm.Snapshot(5.0, (MEMORY_TASKS,), ())
    clock.advance(10)
    await _pass(kube, clock, "highmem")
    assert _status(kube, "highmem")["demand"] == "WorkerGroup"
    assert FakeScheduler.demand_calls == 2


async def test_a_suspended_cluster_is_left_alone_quietly(kube: FakeKube) -> None:
    kube.objects[("DaskCluster", "ns1", "simple")]["spec"]["suspend"] = True
    FakeScheduler.target = 8
    out = await _pass(kube, Clock())
    assert FakeScheduler.calls == 0
    assert _replicas(kube) == 2
    assert _conditions(_status(kube))["SchedulerReachable"] == ("Unknown", "ClusterSuspended")
    assert out.events == []
