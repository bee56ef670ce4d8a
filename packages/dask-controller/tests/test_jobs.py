"""DaskJob: builders and reconcile passes against the in-memory API (no cluster, no clock)."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_kube import FakeKube

from dask_controller import builders as b
from dask_controller import jobs
from dask_controller.reconcile import Outcome
from dask_controller.settings import Settings
from dask_crds import constants as c

MANIFESTS = Path(__file__).parent / "manifests"
SETTINGS = Settings()
NS = "ns1"
JOB = "simple-job"
T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)

pytestmark = pytest.mark.timeout(30)


def _manifest() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((MANIFESTS / "job.yaml").read_text())
    obj["metadata"]["namespace"] = NS
    return obj


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add("DaskJob", _manifest())
    return k


async def _job(kube: FakeKube, name: str = JOB) -> dict[str, Any]:
    obj = await kube.get_custom("DaskJob", NS, name)
    assert obj is not None
    return obj


async def _pass(kube: FakeKube, seconds: float = 0, name: str = JOB) -> Outcome:
    return await jobs.reconcile_job(kube, SETTINGS, await _job(kube, name), now=_at(seconds))


async def _status(kube: FakeKube, name: str = JOB) -> dict[str, Any]:
    status: dict[str, Any] = (await _job(kube, name)).get("status") or {}
    return status


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    found: dict[str, Any] = next(x for x in status["conditions"] if x["type"] == ctype)
    return found


def _edit(kube: FakeKube, spec_patch: dict[str, Any], name: str = JOB) -> None:
    job = kube.objects[("DaskJob", NS, name)]
    job["spec"].update(spec_patch)
    job["metadata"]["generation"] += 1


def _pod(kube: FakeKube, name: str) -> dict[str, Any]:
    return kube.objects[("Pod", NS, name)]


def _scheduler_ready(kube: FakeKube, name: str = JOB) -> None:
    """What the DaskCluster loop and the kubelet would do: a Ready scheduler pod of the cluster."""
    cluster = kube.objects[("DaskCluster", NS, name)]
    kube.add(
        "Pod",
        {
            "metadata": {
                "name": f"{name}-scheduler",
                "namespace": NS,
                "labels": {c.LABEL_CLUSTER: name, c.LABEL_COMPONENT: "scheduler"},
                "ownerReferences": [b.owner_reference(cluster)],
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
    )


def _runner_state(
    kube: FakeKube,
    name: str,
    phase: str,
    exit_code: int | None = None,
    restarts: int = 0,
    waiting: str | None = None,
) -> None:
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {
            "terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}
        }
    if waiting is not None:
        state = {"waiting": {"reason": waiting}}
    _pod(kube, name)["status"] = {
        "phase": phase,
        "containerStatuses": [{"name": "job", "restartCount": restarts, "state": state}],
    }


async def _to_running(kube: FakeKube, name: str = JOB) -> None:
    await _pass(kube, 0, name)
    _scheduler_ready(kube, name)
    await _pass(kube, 1, name)
    _runner_state(kube, f"{name}-runner", "Running")
    await _pass(kube, 2, name)


# -- builders --------------------------------------------------------------------------------


def test_runner_names_are_distinct_per_attempt() -> None:
    assert b.job_runner_pod_name("j") == "j-runner"
    assert b.job_runner_pod_name("j", 2) == "j-runner-2"
    assert b.job_runner_attempt("j", "j-runner") == 0
    assert b.job_runner_attempt("j", "j-runner-12") == 12
    assert b.job_runner_attempt("j", "j-runner-x") is None
    assert b.job_runner_attempt("j", "other") is None


def test_job_cluster_metadata_propagates() -> None:
    job = _manifest()
    job["metadata"].update(
        uid="u1",
        labels={"team": "ml", "tier": "a", c.LABEL_JOB: "spoofed"},
        annotations={"cost": "x", "kopf.zalando.org/last": "1", "kubectl.kubernetes.io/l": "2"},
    )
    job["spec"]["cluster"]["metadata"] = {"labels": {"tier": "b"}, "annotations": {"n": "1"}}
    cluster = b.build_job_cluster(job)
    meta = cluster["metadata"]
    assert meta["name"] == JOB
    assert cluster["kind"] == "DaskCluster"
    assert meta["labels"] == {"team": "ml", "tier": "b", c.LABEL_JOB: JOB}
    assert meta["annotations"] == {"cost": "x", "n": "1"}
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "DaskJob", JOB, "u1", True,
    )  # fmt: skip
    assert cluster["spec"] == job["spec"]["cluster"]["spec"]


def test_runner_pod_env_labels_restart_policy() -> None:
    job = _manifest()
    job["metadata"].update(uid="u1", labels={"team": "ml"}, annotations={"a": "1"})
    job["spec"]["job"]["metadata"] = {"labels": {"runner": "yes"}}
    addr = f"tcp://{JOB}-scheduler.{NS}.svc.cluster.local:8786"
    pod = b.build_job_runner_pod(job, addr, attempt=1)
    assert pod["metadata"]["name"] == f"{JOB}-runner-1"
    labels = pod["metadata"]["labels"]
    assert labels[c.LABEL_CLUSTER] == JOB
    assert labels[c.LABEL_COMPONENT] == "job-runner"
    assert labels[c.LABEL_JOB] == JOB
    assert labels["team"] == "ml"
    assert labels["runner"] == "yes"
    assert pod["metadata"]["annotations"] == {"a": "1"}
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u1"
    env = pod["spec"]["containers"][0]["env"]
    assert env == [{"name": "DASK_SCHEDULER_ADDRESS", "value": addr}]
    assert pod["spec"]["restartPolicy"] == "OnFailure"
    job["spec"]["job"]["spec"]["restartPolicy"] = "Never"
    assert b.build_job_runner_pod(job, addr)["spec"]["restartPolicy"] == "Never"


def test_pod_failures() -> None:
    def pod(phase: str, restarts: int = 0, state: dict[str, Any] | None = None) -> dict[str, Any]:
        cs = {"restartCount": restarts, "state": state or {"running": {}}}
        return {"status": {"phase": phase, "containerStatuses": [cs]}}

    assert jobs.pod_failures(pod("Running")) == 0
    assert jobs.pod_failures(pod("Failed", 0, {"terminated": {"exitCode": 1}})) == 1
    assert jobs.pod_failures(pod("Failed")) == 1  # evicted: no container detail
    assert jobs.pod_failures(pod("Running", 2)) == 2
    assert jobs.pod_failures(pod("Running", 2, {"waiting": {"reason": "CrashLoopBackOff"}})) == 3
    assert jobs.pod_failures(pod("Succeeded", 1, {"terminated": {"exitCode": 0}})) == 1
    assert jobs.pod_failures({}) == 0


# -- the reference lifecycle -----------------------------------------------------------------


async def test_first_pass_creates_the_cluster_only(kube: FakeKube) -> None:
    out = await _pass(kube)
    assert kube.names("DaskCluster") == [JOB]
    assert kube.names("Pod") == []  # the runner waits for the scheduler
    cluster = kube.objects[("DaskCluster", NS, JOB)]
    assert cluster["metadata"]["labels"][c.LABEL_JOB] == JOB
    assert cluster["metadata"]["ownerReferences"][0]["uid"] == (await _job(kube))["metadata"]["uid"]
    status = await _status(kube)
    assert status["jobStatus"] == "ClusterCreated"
    assert status["clusterName"] == JOB
    assert status["startTime"] == "2026-01-01T12:00:00Z"
    assert status["observedGeneration"] == 1
    assert _cond(status, "ClusterReady")["status"] == "False"
    assert _cond(status, "SpecValid")["status"] == "True"
    assert {e.reason for e in out.events} == {"ClusterCreated", "JobClusterCreated"}
    assert out.requeue_after is not None

    calls = len(kube.calls)
    out = await _pass(kube, 1)
    assert kube.calls[calls:] == []  # nothing new until the scheduler is ready
    assert not out.events
    assert (await _status(kube))["startTime"] == "2026-01-01T12:00:00Z"


async def test_runner_created_once_the_scheduler_is_ready(kube: FakeKube) -> None:
    await _pass(kube)
    _scheduler_ready(kube)
    out = await _pass(kube, 1)
    assert kube.names("Pod") == [f"{JOB}-runner", f"{JOB}-scheduler"]
    runner = _pod(kube, f"{JOB}-runner")
    env = {e["name"]: e.get("value") for e in runner["spec"]["containers"][0]["env"]}
    assert env["DASK_SCHEDULER_ADDRESS"] == f"tcp://{JOB}-scheduler.{NS}.svc.cluster.local:8786"
    assert runner["spec"]["restartPolicy"] == "OnFailure"
    assert runner["metadata"]["labels"][c.LABEL_COMPONENT] == "job-runner"
    assert "RunnerCreated" in {e.reason for e in out.events}
    status = await _status(kube)
    assert status["jobStatus"] == "ClusterCreated"  # the runner pod is still Pending
    assert status["jobRunnerPodName"] == f"{JOB}-runner"
    assert _cond(status, "ClusterReady")["status"] == "True"

    _runner_state(kube, f"{JOB}-runner", "Running")
    out = await _pass(kube, 2)
    assert (await _status(kube))["jobStatus"] == "Running"
    assert [e.reason for e in out.events] == ["JobRunning"]
    calls = len(kube.calls)
    await _pass(kube, 3)
    assert kube.calls[calls:] == []  # steady: nothing created, nothing written


async def test_cluster_domain_and_service_port_reach_the_runner(kube: FakeKube) -> None:
    await _pass(kube)
    kube.add(
        "Service",
        {"metadata": {"name": f"{JOB}-scheduler", "namespace": NS},
         "spec": {"ports": [{"name": "tcp-comm", "port": 9999}]}},
    )  # fmt: skip
    _scheduler_ready(kube)
    settings = Settings(cluster_domain="corp.example")
    await jobs.reconcile_job(kube, settings, await _job(kube), now=_at(1))
    env = _pod(kube, f"{JOB}-runner")["spec"]["containers"][0]["env"]
    assert env[0]["value"] == f"tcp://{JOB}-scheduler.{NS}.svc.corp.example:9999"


async def test_success_deletes_the_cluster_and_keeps_the_runner(kube: FakeKube) -> None:
    await _to_running(kube)
    _runner_state(kube, f"{JOB}-runner", "Succeeded", exit_code=0)
    out = await _pass(kube, 30)
    assert kube.names("DaskCluster") == []
    assert f"{JOB}-runner" in kube.names("Pod")
    status = await _status(kube)
    assert status["jobStatus"] == "Successful"
    assert status["endTime"] == "2026-01-01T12:00:30Z"
    assert status["startTime"] == "2026-01-01T12:00:00Z"
    assert _cond(status, "Complete")["status"] == "True"
    assert _cond(status, "Failed")["status"] == "False"
    assert {e.reason for e in out.events} == {"JobSucceeded", "ClusterDeleted"}
    calls = len(kube.calls)
    out = await _pass(kube, 40)
    assert kube.calls[calls:] == []
    assert not out.events
    assert out.requeue_after is None


# -- beyond the references -------------------------------------------------------------------


async def test_backoff_limit_with_never_keeps_every_attempt(kube: FakeKube) -> None:
    kube.objects[("DaskJob", NS, JOB)]["spec"]["job"]["spec"]["restartPolicy"] = "Never"
    _edit(kube, {"backoffLimit": 1})
    await _to_running(kube)
    _runner_state(kube, f"{JOB}-runner", "Failed", exit_code=1)
    out = await _pass(kube, 10)
    assert f"{JOB}-runner-1" in kube.names("Pod")
    assert f"{JOB}-runner" in kube.names("Pod")  # kept for its log
    status = await _status(kube)
    assert status["jobStatus"] == "Running"
    assert status["failed"] == 1
    assert status["jobRunnerPodName"] == f"{JOB}-runner-1"
    assert "retry after 1 failure(s)" in next(e.message for e in out.events)

    kube.set_pod_log(f"{JOB}-runner-1", "\n".join(f"line {i}" for i in range(50)))
    _runner_state(kube, f"{JOB}-runner-1", "Failed", exit_code=2)
    out = await _pass(kube, 20)
    status = await _status(kube)
    assert status["jobStatus"] == "Failed"
    assert status["failed"] == 2
    assert status["endTime"] == "2026-01-01T12:00:20Z"
    failed = _cond(status, "Failed")
    assert failed["status"] == "True"
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "backoffLimit=1" in failed["message"]
    assert "line 49" in failed["message"]
    assert "line 29" not in failed["message"]
    assert kube.names("DaskCluster") == []
    assert {f"{JOB}-runner", f"{JOB}-runner-1"} <= set(kube.names("Pod"))
    assert f"{JOB}-runner-2" not in kube.names("Pod")
    assert ("Warning", "JobFailed") in {(e.type, e.reason) for e in out.events}
    # finished stays finished: no new attempt
    calls = len(kube.calls)
    await _pass(kube, 30)
    assert kube.calls[calls:] == []


async def test_backoff_limit_counts_restarts_in_place(kube: FakeKube) -> None:
    _edit(kube, {"backoffLimit": 2})
    await _to_running(kube)
    _runner_state(kube, f"{JOB}-runner", "Running", restarts=2)  # OnFailure: kubelet restarts
    await _pass(kube, 10)
    assert (await _status(kube))["jobStatus"] == "Running"
    assert (await _status(kube))["failed"] == 2
    kube.set_pod_log(f"{JOB}-runner", "Traceback...\nZeroDivisionError")
    _runner_state(kube, f"{JOB}-runner", "Running", restarts=2, waiting="CrashLoopBackOff")
    await _pass(kube, 20)
    status = await _status(kube)
    assert status["jobStatus"] == "Failed"
    assert "ZeroDivisionError" in _cond(status, "Failed")["message"]
    # a runner restarting forever is stopped; the cluster goes too
    assert f"{JOB}-runner" not in kube.names("Pod")
    assert kube.names("DaskCluster") == []


async def test_default_backoff_limit_is_six(kube: FakeKube) -> None:
    await _to_running(kube)
    _runner_state(kube, f"{JOB}-runner", "Running", restarts=6)
    await _pass(kube, 10)
    assert (await _status(kube))["jobStatus"] == "Running"
    _runner_state(kube, f"{JOB}-runner", "Running", restarts=7)
    await _pass(kube, 11)
    assert (await _status(kube))["jobStatus"] == "Failed"


async def test_active_deadline_stops_the_work(kube: FakeKube) -> None:
    _edit(kube, {"activeDeadlineSeconds": 60})
    await _to_running(kube)
    out = await _pass(kube, 50)
    assert out.requeue_after == pytest.approx(10.0)
    assert (await _status(kube))["jobStatus"] == "Running"
    kube.set_pod_log(f"{JOB}-runner", "still working")
    out = await _pass(kube, 60)
    status = await _status(kube)
    assert status["jobStatus"] == "Failed"
    assert status["endTime"] == "2026-01-01T12:01:00Z"
    failed = _cond(status, "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert "still working" in failed["message"]
    assert f"{JOB}-runner" not in kube.names("Pod")
    assert kube.names("DaskCluster") == []
    assert {"RunnerDeleted", "ClusterDeleted", "JobFailed"} <= {e.reason for e in out.events}


async def test_deadline_covers_a_cluster_that_never_becomes_ready(kube: FakeKube) -> None:
    _edit(kube, {"activeDeadlineSeconds": 30})
    await _pass(kube, 0)
    await _pass(kube, 31)
    assert (await _status(kube))["jobStatus"] == "Failed"
    assert kube.names("DaskCluster") == []
    assert kube.names("Pod") == []


async def test_ttl_deletes_the_job_after_it_finished(kube: FakeKube) -> None:
    _edit(kube, {"ttlSecondsAfterFinished": 100})
    await _to_running(kube)
    _runner_state(kube, f"{JOB}-runner", "Succeeded", exit_code=0)
    out = await _pass(kube, 10)
    assert out.requeue_after == 100
    out = await _pass(kube, 60)
    assert out.requeue_after == pytest.approx(50)
    assert kube.names("DaskJob") == [JOB]
    out = await _pass(kube, 110)
    assert kube.names("DaskJob") == []
    assert [e.reason for e in out.events] == ["TTLExpired"]


async def test_suspend_tears_down_and_resume_recreates(kube: FakeKube) -> None:
    await _to_running(kube)
    _edit(kube, {"suspend": True})
    out = await _pass(kube, 10)
    assert kube.names("DaskCluster") == []
    assert f"{JOB}-runner" not in kube.names("Pod")
    status = await _status(kube)
    assert status["jobStatus"] == "Suspended"
    assert status.get("startTime") is None
    assert _cond(status, "Suspended")["status"] == "True"
    assert {"JobSuspended", "RunnerDeleted", "ClusterDeleted"} <= {e.reason for e in out.events}
    kube.objects.pop(("Pod", NS, f"{JOB}-scheduler"))  # garbage-collected with the cluster
    assert kube.names("DaskJob") == [JOB]
    calls = len(kube.calls)
    await _pass(kube, 11)
    assert kube.calls[calls:] == []

    _edit(kube, {"suspend": False})
    out = await _pass(kube, 20)
    assert kube.names("DaskCluster") == [JOB]
    status = await _status(kube)
    assert status["jobStatus"] == "ClusterCreated"
    assert status["startTime"] == "2026-01-01T12:00:20Z"
    assert _cond(status, "Suspended")["status"] == "False"
    assert "JobResumed" in {e.reason for e in out.events}
    _scheduler_ready(kube)
    await _pass(kube, 21)
    assert f"{JOB}-runner" in kube.names("Pod")


async def test_suspended_from_the_start_creates_nothing(kube: FakeKube) -> None:
    _edit(kube, {"suspend": True})
    await _pass(kube)
    assert kube.names("DaskCluster") == []
    assert kube.names("Pod") == []
    assert (await _status(kube))["jobStatus"] == "Suspended"


async def test_recreated_job_does_not_collide_with_the_old_incarnation(kube: FakeKube) -> None:
    await _to_running(kube)
    old_uid = (await _job(kube))["metadata"]["uid"]
    # The job is deleted and recreated with the same name while the old objects still exist.
    kube.objects.pop(("DaskJob", NS, JOB))
    kube.add("DaskJob", _manifest())
    assert (await _job(kube))["metadata"]["uid"] != old_uid
    # the old runner is terminating: it keeps its name for a while
    _pod(kube, f"{JOB}-runner")["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:05Z"

    out = await _pass(kube, 10)
    # the old cluster (owned by the old uid) is deleted, not adopted; no new one yet
    assert kube.names("DaskCluster") == []
    status = await _status(kube)
    assert status["jobStatus"] == "JobCreated"
    assert _cond(status, "ClusterReady")["reason"] == "WaitingForPreviousCluster"
    assert out.requeue_after == 2.0
    # its scheduler pod is still there: wait for it
    await _pass(kube, 11)
    assert kube.names("DaskCluster") == []
    kube.objects.pop(("Pod", NS, f"{JOB}-scheduler"))
    await _pass(kube, 12)
    assert kube.names("DaskCluster") == [JOB]
    _scheduler_ready(kube)
    await _pass(kube, 13)
    # a fresh, distinct runner name while the old one terminates
    assert f"{JOB}-runner-1" in kube.names("Pod")
    new_uid = (await _job(kube))["metadata"]["uid"]
    assert _pod(kube, f"{JOB}-runner-1")["metadata"]["ownerReferences"][0]["uid"] == new_uid
    assert (await _status(kube))["jobRunnerPodName"] == f"{JOB}-runner-1"


async def test_old_incarnation_runner_is_deleted(kube: FakeKube) -> None:
    await _to_running(kube)
    kube.objects.pop(("DaskJob", NS, JOB))
    kube.objects.pop(("DaskCluster", NS, JOB))
    kube.objects.pop(("Pod", NS, f"{JOB}-scheduler"))
    kube.add("DaskJob", _manifest())
    await _pass(kube, 10)
    assert f"{JOB}-runner" not in kube.names("Pod")  # not ours: deleted (uid precondition)
    assert kube.names("DaskCluster") == [JOB]


async def test_foreign_cluster_is_not_touched(kube: FakeKube) -> None:
    kube.add("DaskCluster", {"metadata": {"name": JOB, "namespace": NS}, "spec": {}})
    out = await _pass(kube)
    assert kube.names("DaskCluster") == [JOB]
    assert kube.objects[("DaskCluster", NS, JOB)]["spec"] == {}
    assert kube.names("Pod") == []
    status = await _status(kube)
    assert _cond(status, "ClusterReady")["reason"] == "ClusterConflict"
    assert ("Warning", "ClusterConflict") in {(e.type, e.reason) for e in out.events}


async def test_deleted_cluster_of_a_running_job_comes_back(kube: FakeKube) -> None:
    await _to_running(kube)
    kube.objects.pop(("DaskCluster", NS, JOB))
    kube.objects.pop(("Pod", NS, f"{JOB}-scheduler"))
    await _pass(kube, 10)
    assert kube.names("DaskCluster") == [JOB]
    assert (await _status(kube))["startTime"] == "2026-01-01T12:00:00Z"


# -- refusing ---------------------------------------------------------------------------------


async def test_invalid_spec_is_refused_naming_the_field(kube: FakeKube) -> None:
    spec = kube.objects[("DaskJob", NS, JOB)]["spec"]
    spec["job"]["spec"]["containers"][0]["imagee"] = "typo"
    out = await _pass(kube)
    assert kube.names("DaskCluster") == []
    assert kube.names("Pod") == []
    status = await _status(kube)
    cond = _cond(status, "SpecValid")
    assert cond["status"] == "False"
    assert cond["reason"] == "InvalidSpec"
    assert "spec.job.spec.containers.0.imagee" in cond["message"]
    assert status["jobStatus"] == "Failed"
    assert ("Warning", "InvalidSpec") in {(e.type, e.reason) for e in out.events}
    # fixed: it runs
    del spec["job"]["spec"]["containers"][0]["imagee"]
    await _pass(kube, 5)
    assert kube.names("DaskCluster") == [JOB]
    assert _cond(await _status(kube), "SpecValid")["status"] == "True"


async def test_restart_policy_always_is_refused(kube: FakeKube) -> None:
    kube.objects[("DaskJob", NS, JOB)]["spec"]["job"]["spec"]["restartPolicy"] = "Always"
    await _pass(kube)
    assert kube.names("DaskCluster") == []
    assert "restartPolicy" in _cond(await _status(kube), "SpecValid")["message"]


async def test_invalid_name_is_refused() -> None:
    kube = FakeKube()
    body = _manifest()
    body["metadata"]["name"] = "j" * 45
    kube.add("DaskJob", body)
    await _pass(kube, name="j" * 45)
    assert kube.names("DaskCluster") == []
    assert _cond(await _status(kube, "j" * 45), "SpecValid")["reason"] == "InvalidName"


async def test_a_job_being_deleted_is_left_alone(kube: FakeKube) -> None:
    kube.objects[("DaskJob", NS, JOB)]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await _pass(kube)
    assert kube.calls == []


async def test_passes_are_idempotent_through_a_restart(kube: FakeKube) -> None:
    """A controller restarted between any two passes finds the same state (nothing in memory)."""
    await _to_running(kube)
    before = copy.deepcopy(kube.objects)
    await _pass(kube, 5)
    await _pass(kube, 6)
    assert {k: v for k, v in kube.objects.items() if k[0] != "DaskJob"} == {
        k: v for k, v in before.items() if k[0] != "DaskJob"
    }


async def test_label_updates_reach_the_cluster_and_runner(kube: FakeKube) -> None:
    await _to_running(kube)
    job = kube.objects[("DaskJob", NS, JOB)]
    job["metadata"]["labels"] = {"team": "ml"}
    job["metadata"]["annotations"] = {"cost": "42", "kubectl.kubernetes.io/last-applied": "x"}
    await _pass(kube, 5)
    cluster = kube.objects[("DaskCluster", NS, JOB)]
    assert cluster["metadata"]["labels"]["team"] == "ml"
    assert cluster["metadata"]["annotations"] == {"cost": "42"}
    runner = _pod(kube, f"{JOB}-runner")
    assert runner["metadata"]["labels"]["team"] == "ml"
    assert runner["metadata"]["labels"][c.LABEL_COMPONENT] == "job-runner"
    assert "kubectl.kubernetes.io/last-applied" not in runner["metadata"]["annotations"]
    calls = len(kube.calls)
    await _pass(kube, 6)
    assert kube.calls[calls:] == []


async def test_last_failed_attempt_is_kept_while_its_phase_lags(kube: FakeKube) -> None:
    """The container has exited (restartPolicy Never) but the pod still says Running: the job
    fails, and that pod is not deleted (it runs nothing and holds the log)."""
    kube.objects[("DaskJob", NS, JOB)]["spec"]["job"]["spec"]["restartPolicy"] = "Never"
    _edit(kube, {"backoffLimit": 0})
    await _to_running(kube)
    _runner_state(kube, f"{JOB}-runner", "Running", exit_code=1)
    await _pass(kube, 10)
    assert (await _status(kube))["jobStatus"] == "Failed"
    assert f"{JOB}-runner" in kube.names("Pod")


async def test_finished_job_stays_finished_when_its_spec_is_broken(kube: FakeKube) -> None:
    _edit(kube, {"ttlSecondsAfterFinished": 100})
    await _to_running(kube)
    _runner_state(kube, f"{JOB}-runner", "Succeeded", exit_code=0)
    await _pass(kube, 10)
    kube.objects[("DaskJob", NS, JOB)]["spec"]["job"]["spec"]["containers"][0]["imagee"] = "x"
    out = await _pass(kube, 20)
    assert (await _status(kube))["jobStatus"] == "Successful"
    assert out.requeue_after == pytest.approx(90)
