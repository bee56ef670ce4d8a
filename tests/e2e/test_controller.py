"""The controller against a real Kubernetes API: the reference DaskCluster applied verbatim.

The controller runs as a subprocess (`dask-controller run --namespace NS`) watching one fresh
namespace. Without a node the pods stay Pending, which is enough for everything about objects,
names, labels, recreation and scaling of the pod count; the tests that need running pods are
marked `needs_node` and skip with a reason when no node is Ready.

Every wait is a poll against a deadline, never a bare sleep.
"""

from __future__ import annotations

import json
import operator
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from e2e_support import (
    MANIFESTS,
    RUNNING,
    ControllerProcess,
    exists,
    get_json,
    ready_node,
    until_controlled,
)

if TYPE_CHECKING:
    from ci.localk8s.pytest_plugin import Kubectl

WAIT = 90.0

pytest.importorskip("dask_controller", reason="dask-controller is not installed")


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    until_controlled(what, check, timeout)


_json = get_json
_ready_node = ready_node


class Controller(ControllerProcess):
    """The test's controller, always with ``--verbose``."""

    def start(self, *args: str, pythonpath: str | None = None, **env: str) -> None:
        super().start("--verbose", *args, pythonpath=pythonpath, **env)


@pytest.fixture
def controller_proc(
    k8s_kubeconfig: Path, crds: None, namespace: str, tmp_path: Path
) -> Iterator[Controller]:
    ctl = Controller(k8s_kubeconfig, namespace, tmp_path / "controller.log")
    try:
        yield ctl
    finally:
        ctl.stop()
        RUNNING.clear()


@pytest.fixture
def controller(controller_proc: Controller) -> Path:
    """The controller, running; yields its log file."""
    controller_proc.start()
    return controller_proc.log


@pytest.fixture
def simple(kubectl: Kubectl, namespace: str, controller: Path) -> str:
    """The reference `simple` DaskCluster, applied verbatim."""
    kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "simple-cluster.yaml"))
    return "simple"


def _pods(kubectl: Kubectl, ns: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _json(kubectl, "get", "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _workers(kubectl: Kubectl, ns: str, group: str = "simple-default") -> list[str]:
    sel = f"dask.org/component=worker,dask.org/workergroup-name={group}"
    return sorted(p["metadata"]["name"] for p in _pods(kubectl, ns, sel))


def _exists(kubectl: Kubectl, ns: str, *what: str) -> bool:
    return exists(kubectl, "-n", ns, *what)


@pytest.fixture
def needs_node(kubectl: Kubectl) -> None:
    if not _ready_node(kubectl):
        pytest.skip("needs a Ready node (kubelet) so that pods really run; none is Ready")


def test_reference_cluster_creates_documented_objects(
    kubectl: Kubectl, namespace: str, simple: str
) -> None:
    ns = namespace
    _until("scheduler pod", lambda: _exists(kubectl, ns, "pod", "simple-scheduler"))
    _until("scheduler service", lambda: _exists(kubectl, ns, "service", "simple-scheduler"))
    _until(
        "default worker group", lambda: _exists(kubectl, ns, "daskworkergroup", "simple-default")
    )
    _until("two worker pods", lambda: len(_workers(kubectl, ns)) == 2)

    for name in _workers(kubectl, ns):
        assert name.startswith("simple-default-worker-")
        pod = _json(kubectl, "get", "pod", "-n", ns, name)
        labels = pod["metadata"]["labels"]
        assert labels["dask.org/cluster-name"] == "simple"
        assert labels["dask.org/component"] == "worker"
        assert labels["dask.org/workergroup-name"] == "simple-default"
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["DASK_WORKER_NAME"] == name
        assert env["DASK_SCHEDULER_ADDRESS"] == (
            f"tcp://simple-scheduler.{ns}.svc.cluster.local:8786"
        )
        [owner] = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("DaskWorkerGroup", "simple-default")

    sched = _json(kubectl, "get", "pod", "-n", ns, "simple-scheduler")
    assert sched["metadata"]["labels"]["dask.org/component"] == "scheduler"
    svc = _json(kubectl, "get", "service", "-n", ns, "simple-scheduler")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["metadata"]["labels"]["dask.org/cluster-name"] == "simple"

    def status_written() -> bool:
        status = _json(kubectl, "get", "daskcluster", "-n", ns, "simple").get("status", {})
        return status.get("replicas") == 2 and bool(status.get("conditions"))

    _until("cluster status", status_written)
    status = _json(kubectl, "get", "daskcluster", "-n", ns, "simple")["status"]
    assert status["phase"] in ("Pending", "Running")
    assert status["selector"].startswith("dask.org/cluster-name=simple")
    group_status = _json(kubectl, "get", "daskworkergroup", "-n", ns, "simple-default")
    assert group_status.get("status", {}).get("replicas") in (None, 2)


def test_deleted_children_come_back(kubectl: Kubectl, namespace: str, simple: str) -> None:
    ns = namespace
    _until("two worker pods", lambda: len(_workers(kubectl, ns)) == 2)
    _until("scheduler service", lambda: _exists(kubectl, ns, "service", "simple-scheduler"))
    victim = _workers(kubectl, ns)[0]
    kubectl("delete", "pod", "-n", ns, victim, "--wait=false")
    _until(
        "a replacement worker pod",
        lambda: len(w := _workers(kubectl, ns)) == 2 and victim not in w,
    )
    uid = _json(kubectl, "get", "service", "-n", ns, "simple-scheduler")["metadata"]["uid"]
    kubectl("delete", "service", "-n", ns, "simple-scheduler")
    _until(
        "the scheduler service recreated",
        lambda: (
            _exists(kubectl, ns, "service", "simple-scheduler")
            and _json(kubectl, "get", "service", "-n", ns, "simple-scheduler")["metadata"]["uid"]
            != uid
        ),
    )
    kubectl("delete", "pod", "-n", ns, "simple-scheduler", "--wait=true", "--timeout=60s")
    _until("the scheduler pod recreated", lambda: _exists(kubectl, ns, "pod", "simple-scheduler"))


def test_kubectl_scale(kubectl: Kubectl, namespace: str, simple: str) -> None:
    ns = namespace
    _until("two worker pods", lambda: len(_workers(kubectl, ns)) == 2)
    kubectl("scale", "-n", ns, "daskcluster", "simple", "--replicas=4")
    _until("four worker pods", lambda: len(_workers(kubectl, ns)) == 4)
    group = _json(kubectl, "get", "daskworkergroup", "-n", ns, "simple-default")
    assert group["spec"]["worker"]["replicas"] == 4
    # Scaling the group directly works too, and the cluster does not scale it back.
    kubectl("scale", "-n", ns, "daskworkergroup", "simple-default", "--replicas=1")
    _until("one worker pod", lambda: len(_workers(kubectl, ns)) == 1)
    _until(
        "group status replicas",
        lambda: (
            _json(kubectl, "get", "daskworkergroup", "-n", ns, "simple-default")
            .get("status", {})
            .get("replicas")
            == 1
        ),
    )


def test_additional_worker_group(kubectl: Kubectl, namespace: str, simple: str) -> None:
    ns = namespace
    kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "simple-highmem.yaml"))
    _until("two highmem pods", lambda: len(_workers(kubectl, ns, "simple-highmem")) == 2)
    group = _json(kubectl, "get", "daskworkergroup", "-n", ns, "simple-highmem")
    [owner] = group["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("DaskCluster", "simple")


def test_delete_cluster_removes_children(kubectl: Kubectl, namespace: str, simple: str) -> None:
    ns = namespace
    _until("two worker pods", lambda: len(_workers(kubectl, ns)) == 2)
    kubectl("delete", "daskcluster", "-n", ns, "simple", "--timeout=60s")

    def gone() -> bool:
        pods = _pods(kubectl, ns, "dask.org/cluster-name=simple")
        groups = _json(kubectl, "get", "daskworkergroups", "-n", ns)["items"]
        services = _json(kubectl, "get", "services", "-n", ns, "-l", "dask.org/cluster-name=simple")
        return not pods and not groups and not services["items"]

    _until("every child garbage-collected", gone)


def test_invalid_name_is_refused(kubectl: Kubectl, namespace: str, controller: Path) -> None:
    ns = namespace
    body = yaml.safe_load((MANIFESTS / "simple-cluster.yaml").read_text())
    body["metadata"]["name"] = "a" * 45
    applied = kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body), check=False)
    if applied.returncode != 0:  # the CRD's own validation refused it first: also fine
        assert "a" * 45 in applied.stderr or "name" in applied.stderr, applied.stderr
        return

    def refused() -> bool:
        status = _json(kubectl, "get", "daskcluster", "-n", ns, "a" * 45).get("status", {})
        return bool(status.get("phase") == "Failed")

    _until("phase Failed", refused)
    assert not _exists(kubectl, ns, "pod", f"{'a' * 45}-scheduler")


def test_status_reports_unschedulable_pods(kubectl: Kubectl, namespace: str, simple: str) -> None:
    """Without a node every pod is Unschedulable; status says so, naming a pod."""
    if _ready_node(kubectl):
        pytest.skip("a Ready node exists: pods are schedulable")
    ns = namespace

    def condition(kind: str, name: str, ctype: str) -> dict[str, Any]:
        got = kubectl("get", kind, "-n", ns, name, "-o", "json", check=False)
        if got.returncode != 0:  # not created yet
            return {}
        status = json.loads(got.stdout).get("status", {})
        for cond in status.get("conditions") or []:
            if cond.get("type") == ctype:
                found: dict[str, Any] = cond
                return found
        return {}

    _until(
        "WorkersReady=False/Unschedulable on the group",
        lambda: (
            condition("daskworkergroup", "simple-default", "WorkersReady").get("reason")
            == "Unschedulable"
        ),
    )
    cond = condition("daskworkergroup", "simple-default", "WorkersReady")
    assert cond["status"] == "False"
    assert "pod simple-default-worker-" in cond["message"]
    assert cond["lastTransitionTime"]
    _until(
        "SchedulerReady=False/Unschedulable on the cluster",
        lambda: (
            condition("daskcluster", "simple", "SchedulerReady").get("reason") == "Unschedulable"
        ),
    )
    cluster = _json(kubectl, "get", "daskcluster", "-n", ns, "simple")
    assert cluster["status"]["phase"] == "Pending"
    assert cluster["status"]["observedGeneration"] == cluster["metadata"]["generation"]
    events = kubectl("get", "events", "-n", ns, "-o", "json").stdout
    assert "SchedulerPodCreated" in events


@pytest.mark.usefixtures("needs_node")
def test_cluster_runs_on_a_node(kubectl: Kubectl, namespace: str, simple: str) -> None:
    ns = namespace
    _until(
        "phase Running",
        lambda: (
            _json(kubectl, "get", "daskcluster", "-n", ns, "simple").get("status", {}).get("phase")
            == "Running"
        ),
        timeout=300,
    )


def test_restart_mid_scale_up_converges_without_duplicates(
    kubectl: Kubectl, namespace: str, controller_proc: Controller
) -> None:
    """Kill the controller (SIGKILL) in the middle of a slow, batched scale-up; a new one
    finishes it: exactly the desired pods, no duplicates, no orphans."""
    ns = namespace
    slow = {
        "DASK_OPERATOR_WORKER_ALLOCATION_SIZE": "2",
        "DASK_OPERATOR_WORKER_ALLOCATION_DELAY": "2",
    }
    body = yaml.safe_load((MANIFESTS / "simple-cluster.yaml").read_text())
    body["spec"]["worker"]["replicas"] = 8
    controller_proc.start(**slow)
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))
    _until("the first batch of workers", lambda: 2 <= len(_workers(kubectl, ns)) < 8)
    controller_proc.stop(signal.SIGKILL)
    partial = len(_workers(kubectl, ns))
    assert partial < 8
    controller_proc.start()
    _until("exactly eight workers", lambda: len(_workers(kubectl, ns)) == 8)
    _until(
        "status replicas 8",
        lambda: (
            _json(kubectl, "get", "daskworkergroup", "-n", ns, "simple-default")
            .get("status", {})
            .get("replicas")
            == 8
        ),
    )
    assert len(_workers(kubectl, ns)) == 8  # and it stays there after the status caught up
    assert [p["metadata"]["name"] for p in _pods(kubectl, ns, "dask.org/component=scheduler")] == [
        "simple-scheduler"
    ]


def test_spec_edits_converge(kubectl: Kubectl, namespace: str, simple: str) -> None:
    """New worker image, new scheduler image and a new label reach the running objects."""
    ns = namespace
    _until("two worker pods", lambda: len(_workers(kubectl, ns)) == 2)
    _until("scheduler pod", lambda: _exists(kubectl, ns, "pod", "simple-scheduler"))
    old_workers = set(_workers(kubectl, ns))
    sched_uid = _json(kubectl, "get", "pod", "-n", ns, "simple-scheduler")["metadata"]["uid"]
    image = "ghcr.io/dask/dask:2026.1.0"
    patch: dict[str, Any] = {
        "metadata": {"labels": {"team": "ml"}},
        "spec": {
            "worker": {"spec": {"containers": [{"name": "worker", "image": image}]}},
            "scheduler": {"spec": {"containers": [{"name": "scheduler", "image": image}]}},
        },
    }
    # A merge patch replaces the containers lists: keep the rest of the reference containers.
    body = yaml.safe_load((MANIFESTS / "simple-cluster.yaml").read_text())
    for part in ("worker", "scheduler"):
        body["spec"][part]["spec"]["containers"][0]["image"] = image
        patch["spec"][part]["spec"]["containers"] = body["spec"][part]["spec"]["containers"]
    kubectl("patch", "daskcluster", "simple", "-n", ns, "--type=merge", "-p", json.dumps(patch))

    def workers_rolled() -> bool:
        names = _workers(kubectl, ns)
        if len(names) != 2 or set(names) & old_workers:
            return False
        pods = [_json(kubectl, "get", "pod", "-n", ns, n) for n in names]
        return all(
            p["spec"]["containers"][0]["image"] == image
            and p["metadata"]["labels"].get("team") == "ml"
            for p in pods
        )

    def scheduler_replaced() -> bool:
        got = kubectl("get", "pod", "-n", ns, "simple-scheduler", "-o", "json", check=False)
        if got.returncode != 0:
            return False
        pod = json.loads(got.stdout)
        return bool(
            pod["metadata"]["uid"] != sched_uid
            and pod["spec"]["containers"][0]["image"] == image
            and pod["metadata"]["labels"].get("team") == "ml"
        )

    _until("workers replaced with the new image and label", workers_rolled)
    _until("scheduler recreated with the new image and label", scheduler_replaced)
    svc = _json(kubectl, "get", "service", "-n", ns, "simple-scheduler")
    assert svc["metadata"]["labels"]["team"] == "ml"


@pytest.mark.usefixtures("needs_node")
@pytest.mark.filterwarnings("ignore:Mismatched versions found")
def test_scale_up_and_down_loses_no_data(
    kubectl: Kubectl,
    namespace: str,
    simple: str,
    k8s_kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kubectl scale 2 -> 5 -> 1: the scheduler retires the workers that go, so every result
    held in worker memory before the scale-down is still there after it (0 lost keys)."""
    from distributed import Client, wait

    from dask_kubecluster import KubeCluster

    ns = namespace
    monkeypatch.setenv("KUBECONFIG", str(k8s_kubeconfig))
    cluster = KubeCluster.from_name(simple, namespace=ns, quiet=True)
    client = Client(cluster)  # type: ignore[no-untyped-call]
    try:
        client.wait_for_workers(2, timeout=300)
        kubectl("scale", "daskcluster", simple, "-n", ns, "--replicas=5")
        client.wait_for_workers(5, timeout=300)

        # Results spread over all five workers' memory, nothing else holds them.
        futures = client.map(lambda i: i * i, range(500), pure=False)
        wait(futures)  # type: ignore[no-untyped-call]
        holders = client.who_has(futures)  # type: ignore[no-untyped-call]
        assert len({w for ws in holders.values() for w in ws}) > 1, "data on one worker only"

        kubectl("scale", "daskcluster", simple, "-n", ns, "--replicas=1")
        _until("one worker pod left", lambda: len(_workers(kubectl, ns)) == 1, timeout=300)
        _until(
            "the scheduler down to one worker",
            lambda: len(client.scheduler_info()["workers"]) == 1,
            timeout=300,
        )
        lost = [f.key for f in futures if f.status != "finished"]
        assert lost == []
        assert client.gather(futures) == [i * i for i in range(500)]  # type: ignore[no-untyped-call]
        # The surviving pod is the one the scheduler still knows.
        (pod,) = _workers(kubectl, ns)
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert names == {pod}
    finally:
        client.close()  # type: ignore[no-untyped-call]
        cluster.close()


# The tests below send only functions the workers can import (operator.add, os.getenv): the
# client runs the test's Python, the Dask image Debian's 3.11, and code pickled by value carries
# bytecode of the client's version.


def _running_pod_uid(kubectl: Kubectl, ns: str, name: str) -> str | None:
    """The uid of pod ``name`` when it is Running and Ready, else ``None``."""
    got = kubectl("get", "pod", "-n", ns, name, "-o", "json", check=False)
    if got.returncode != 0:
        return None
    pod = json.loads(got.stdout)
    if pod["metadata"].get("deletionTimestamp") or pod["status"].get("phase") != "Running":
        return None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod["status"].get("conditions") or []
    )
    return str(pod["metadata"]["uid"]) if ready else None


@pytest.mark.usefixtures("needs_node")
@pytest.mark.filterwarnings("ignore:Mismatched versions found")
def test_scheduler_pod_deleted_workers_reconnect_and_compute(
    kubectl: Kubectl,
    namespace: str,
    simple: str,
    k8s_kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Delete the scheduler pod of a computing cluster: the controller recreates it, the workers
    join the new scheduler, and a new client computes on them."""
    from distributed import Client

    from dask_kubecluster import KubeCluster

    ns = namespace
    monkeypatch.setenv("KUBECONFIG", str(k8s_kubeconfig))
    cluster = KubeCluster.from_name(simple, namespace=ns, quiet=True)
    try:
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=300)
            assert client.submit(sum, [1, 2, 3]).result(timeout=120) == 6
        old_uid = _running_pod_uid(kubectl, ns, "simple-scheduler")
        assert old_uid is not None
        kubectl("delete", "pod", "-n", ns, "simple-scheduler", "--wait=false")
        _until(
            "a new scheduler pod Running and Ready",
            lambda: _running_pod_uid(kubectl, ns, "simple-scheduler") not in (None, old_uid),
            timeout=300,
        )
    finally:
        cluster.close()
    # A new connection (the old port-forward pointed at the deleted pod).
    cluster = KubeCluster.from_name(simple, namespace=ns, quiet=True)
    try:
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=300)
            names = {w["name"] for w in client.scheduler_info()["workers"].values()}
            assert names == set(_workers(kubectl, ns))
            futures = client.map(operator.add, range(100), [1] * 100, pure=False)
            assert client.gather(futures) == list(range(1, 101))
    finally:
        cluster.close()


@pytest.mark.usefixtures("needs_node")
@pytest.mark.filterwarnings("ignore:Mismatched versions found")
def test_worker_rollout_keeps_computing(
    kubectl: Kubectl,
    namespace: str,
    simple: str,
    k8s_kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Change the worker image and env of a running cluster: every worker is replaced, one at a
    time through retirement, while a client keeps computing; persisted results survive it."""
    from distributed import Client, wait

    from dask_kubecluster import KubeCluster

    ns = namespace
    monkeypatch.setenv("KUBECONFIG", str(k8s_kubeconfig))
    cluster = KubeCluster.from_name(simple, namespace=ns, quiet=True)
    client = Client(cluster)  # type: ignore[no-untyped-call]
    try:
        client.wait_for_workers(2, timeout=300)
        old_workers = set(_workers(kubectl, ns))
        persisted = client.map(operator.mul, range(200), [3] * 200, pure=False)
        wait(persisted)  # type: ignore[no-untyped-call]

        body = yaml.safe_load((MANIFESTS / "simple-cluster.yaml").read_text())
        container = body["spec"]["worker"]["spec"]["containers"][0]
        container["image"] = "ghcr.io/dask/dask:2026.8.0"
        container["env"] = [{"name": "ROLLOUT_MARK", "value": "v2"}]
        patch = {"spec": {"worker": {"spec": {"containers": [container]}}}}
        kubectl("patch", "daskcluster", simple, "-n", ns, "--type=merge", "-p", json.dumps(patch))

        computed: list[int] = []

        def rolled_while_computing() -> bool:
            # One task per poll: the cluster answers throughout the rollout.
            i = len(computed)
            assert client.submit(operator.add, i, 1, pure=False).result(timeout=120) == i + 1
            computed.append(i)
            names = set(_workers(kubectl, ns))
            return len(names) == 2 and not names & old_workers

        _until("both workers replaced", rolled_while_computing, timeout=400)
        _until(
            "the scheduler sees exactly the new workers",
            lambda: (
                {w["name"] for w in client.scheduler_info()["workers"].values()}
                == set(_workers(kubectl, ns))
            ),
            timeout=120,
        )
        assert len(computed) > 1
        marks = client.run(os.getenv, "ROLLOUT_MARK")
        assert set(marks.values()) == {"v2"}
        lost = [f.key for f in persisted if f.status != "finished"]
        assert lost == []
        assert client.gather(persisted) == [i * 3 for i in range(200)]  # type: ignore[no-untyped-call]
        for name in _workers(kubectl, ns):
            pod = _json(kubectl, "get", "pod", "-n", ns, name)
            assert pod["spec"]["containers"][0]["image"] == "ghcr.io/dask/dask:2026.8.0"
    finally:
        client.close()  # type: ignore[no-untyped-call]
        cluster.close()


@pytest.mark.usefixtures("needs_node")
@pytest.mark.filterwarnings("ignore:Mismatched versions found")
def test_suspend_stops_every_pod_and_resume_computes_again(
    kubectl: Kubectl,
    namespace: str,
    simple: str,
    k8s_kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`spec.suspend: true` deletes the scheduler and the workers of every group but keeps the
    cluster, its groups (with their sizes) and its Service; `false` brings a cluster back that
    computes."""
    from distributed import Client

    from dask_kubecluster import ClusterSuspendedError, KubeCluster

    ns = namespace
    kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "simple-highmem.yaml"))
    _until(
        "the scheduler and the workers of both groups",
        lambda: (
            _running_pod_uid(kubectl, ns, "simple-scheduler") is not None
            and len(_workers(kubectl, ns)) == 2
            and len(_workers(kubectl, ns, "simple-highmem")) == 2
        ),
        timeout=300,
    )
    service_uid = _json(kubectl, "get", "service", "-n", ns, "simple-scheduler")["metadata"]["uid"]

    def patch_suspend(value: bool) -> None:
        body = json.dumps({"spec": {"suspend": value}})
        kubectl("patch", "daskcluster", "simple", "-n", ns, "--type=merge", "-p", body)

    def phases() -> set[str]:
        return {
            (_json(kubectl, "get", kind, name, "-n", ns).get("status") or {}).get("phase", "")
            for kind, name in (
                ("daskcluster", "simple"),
                ("daskworkergroup", "simple-default"),
                ("daskworkergroup", "simple-highmem"),
            )
        }

    patch_suspend(True)
    _until(
        "no pod left, everything Suspended",
        lambda: (
            not _pods(kubectl, ns, "dask.org/cluster-name=simple") and phases() == {"Suspended"}
        ),
    )
    kept = _json(kubectl, "get", "service", "-n", ns, "simple-scheduler")["metadata"]["uid"]
    assert kept == service_uid
    for group in ("simple-default", "simple-highmem"):
        obj = _json(kubectl, "get", "daskworkergroup", group, "-n", ns)
        assert obj["spec"]["worker"]["replicas"] == 2
    # Python users are told at once, with the way out.
    monkeypatch.setenv("KUBECONFIG", str(k8s_kubeconfig))
    with pytest.raises(ClusterSuspendedError, match="kubectl patch daskcluster simple"):
        KubeCluster.from_name(simple, namespace=ns, quiet=True)

    patch_suspend(False)
    _until(
        "the scheduler is back",
        lambda: _running_pod_uid(kubectl, ns, "simple-scheduler") is not None,
        timeout=300,
    )
    cluster = KubeCluster.from_name(simple, namespace=ns, quiet=True)
    try:
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=300)
            futures = client.map(operator.add, range(50), [1] * 50, pure=False)
            assert client.gather(futures) == list(range(1, 51))
    finally:
        cluster.close()
    assert len(_workers(kubectl, ns, "simple-highmem")) == 2
    conds = {
        c["type"]: c["reason"]
        for c in _json(kubectl, "get", "daskcluster", "simple", "-n", ns)["status"]["conditions"]
    }
    assert conds["Suspended"] == "Resumed"
