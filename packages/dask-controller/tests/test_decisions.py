"""Decisions as tables: observed pods + scheduler knowledge -> what to do, and status."""

from __future__ import annotations

from typing import Any

import pytest

from dask_controller import decisions as d
from dask_controller.builders import TEMPLATE_HASH_ANNOTATION

H = "current"
OLD = "old"


def pod(
    name: str,
    phase: str = "Running",
    ready: bool = True,
    h: str = H,
    created: str = "2026-01-01T00:00:00Z",
    terminating: bool = False,
    reason: str | None = None,
) -> d.PodView:
    return d.PodView(name, phase, ready, terminating, h, created, reason)


def running(*names: str, h: str = H) -> list[d.PodView]:
    return [pod(n, h=h) for n in names]


# -- scale up / steady -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "pods", "create"),
    [
        (2, [], 2),
        (3, running("a"), 2),
        (2, running("a", "b"), 0),
        (2, [*running("a"), pod("t", terminating=True)], 1),  # terminating pods do not count
        (1, [pod("f", phase="Failed", ready=False)], 1),  # finished pods do not count
    ],
)
def test_scale_up(desired: int, pods: list[d.PodView], create: int) -> None:
    plan = d.plan_worker_group(desired, pods, H, frozenset(p.name for p in pods))
    assert plan.create == create
    assert plan.retire == 0


def test_finished_pods_are_removed_and_replaced() -> None:
    pods = [*running("a"), pod("f", phase="Failed", ready=False, reason="Error")]
    plan = d.plan_worker_group(2, pods, H, frozenset({"a"}))
    assert plan.delete == ("f",)
    assert plan.create == 1


# -- scale down --------------------------------------------------------------------------------


def test_scale_down_prefers_pods_the_scheduler_never_saw() -> None:
    pods = [
        *running("a", "b"),
        pod("pending", phase="Pending", ready=False),
        pod("notconn", phase="Running", ready=False),
    ]
    plan = d.plan_worker_group(2, pods, H, frozenset({"a", "b"}))
    assert set(plan.delete) == {"pending", "notconn"}
    assert plan.retire == 0


def test_pending_goes_before_running_unconnected() -> None:
    pods = [*running("a"), pod("p", phase="Pending", ready=False), pod("r", ready=False)]
    plan = d.plan_worker_group(2, pods, H, frozenset({"a"}))
    assert plan.delete == ("p",)


def test_scale_down_of_connected_workers_goes_through_the_scheduler() -> None:
    pods = running("a", "b", "c", "d")
    plan = d.plan_worker_group(1, pods, H, frozenset({"a", "b", "c", "d"}))
    assert plan.delete == ()  # nothing deleted without retirement
    assert plan.retire == 3
    assert set(plan.retire_candidates) == {"a", "b", "c", "d"}


def test_mixed_scale_down() -> None:
    pods = [*running("a", "b", "c"), pod("p", phase="Pending", ready=False)]
    plan = d.plan_worker_group(2, pods, H, frozenset({"a", "b", "c"}))
    assert plan.delete == ("p",)
    assert plan.retire == 1


def test_scheduler_unreachable_deletes_only_pods_that_never_started() -> None:
    pods = [*running("a", "b"), pod("p", phase="Pending", ready=False)]
    plan = d.plan_worker_group(0, pods, H, None)
    assert plan.delete == ("p",)
    assert plan.retire == 0
    assert plan.blocked_on_scheduler
    cond = d.scaling_down_condition(plan)
    assert (cond.status, cond.reason) == ("True", "WaitingForScheduler")


def test_scheduler_unreachable_running_unconnected_pods_are_kept() -> None:
    pods = [pod("r", ready=False), pod("s", ready=True)]
    plan = d.plan_worker_group(0, pods, H, None)
    assert plan.delete == ()
    assert plan.blocked_on_scheduler


def test_other_groups_workers_never_candidates() -> None:
    """The scheduler knows workers of other groups; only this group's pods are in the plan."""
    pods = running("g1-a", "g1-b")
    plan = d.plan_worker_group(1, pods, H, frozenset({"g1-a", "g1-b", "g2-x", "g2-y"}))
    assert set(plan.retire_candidates) == {"g1-a", "g1-b"}


def test_outdated_connected_workers_are_retired_first_on_scale_down() -> None:
    pods = [*running("new1", "new2"), *running("old1", h=OLD)]
    plan = d.plan_worker_group(1, pods, H, frozenset({"new1", "new2", "old1"}))
    assert plan.retire == 2
    assert plan.retire_candidates[0] == "old1"


# -- rolling replacement -----------------------------------------------------------------------


def test_rolling_surges_one_replacement() -> None:
    pods = running("a", "b", h=OLD)
    plan = d.plan_worker_group(2, pods, H, frozenset({"a", "b"}))
    assert (plan.create, plan.retire, plan.delete, plan.rolling) == (1, 0, (), True)


def test_rolling_waits_for_replacement_to_be_ready() -> None:
    pods = [*running("a", "b", h=OLD), pod("n", phase="Pending", ready=False)]
    plan = d.plan_worker_group(2, pods, H, frozenset({"a", "b"}))
    assert plan.idle
    assert plan.rolling


def test_rolling_retires_one_outdated_when_replacement_ready() -> None:
    pods = [*running("a", "b", h=OLD), *running("n")]
    plan = d.plan_worker_group(2, pods, H, frozenset({"a", "b", "n"}))
    assert plan.retire == 1
    assert set(plan.retire_candidates) == {"a", "b"}
    assert plan.create == 0


def test_rolling_replaces_data_free_pods_at_once() -> None:
    pods = [
        pod("p1", phase="Pending", ready=False, h=OLD),
        pod("p2", phase="Pending", ready=False, h=OLD),
    ]
    plan = d.plan_worker_group(2, pods, H, None)
    assert set(plan.delete) == {"p1", "p2"}
    assert plan.create == 2


def test_rolling_blocked_without_scheduler() -> None:
    pods = [*running("a", h=OLD), *running("n")]
    plan = d.plan_worker_group(1, pods, H, None)
    assert plan.blocked_on_scheduler
    assert plan.delete == ()


def test_scaling_wins_over_rolling() -> None:
    pods = running("a", h=OLD)
    plan = d.plan_worker_group(4, pods, H, frozenset({"a"}))
    assert plan.create == 3


# -- pod views and conditions ------------------------------------------------------------------


def _wire_pod(
    name: str,
    phase: str = "Pending",
    conditions: list[dict[str, Any]] | None = None,
    container_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if container_state is not None:
        status["containerStatuses"] = [{"name": "worker", "state": container_state}]
    return {
        "metadata": {"name": name, "annotations": {TEMPLATE_HASH_ANNOTATION: "h"}},
        "status": status,
    }


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (_wire_pod("p", container_state={"waiting": {"reason": "ImagePullBackOff"}}),
         "ImagePullBackOff"),
        (_wire_pod("p", container_state={"waiting": {"reason": "ErrImagePull"}}), "ErrImagePull"),
        (_wire_pod("p", "Running", container_state={"waiting": {"reason": "CrashLoopBackOff"}}),
         "CrashLoopBackOff"),
        (_wire_pod("p", conditions=[{"type": "PodScheduled", "status": "False",
                                     "reason": "Unschedulable", "message": "0/1 nodes"}]),
         "Unschedulable"),
        (_wire_pod("p", container_state={"waiting": {"reason": "ContainerCreating"}}), None),
        (_wire_pod("p", "Running", conditions=[{"type": "Ready", "status": "True"}],
                   container_state={"running": {}}), None),
    ],
)  # fmt: skip
def test_pod_view_reasons(wire: dict[str, Any], reason: str | None) -> None:
    view = d.pod_view(wire)
    assert view.reason == reason
    assert view.template_hash == "h"


def test_pod_view_ready_and_terminating() -> None:
    wire = _wire_pod("p", "Running", conditions=[{"type": "Ready", "status": "True"}])
    wire["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    view = d.pod_view(wire)
    assert view.ready
    assert view.terminating


def test_workers_ready_condition_names_pod_and_reason() -> None:
    pods = [pod("a"), pod("b", phase="Pending", ready=False, reason="ImagePullBackOff")]
    cond = d.workers_ready_condition(2, pods, H)
    assert (cond.status, cond.reason) == ("False", "ImagePullBackOff")
    assert "pod b" in cond.message
    assert "1/2 ready" in cond.message
    ok = d.workers_ready_condition(2, running("a", "b"), H)
    assert (ok.status, ok.reason) == ("True", "AllWorkersReady")


@pytest.mark.parametrize(
    ("view", "status", "reason", "phase"),
    [
        (None, "False", "SchedulerPodMissing", "Created"),
        (pod("s", phase="Pending", ready=False), "False", "SchedulerStarting", "Pending"),
        (pod("s", ready=False, reason="CrashLoopBackOff"), "False", "CrashLoopBackOff", "Pending"),
        (pod("s"), "True", "SchedulerPodReady", "Running"),
    ],
)
def test_scheduler_condition_and_cluster_phase(
    view: d.PodView | None, status: str, reason: str, phase: str
) -> None:
    cond = d.scheduler_ready_condition(view)
    assert (cond.status, cond.reason) == (status, reason)
    assert d.cluster_phase(view) == phase


def test_cluster_phase_invalid_name() -> None:
    assert d.cluster_phase(None, invalid=True) == "Failed"


def test_merge_conditions_keeps_transition_time_when_status_unchanged() -> None:
    first = d.merge_conditions(None, [d.Condition("A", "True", "X")], "t1", 1)
    assert first[0]["lastTransitionTime"] == "t1"
    assert first[0]["observedGeneration"] == 1
    same = d.merge_conditions(first, [d.Condition("A", "True", "Y", "m")], "t2", 2)
    assert same[0]["lastTransitionTime"] == "t1"
    assert same[0]["reason"] == "Y"
    flipped = d.merge_conditions(same, [d.Condition("A", "False", "Z")], "t3", 2)
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_replica_counts_and_group_phase() -> None:
    pods = [pod("a"), pod("b", phase="Pending", ready=False), pod("t", terminating=True)]
    assert d.replica_counts(pods) == (2, 1)
    assert d.worker_group_phase(2, pods) == "Pending"
    assert d.worker_group_phase(2, running("a", "b")) == "Running"
    assert d.worker_group_phase(1, [pod("x", ready=False, reason="ImagePullBackOff")]) == "Failed"
    assert d.worker_group_phase(0, []) == "Running"


def test_scheduler_unreachable_condition() -> None:
    assert d.scheduler_unreachable_condition(None).status == "False"
    cond = d.scheduler_unreachable_condition("boom")
    assert (cond.status, cond.message) == ("True", "boom")


def test_match_workers_by_name_then_by_pod_ip() -> None:
    pods = [
        d.PodView("g-worker-a", ip="10.244.0.5"),
        d.PodView("g-worker-b", ip="10.244.0.6"),
        d.PodView("g-worker-c", ip="10.244.0.7"),
        d.PodView("g-worker-d"),  # no IP yet
    ]
    workers = [
        ("g-worker-a", "tcp://10.244.0.5:40000"),  # named like its pod
        ("tcp://10.244.0.6:41000", "tcp://10.244.0.6:41000"),  # started without --name
        ("x-0", "tcp://10.244.0.7:1"),  # two worker processes in one pod
        ("x-1", "tcp://10.244.0.7:2"),
        ("other-group-worker", "tcp://10.244.9.9:1"),  # not this group's
    ]
    assert d.match_workers(pods, workers) == {
        "g-worker-a": ("g-worker-a",),
        "g-worker-b": ("tcp://10.244.0.6:41000",),
        "g-worker-c": ("x-0", "x-1"),
    }


def test_pod_view_reads_pod_ip() -> None:
    wire = _wire_pod("p", "Running")
    wire["status"]["podIP"] = "10.244.0.5"
    assert d.pod_view(wire).ip == "10.244.0.5"
