"""DaskJob against a real Kubernetes with a real node: the reference `job.yaml`, a computing job
with a TTL, a failing job with `backoffLimit`, a job past its `activeDeadlineSeconds`, suspend.

The controller runs as a subprocess (`dask-controller run --namespace NS`) watching one fresh
namespace per test. Every wait is a poll against a deadline, never a bare sleep.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from e2e_support import (
    MANIFESTS,
    RUNNING,
    ControllerProcess,
    get_json,
    ready_node,
    until_controlled,
)

if TYPE_CHECKING:
    from ci.localk8s.pytest_plugin import Kubectl

#: Pods really start here (images pulled, scheduler readiness probe): waits are generous.
WAIT = 300.0

pytest.importorskip("dask_controller", reason="dask-controller is not installed")
pytestmark = pytest.mark.timeout(900)


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    until_controlled(what, check, timeout, interval=0.5)


_json = get_json


def _get(kubectl: Kubectl, ns: str, *what: str) -> dict[str, Any] | None:
    got = kubectl("get", "-n", ns, *what, "-o", "json", check=False)
    if got.returncode != 0:
        assert "NotFound" in got.stderr, got.stderr
        return None
    data: dict[str, Any] = json.loads(got.stdout)
    return data


@pytest.fixture
def controller(
    kubectl: Kubectl, k8s_kubeconfig: Path, crds: None, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """`dask-controller run --namespace NS` as a subprocess; yields its log file."""
    ctl = ControllerProcess(k8s_kubeconfig, namespace, tmp_path / "controller.log")
    ctl.start("--verbose")
    try:
        yield ctl.log
    finally:
        RUNNING.clear()
        # Delete the test's Dask objects while the controller still runs (kopf removes its
        # finalizers then); the namespace fixture strips whatever is left.
        if ctl.exited() is None:
            kubectl(
                "delete", "daskjobs,daskclusters,daskworkergroups", "--all", "-n", namespace,
                "--timeout=60s", check=False,
            )  # fmt: skip
        ctl.stop()


@pytest.fixture
def needs_node(kubectl: Kubectl) -> None:
    if not ready_node(kubectl):
        pytest.skip("needs a Ready node (kubelet) so that pods really run; none is Ready")


def _reference() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((MANIFESTS / "job.yaml").read_text())
    return body


def _job_body(name: str, script: str, **spec: Any) -> dict[str, Any]:
    """The reference job renamed, with one worker and the runner running ``script``."""
    body = _reference()
    del body["metadata"]["namespace"]
    body["metadata"]["name"] = name
    cluster = body["spec"]["cluster"]["spec"]
    cluster["worker"]["replicas"] = 1
    cluster["scheduler"]["service"]["selector"]["dask.org/cluster-name"] = name
    body["spec"]["job"]["spec"]["containers"][0]["args"] = ["python", "-c", script]
    body["spec"].update(spec)
    return body


def _apply(kubectl: Kubectl, ns: str, body: dict[str, Any]) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))


def _status(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    job = _get(kubectl, ns, "daskjob", name)
    status: dict[str, Any] = (job or {}).get("status") or {}
    return status


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            found: dict[str, Any] = cond
            return found
    return {}


def _runner_pods(kubectl: Kubectl, ns: str, job: str) -> dict[str, dict[str, Any]]:
    sel = f"dask.org/job-name={job},dask.org/component=job-runner"
    items = _json(kubectl, "get", "pods", "-n", ns, "-l", sel)["items"]
    return {p["metadata"]["name"]: p for p in items}


def _job_status_is(kubectl: Kubectl, ns: str, name: str, *wanted: str) -> Callable[[], bool]:
    def check() -> bool:
        return _status(kubectl, ns, name).get("jobStatus") in wanted

    return check


def _events(kubectl: Kubectl, ns: str, name: str) -> set[str]:
    items = _json(kubectl, "get", "events", "-n", ns)["items"]
    return {e["reason"] for e in items if e["involvedObject"].get("name") == name}


@pytest.mark.usefixtures("needs_node", "controller")
def test_reference_job_succeeds(kubectl: Kubectl, namespace: str) -> None:
    """`job.yaml` of the reference docs, verbatim but for its namespace (the test's own)."""
    ns = namespace
    body = _reference()
    assert body["metadata"].pop("namespace") == "default"
    _apply(kubectl, ns, body)

    _until("the DaskCluster", lambda: _get(kubectl, ns, "daskcluster", "simple-job") is not None)
    cluster = _json(kubectl, "get", "daskcluster", "-n", ns, "simple-job")
    assert cluster["metadata"]["labels"]["dask.org/job-name"] == "simple-job"
    [owner] = cluster["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("DaskJob", "simple-job", True)

    _until(
        "jobStatus Successful",
        _job_status_is(kubectl, ns, "simple-job", "Successful", "Failed"),
    )
    status = _status(kubectl, ns, "simple-job")
    assert status["jobStatus"] == "Successful", status
    assert status["clusterName"] == "simple-job"
    assert status["jobRunnerPodName"] == "simple-job-runner"
    assert status["startTime"] <= status["endTime"]
    assert _condition(status, "Complete")["status"] == "True"
    job = _json(kubectl, "get", "daskjob", "-n", ns, "simple-job")
    assert status["observedGeneration"] == job["metadata"]["generation"]

    runner = _json(kubectl, "get", "pod", "-n", ns, "simple-job-runner")
    assert runner["status"]["phase"] == "Succeeded"
    assert runner["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    env = {e["name"]: e.get("value") for e in runner["spec"]["containers"][0]["env"]}
    assert (
        env["DASK_SCHEDULER_ADDRESS"] == f"tcp://simple-job-scheduler.{ns}.svc.cluster.local:8786"
    )
    assert runner["spec"]["restartPolicy"] == "OnFailure"
    assert runner["metadata"]["labels"]["dask.org/component"] == "job-runner"

    _until(
        "the DaskCluster and its pods gone",
        lambda: (
            _get(kubectl, ns, "daskcluster", "simple-job") is None
            and not _json(
                kubectl, "get", "pods", "-n", ns, "-l", "dask.org/component in (scheduler,worker)"
            )["items"]
        ),
    )
    assert set(_runner_pods(kubectl, ns, "simple-job")) == {"simple-job-runner"}  # kept
    assert {"ClusterCreated", "RunnerCreated", "JobSucceeded", "ClusterDeleted"} <= _events(
        kubectl, ns, "simple-job"
    )

    # Deleting the job removes everything, the Completed runner included.
    kubectl("delete", "daskjob", "-n", ns, "simple-job", "--timeout=60s")
    _until("the runner pod gone", lambda: not _runner_pods(kubectl, ns, "simple-job"))


COMPUTE = """
from distributed import Client
client = Client()
client.wait_for_workers(1, timeout=120)
total = client.submit(sum, range(101)).result()
print("WORKERS", len(client.scheduler_info()["workers"]), flush=True)
print("RESULT", total, flush=True)
"""


@pytest.mark.usefixtures("needs_node", "controller")
def test_runner_computes_through_the_cluster_and_ttl_deletes_the_job(
    kubectl: Kubectl, namespace: str
) -> None:
    ns = namespace
    _apply(kubectl, ns, _job_body("compute", COMPUTE, ttlSecondsAfterFinished=20))
    _until("the job finished", _job_status_is(kubectl, ns, "compute", "Successful", "Failed"))
    status = _status(kubectl, ns, "compute")
    assert status["jobStatus"] == "Successful", status
    log = kubectl("logs", "-n", ns, "compute-runner").stdout  # kept after completion
    assert "RESULT 5050" in log
    assert "WORKERS 1" in log
    _until("the job deleted by its TTL", lambda: _get(kubectl, ns, "daskjob", "compute") is None)
    end = status["endTime"]
    assert end  # deleted after endTime + 20s, not before (the job existed when we read it)
    _until("its runner pod garbage-collected", lambda: not _runner_pods(kubectl, ns, "compute"))


FAIL = "import sys; print('boom: the runner failed on purpose', flush=True); sys.exit(3)"


@pytest.mark.usefixtures("needs_node", "controller")
def test_failing_job_retries_up_to_backoff_limit(kubectl: Kubectl, namespace: str) -> None:
    ns = namespace
    body = _job_body("failing", FAIL, backoffLimit=1)
    body["spec"]["job"]["spec"]["restartPolicy"] = "Never"
    _apply(kubectl, ns, body)
    _until("the job finished", _job_status_is(kubectl, ns, "failing", "Successful", "Failed"))
    status = _status(kubectl, ns, "failing")
    assert status["jobStatus"] == "Failed", status
    assert status["failed"] == 2
    failed = _condition(status, "Failed")
    assert failed["status"] == "True"
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "boom: the runner failed on purpose" in failed["message"]
    assert status["endTime"]
    # Both attempts are kept, with distinct names and their logs.
    pods = _runner_pods(kubectl, ns, "failing")
    assert set(pods) == {"failing-runner", "failing-runner-1"}
    assert not [p for p in pods.values() if p["metadata"].get("deletionTimestamp")]
    _until(
        "both attempts in phase Failed",
        lambda: (
            {p["status"]["phase"] for p in _runner_pods(kubectl, ns, "failing").values()}
            == {"Failed"}
        ),
        timeout=60,
    )
    assert "boom" in kubectl("logs", "-n", ns, "failing-runner").stdout
    _until("the DaskCluster gone", lambda: _get(kubectl, ns, "daskcluster", "failing") is None)
    assert "JobFailed" in _events(kubectl, ns, "failing")


SLEEP = "import time; print('working', flush=True); time.sleep(900)"


@pytest.mark.usefixtures("needs_node", "controller")
def test_active_deadline_stops_the_work(kubectl: Kubectl, namespace: str) -> None:
    ns = namespace
    _apply(kubectl, ns, _job_body("slow", SLEEP, activeDeadlineSeconds=60))
    _until("the runner running", _job_status_is(kubectl, ns, "slow", "Running", "Failed"))
    _until("the job finished", _job_status_is(kubectl, ns, "slow", "Successful", "Failed"))
    status = _status(kubectl, ns, "slow")
    assert status["jobStatus"] == "Failed", status
    assert _condition(status, "Failed")["reason"] == "DeadlineExceeded"
    _until(
        "the runner and the cluster gone",
        lambda: (
            not [
                p
                for p in _runner_pods(kubectl, ns, "slow").values()
                if not p["metadata"].get("deletionTimestamp")
            ]
            and _get(kubectl, ns, "daskcluster", "slow") is None
        ),
        timeout=60,
    )


@pytest.mark.usefixtures("needs_node", "controller")
def test_suspend_and_resume(kubectl: Kubectl, namespace: str) -> None:
    ns = namespace
    _apply(kubectl, ns, _job_body("pause", SLEEP))
    _until("the runner running", _job_status_is(kubectl, ns, "pause", "Running"))
    kubectl(
        "patch", "daskjob", "pause", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    _until("jobStatus Suspended", _job_status_is(kubectl, ns, "pause", "Suspended"))
    _until(
        "the cluster and the runner torn down",
        lambda: (
            _get(kubectl, ns, "daskcluster", "pause") is None
            and not _runner_pods(kubectl, ns, "pause")
        ),
        timeout=120,
    )
    assert _get(kubectl, ns, "daskjob", "pause") is not None
    kubectl(
        "patch", "daskjob", "pause", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    _until("running again", _job_status_is(kubectl, ns, "pause", "Running"))
    assert _get(kubectl, ns, "daskcluster", "pause") is not None
    assert {"JobSuspended", "JobResumed"} <= _events(kubectl, ns, "pause")


QUICK = "from distributed import Client; print('second', Client().scheduler_info()['id'])"


@pytest.mark.usefixtures("needs_node", "controller")
def test_delete_and_recreate_does_not_collide(kubectl: Kubectl, namespace: str) -> None:
    """A job deleted while running and applied again at once: the new one waits for the old
    cluster to go, never adopts the old runner, and runs to the end."""
    ns = namespace
    _apply(kubectl, ns, _job_body("again", SLEEP))
    _until("the first runner running", _job_status_is(kubectl, ns, "again", "Running"))
    old_uid = _json(kubectl, "get", "daskjob", "-n", ns, "again")["metadata"]["uid"]
    kubectl("delete", "daskjob", "-n", ns, "again", "--wait=true", "--timeout=60s")
    _apply(kubectl, ns, _job_body("again", QUICK))  # the old cluster and runner still exist
    new_uid = _json(kubectl, "get", "daskjob", "-n", ns, "again")["metadata"]["uid"]
    assert new_uid != old_uid
    _until("the second job finished", _job_status_is(kubectl, ns, "again", "Successful", "Failed"))
    status = _status(kubectl, ns, "again")
    assert status["jobStatus"] == "Successful", status
    runner = _json(kubectl, "get", "pod", "-n", ns, status["jobRunnerPodName"])
    assert [o["uid"] for o in runner["metadata"]["ownerReferences"]] == [new_uid]
    assert "second" in kubectl("logs", "-n", ns, status["jobRunnerPodName"]).stdout
    _until(
        "no runner of the first job left",
        lambda: all(
            old_uid not in [o["uid"] for o in p["metadata"].get("ownerReferences", [])]
            for p in _runner_pods(kubectl, ns, "again").values()
        ),
    )


@pytest.mark.usefixtures("needs_node", "controller")
def test_crash_looping_runner_is_stopped_by_backoff_limit(kubectl: Kubectl, namespace: str) -> None:
    """The default restartPolicy OnFailure: the kubelet restarts the runner in place; those
    restarts count against backoffLimit, so the job fails instead of restarting forever."""
    ns = namespace
    _apply(kubectl, ns, _job_body("crashy", FAIL, backoffLimit=1))
    _until("the job finished", _job_status_is(kubectl, ns, "crashy", "Successful", "Failed"))
    status = _status(kubectl, ns, "crashy")
    assert status["jobStatus"] == "Failed", status
    assert status["failed"] >= 2  # (a pass may see a restart and the next crash at once)
    failed = _condition(status, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "boom: the runner failed on purpose" in failed["message"]
    _until(
        "the crash-looping runner and the cluster gone",
        lambda: (
            not [
                p
                for p in _runner_pods(kubectl, ns, "crashy").values()
                if not p["metadata"].get("deletionTimestamp")
            ]
            and _get(kubectl, ns, "daskcluster", "crashy") is None
        ),
        timeout=120,
    )
