from __future__ import annotations

from typing import Any

import pytest

from dask_kubecluster.errors import (
    ClusterSuspendedError,
    CrashLoopError,
    CRDNotInstalledError,
    Failed,
    ImagePullError,
    OperatorNotRunningError,
    Ready,
    ResourceTimeoutError,
    UnschedulableError,
    Waiting,
    assess_startup,
    classify_pod,
    crd_missing_error,
    error_for_problem,
    pod_is_ready,
)


def pod(
    *,
    phase: str = "Pending",
    waiting: tuple[str, str] | None = None,
    last_terminated: dict[str, Any] | None = None,
    terminated: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    restart_policy: str = "Always",
    image: str = "ghcr.io/dask/dask:latest",
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting[0], "message": waiting[1]}
    if terminated:
        state["terminated"] = terminated
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if state or last_terminated:
        status["containerStatuses"] = [
            {
                "name": "scheduler",
                "image": image,
                "state": state,
                "lastState": {"terminated": last_terminated} if last_terminated else {},
                "restartCount": 3,
            }
        ]
    return {
        "metadata": {"name": "foo-scheduler"},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{"name": "scheduler", "image": image}],
        },
        "status": status,
    }


READY = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]
UNSCHEDULABLE = [
    {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient memory.",
    }
]


# ------------------------------------------------------------------ classify_pod


def test_healthy_pending_pod_has_no_problem() -> None:
    assert classify_pod(pod()) is None
    assert classify_pod(pod(phase="Running", conditions=READY)) is None


def test_image_pull_backoff_is_fatal_and_names_the_image() -> None:
    problem = classify_pod(
        pod(waiting=("ImagePullBackOff", 'Back-off pulling image "nope:1"'), image="nope:1")
    )
    assert problem is not None
    assert problem.kind == "image-pull"
    assert problem.fatal
    error = error_for_problem(problem)
    assert isinstance(error, ImagePullError)
    assert "nope:1" in str(error)
    assert "ImagePullBackOff" in str(error)
    assert "foo-scheduler" in str(error)


def test_err_image_pull_waits_for_the_back_off() -> None:
    problem = classify_pod(pod(waiting=("ErrImagePull", "manifest unknown")))
    assert problem is not None
    assert problem.kind == "image-pull"
    assert not problem.fatal


def test_crash_loop_has_the_last_termination_and_log_tail() -> None:
    problem = classify_pod(
        pod(
            phase="Running",
            waiting=("CrashLoopBackOff", ""),
            last_terminated={"exitCode": 1, "reason": "Error"},
        )
    )
    assert problem is not None
    assert problem.kind == "crash-loop"
    assert problem.fatal
    assert "exit code 1" in problem.message
    error = error_for_problem(problem, "Traceback...\nImportError: no module named foo")
    assert isinstance(error, CrashLoopError)
    assert "ImportError: no module named foo" in str(error)
    assert error.pod == "foo-scheduler"


def test_unschedulable_carries_the_scheduler_message() -> None:
    problem = classify_pod(pod(conditions=UNSCHEDULABLE))
    assert problem is not None
    assert problem.kind == "unschedulable"
    assert not problem.fatal
    error = error_for_problem(problem)
    assert isinstance(error, UnschedulableError)
    assert "Insufficient memory" in str(error)


def test_container_config_error() -> None:
    problem = classify_pod(pod(waiting=("CreateContainerConfigError", 'secret "creds" not found')))
    assert problem is not None
    assert problem.kind == "container-config"
    assert 'secret "creds" not found' in str(error_for_problem(problem))


def test_terminated_with_restart_never_is_a_failure() -> None:
    problem = classify_pod(
        pod(terminated={"exitCode": 2, "reason": "Error"}, restart_policy="Never")
    )
    assert problem is not None
    assert problem.kind == "failed"
    assert problem.fatal


def test_a_pod_being_deleted_has_no_startup_problem() -> None:
    """A worker retired by a scale-down ends Failed while it is deleted: not a start failure."""
    going = {
        "metadata": {"name": "p", "deletionTimestamp": "2026-12-03T15:46:50Z"},
        "status": {"phase": "Failed"},
    }
    assert classify_pod(going) is None
    failed_now = {"metadata": {"name": "p"}, "status": {"phase": "Failed"}}
    assert classify_pod(failed_now) is not None


def test_failed_phase() -> None:
    problem = classify_pod(
        {"metadata": {"name": "p"}, "status": {"phase": "Failed", "reason": "Evicted"}}
    )
    assert problem is not None
    assert problem.reason == "Evicted"


def test_init_container_problems_count() -> None:
    p = pod()
    p["status"]["initContainerStatuses"] = [
        {
            "name": "init",
            "image": "busybox:nope",
            "state": {"waiting": {"reason": "InvalidImageName"}},
        }
    ]
    problem = classify_pod(p)
    assert problem is not None
    assert problem.container == "init"
    assert problem.image == "busybox:nope"


def test_pod_is_ready() -> None:
    assert pod_is_ready(pod(phase="Running", conditions=READY))
    assert not pod_is_ready(pod(phase="Running"))
    assert not pod_is_ready(pod())


# ------------------------------------------------------------------ assess_startup


def _assess(
    cluster: dict[str, Any] | None,
    scheduler: dict[str, Any] | None,
    service: dict[str, Any] | None = None,
    elapsed: float = 1,
) -> Any:
    return assess_startup(
        cluster, scheduler, service, name="foo", namespace="ns", elapsed=elapsed, timeout=60
    )


CREATED: dict[str, Any] = {"metadata": {"name": "foo"}}
PENDING: dict[str, Any] = {"metadata": {"name": "foo"}, "status": {"phase": "Pending"}}
SERVICE: dict[str, Any] = {"metadata": {"name": "foo-scheduler"}}


def test_ready_needs_a_ready_pod_and_the_service() -> None:
    ready = pod(phase="Running", conditions=READY)
    assert isinstance(_assess(PENDING, ready, SERVICE), Ready)
    assert isinstance(_assess(PENDING, ready, None), Waiting)


def test_a_suspended_cluster_fails_at_once_saying_how_to_resume() -> None:
    suspended = {**PENDING, "spec": {"suspend": True}}
    decision = _assess(suspended, None)
    assert isinstance(decision, Failed)
    assert isinstance(decision.error, ClusterSuspendedError)
    message = str(decision.error)
    assert "DaskCluster 'foo' in namespace 'ns' is suspended" in message
    assert (
        """kubectl patch daskcluster foo -n ns --type=merge -p '{"spec": {"suspend": false}}'"""
        in message
    )


def test_waiting_for_the_operator() -> None:
    decision = _assess(CREATED, None)
    assert isinstance(decision, Waiting)
    assert "operator" in decision.status


def test_operator_not_running_after_the_timeout() -> None:
    decision = _assess(CREATED, None, elapsed=61)
    assert isinstance(decision, Failed)
    assert isinstance(decision.error, OperatorNotRunningError)
    assert isinstance(decision.error, TimeoutError)
    assert "Is the Dask operator running?" in str(decision.error)
    assert "'foo'" in str(decision.error)


def test_status_but_no_pod_is_a_timeout_not_a_missing_operator() -> None:
    decision = _assess(PENDING, None, elapsed=61)
    assert isinstance(decision, Failed)
    assert type(decision.error) is ResourceTimeoutError


def test_fatal_pod_problem_fails_immediately() -> None:
    decision = _assess(PENDING, pod(waiting=("ImagePullBackOff", "nope")), SERVICE, elapsed=2)
    assert isinstance(decision, Failed)
    assert isinstance(decision.error, ImagePullError)
    assert decision.problem is not None


def test_unschedulable_waits_then_fails_with_the_message() -> None:
    waiting = _assess(PENDING, pod(conditions=UNSCHEDULABLE), SERVICE)
    assert isinstance(waiting, Waiting)
    assert "Unschedulable" in waiting.status
    failed = _assess(PENDING, pod(conditions=UNSCHEDULABLE), SERVICE, elapsed=61)
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, UnschedulableError)
    assert "Insufficient memory" in str(failed.error)


def test_slow_pod_times_out_with_its_phase() -> None:
    failed = _assess(PENDING, pod(phase="Running"), SERVICE, elapsed=61)
    assert isinstance(failed, Failed)
    assert "still Running and not ready" in str(failed.error)


def test_vanished_cluster() -> None:
    assert isinstance(_assess(None, None), Waiting)
    assert isinstance(_assess(None, None, elapsed=61), Failed)


@pytest.mark.parametrize("group", ["kubernetes.dask.org"])
def test_crd_missing_message(group: str) -> None:
    error = crd_missing_error(group)
    assert isinstance(error, CRDNotInstalledError)
    assert "The DaskCluster CRD is not installed" in str(error)
    assert "helm" in str(error)
