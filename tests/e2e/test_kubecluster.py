# distributed's Client is not annotated.
# mypy: disable-error-code="no-untyped-call"
"""KubeCluster against a real Kubernetes API (fixtures ``k8s_kubeconfig`` and ``kubectl``).

Three tiers, each skipping with its reason when what it needs is missing:

- control plane + CRDs only: invalid arguments create nothing, the CRD-missing error (a real 404
  from API discovery), the operator-not-running error, connect-only to a missing cluster, and
  Unschedulable when the operator runs but no node can take the scheduler;
- + the controller (``dask-controller run`` as a subprocess watching one fresh namespace);
- + a Ready node, so pods run: compute (sync and async), scale, adapt, worker groups, logs,
  from_name/close semantics, two clusters in one loop, custom pod settings, bad image.

Every wait is a poll against a deadline, never a bare sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("dask_kubecluster", reason="dask-kubecluster is not installed")

from distributed import Client
from e2e_support import (
    ControllerProcess,
    get_json,
    ready_node,
    until,
)

import dask_crds.constants as crd_constants
from dask_kubecluster import (
    ClusterNotFoundError,
    CrashLoopError,
    CRDNotInstalledError,
    ImagePullError,
    KubeCluster,
    OperatorNotRunningError,
    UnschedulableError,
    make_cluster_spec,
)

if TYPE_CHECKING:
    from ci.localk8s.pytest_plugin import Kubectl

WAIT = 120.0
IMAGE = os.environ.get("DASK_E2E_IMAGE", "ghcr.io/dask/dask:latest")

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Port.*is already in use.*:UserWarning",
    # The host's client runs the test's Python (3.12), the Dask image Debian's 3.11: a mismatch
    # distributed reports and tolerates.
    "ignore:Mismatched versions found",
)


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    until(what, check, timeout)


_json = get_json
_ready_node = ready_node


def _controller_can_run() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "dask_controller.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


@pytest.fixture
def kubeconfig_env(k8s_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(k8s_kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return k8s_kubeconfig


@pytest.fixture
def controller(k8s_kubeconfig: Path, crds: None, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """``dask-controller run --namespace NS`` as a subprocess; yields its log file."""
    if not _controller_can_run():
        pytest.skip("the dask-controller CLI has no `run` command (controller not merged yet)")
    ctl = ControllerProcess(k8s_kubeconfig, namespace, tmp_path / "controller.log")
    ctl.start()
    try:
        yield ctl.log
    finally:
        ctl.stop()
        print(ctl.tail())  # shown on failure


@pytest.fixture
def node(kubectl: Kubectl, controller: Path) -> Path:
    if not _ready_node(kubectl):
        pytest.skip("needs a Ready node (kubelet) so that pods really run; none is Ready")
    return controller


def _clusters(kubectl: Kubectl, ns: str) -> list[str]:
    items = _json(kubectl, "get", "daskclusters", "-n", ns)["items"]
    return [i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp")]


def _kw(namespace: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"namespace": namespace, "image": IMAGE, "quiet": True}
    base.update(kw)
    return base


# ====================================================================== control plane + CRDs


@pytest.mark.usefixtures("crds", "kubeconfig_env")
def test_invalid_arguments_create_nothing(kubectl: Kubectl, namespace: str) -> None:
    with pytest.raises(ValueError, match="did you mean 'limits'"):
        KubeCluster(name="bad", resources={"limit": {"memory": "1Gi"}}, **_kw(namespace))
    assert _clusters(kubectl, namespace) == []


@pytest.mark.usefixtures("crds", "kubeconfig_env")
def test_crds_missing(kubectl: Kubectl, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real 404 from API discovery: the client looks for a group no CRD provides."""
    monkeypatch.setattr(crd_constants, "GROUP", "not-installed.dask.org")
    with pytest.raises(CRDNotInstalledError, match="The DaskCluster CRD is not installed"):
        KubeCluster(name="nocrd", **_kw(namespace))
    monkeypatch.undo()
    assert _clusters(kubectl, namespace) == []


@pytest.mark.usefixtures("crds", "kubeconfig_env")
def test_operator_not_running(kubectl: Kubectl, namespace: str) -> None:
    started = time.monotonic()
    with pytest.raises(OperatorNotRunningError, match="Is the Dask operator running") as info:
        KubeCluster(name="orphan", resource_timeout=4, **_kw(namespace))
    assert time.monotonic() - started < 60
    assert "'orphan'" in str(info.value)
    assert namespace in str(info.value)
    # the DaskCluster we created is cleaned up
    _until("orphan DaskCluster deleted", lambda: _clusters(kubectl, namespace) == [])


@pytest.mark.asyncio
@pytest.mark.usefixtures("crds", "kubeconfig_env")
async def test_operator_not_running_async(kubectl: Kubectl, namespace: str) -> None:
    with pytest.raises(OperatorNotRunningError):
        await KubeCluster(name="orphan", resource_timeout=3, asynchronous=True, **_kw(namespace))


@pytest.mark.usefixtures("crds", "kubeconfig_env")
def test_connect_only_to_a_missing_cluster(kubectl: Kubectl, namespace: str) -> None:
    with pytest.raises(ClusterNotFoundError, match="no DaskCluster 'ghost'"):
        KubeCluster.from_name("ghost", namespace=namespace, quiet=True)
    assert _clusters(kubectl, namespace) == []


# ====================================================================== + controller


@pytest.mark.usefixtures("kubeconfig_env", "controller")
def test_unschedulable_scheduler(kubectl: Kubectl, namespace: str) -> None:
    spec = make_cluster_spec("nowhere", image=IMAGE, n_workers=0)
    spec["spec"]["scheduler"]["spec"]["nodeSelector"] = {"dask.org/e2e-no-such-node": "true"}
    with pytest.raises(UnschedulableError, match="nowhere-scheduler") as info:
        KubeCluster(custom_cluster_spec=spec, namespace=namespace, quiet=True, resource_timeout=45)
    assert "node" in str(info.value)
    _until("cluster cleaned up", lambda: _clusters(kubectl, namespace) == [])


def _mark_scheduler_ready(kubectl: Kubectl, ns: str, pod: str) -> None:
    """Play the kubelet for a control plane without a node: report the pod Running and Ready."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.99",
            "conditions": [
                {"type": cond, "status": "True", "lastTransitionTime": now}
                for cond in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
        }
    }
    kubectl(
        "patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.usefixtures("kubeconfig_env", "controller")
async def test_lifecycle_on_the_real_api_with_a_local_scheduler(
    kubectl: Kubectl, namespace: str
) -> None:
    """Everything but the pods' processes is real: CRDs, API server, controller. The scheduler
    is a local Dask scheduler reached with ``scheduler_address``; the test reports the scheduler
    pod Ready as a kubelet would. Needs no node."""
    import asyncio

    from distributed import Scheduler

    async def kubelet() -> None:
        def scheduler_pod_exists() -> bool:
            result = kubectl("get", "pod", "life-scheduler", "-n", namespace, check=False)
            return result.returncode == 0

        await asyncio.to_thread(_until, "the scheduler pod", scheduler_pod_exists)
        await asyncio.to_thread(_mark_scheduler_ready, kubectl, namespace, "life-scheduler")

    async with Scheduler(host="127.0.0.1", port=0, dashboard_address=":0") as scheduler:
        marker = asyncio.ensure_future(kubelet())
        cluster = await KubeCluster(
            name="life",
            n_workers=1,
            asynchronous=True,
            scheduler_address=scheduler.address,
            resource_timeout=WAIT,
            **_kw(namespace),
        )
        await marker
        try:
            assert cluster.scheduler_address == scheduler.address
            assert cluster.shutdown_on_close is True
            assert cluster.worker_groups == {"life-default": 1}

            await cluster.scale(2)
            group = _json(kubectl, "get", "daskworkergroup", "life-default", "-n", namespace)
            assert group["spec"]["worker"]["replicas"] == 2
            dc = _json(kubectl, "get", "daskcluster", "life", "-n", namespace)
            assert dc["spec"]["worker"]["replicas"] == 2

            await cluster.adapt(minimum=1, maximum=3)
            scaler = _json(kubectl, "get", "daskautoscaler", "life", "-n", namespace)
            assert scaler["spec"] == {"cluster": "life", "minimum": 1, "maximum": 3}
            await cluster.scale(1)  # returns once the operator has finalized it
            gone = kubectl("get", "daskautoscaler", "life", "-n", namespace, check=False)
            assert "NotFound" in gone.stderr

            await cluster.add_worker_group("extra", n_workers=1, env={"EXTRA": "1"})
            extra = _json(kubectl, "get", "daskworkergroup", "life-extra", "-n", namespace)
            container = extra["spec"]["worker"]["spec"]["containers"][0]
            assert container["image"] == IMAGE
            assert {"name": "EXTRA", "value": "1"} in container["env"]
            await cluster.delete_worker_group("extra")
            # Gone once kopf releases its finalizer (the group's loop has stopped): poll without
            # blocking the loop, which also runs the stand-in scheduler.
            deadline = time.monotonic() + WAIT
            while True:
                gone = kubectl("get", "daskworkergroup", "life-extra", "-n", namespace, check=False)
                if "NotFound" in gone.stderr or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            assert "NotFound" in gone.stderr, gone.stdout

            logs = await cluster.get_logs()
            assert "life-scheduler" in logs

            # a second manager connecting by name does not own the cluster
            other = await KubeCluster.from_name(
                "life", namespace=namespace, quiet=True, asynchronous=True,
                scheduler_address=scheduler.address,
            )  # fmt: skip
            assert other.shutdown_on_close is False
            await other.close()
            assert _clusters(kubectl, namespace) == ["life"]
        finally:
            await cluster.close()
    assert _clusters(kubectl, namespace) == []


# ====================================================================== + node


@pytest.mark.usefixtures("kubeconfig_env", "node")
def test_sync_create_compute_scale_groups_logs_close(kubectl: Kubectl, namespace: str) -> None:
    with KubeCluster(name="sync", n_workers=1, **_kw(namespace)) as cluster:
        assert cluster.shutdown_on_close is True
        assert cluster.connection_method == "port-forward"
        assert cluster.dashboard_link.startswith("http://localhost:")
        cluster.wait_for_workers(1, timeout=WAIT)
        with Client(cluster) as client:
            assert client.submit(lambda x: x + 1, 1).result() == 2

        cluster.scale(3)
        cluster.wait_for_workers(3, timeout=WAIT)
        cluster.scale(1)
        _until("scaled down to 1", lambda: len(cluster.scheduler_info["workers"]) == 1)

        cluster.add_worker_group("extra", n_workers=1)
        _until(
            "worker of the extra group",
            lambda: any(
                "sync-extra-worker-" in str(w.get("name"))
                for w in cluster.scheduler_info["workers"].values()
            ),
        )
        cluster.delete_worker_group("extra")
        _until(
            "extra group gone",
            lambda: (
                not any(
                    "sync-extra" in p
                    for p in kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split()
                )
            ),
        )

        logs = cluster.get_logs()
        assert "sync-scheduler" in logs
        assert "Scheduler at" in logs["sync-scheduler"]
        assert any(name.startswith("sync-default-worker-") for name in logs)
    _until("cluster deleted on close", lambda: _clusters(kubectl, namespace) == [])


@pytest.mark.usefixtures("kubeconfig_env", "node")
def test_adapt_creates_autoscaler_and_scale_removes_it(kubectl: Kubectl, namespace: str) -> None:
    with KubeCluster(name="adaptive", n_workers=1, **_kw(namespace)) as cluster:
        cluster.adapt(minimum=1, maximum=2)
        scaler = _json(kubectl, "get", "daskautoscaler", "adaptive", "-n", namespace)
        assert scaler["spec"] == {"cluster": "adaptive", "minimum": 1, "maximum": 2}
        cluster.adapt(minimum=0, maximum=3)  # patches the same object
        scaler = _json(kubectl, "get", "daskautoscaler", "adaptive", "-n", namespace)
        assert scaler["spec"] == {"cluster": "adaptive", "minimum": 0, "maximum": 3}
        cluster.scale(1)
        result = kubectl("get", "daskautoscaler", "adaptive", "-n", namespace, check=False)
        assert "NotFound" in result.stderr


@pytest.mark.asyncio
@pytest.mark.usefixtures("kubeconfig_env", "node")
async def test_async_and_two_clusters_in_one_loop(kubectl: Kubectl, namespace: str) -> None:
    async with (
        KubeCluster(name="one", n_workers=1, asynchronous=True, **_kw(namespace)) as one,
        KubeCluster(name="two", n_workers=1, asynchronous=True, **_kw(namespace)) as two,
    ):
        for cluster in (one, two):
            await cluster.wait_for_workers(1, timeout=WAIT)
            async with Client(cluster, asynchronous=True) as client:
                assert await client.submit(lambda x: x * 2, 21) == 42
        assert set(_clusters(kubectl, namespace)) == {"one", "two"}
    _until("both deleted", lambda: _clusters(kubectl, namespace) == [])


@pytest.mark.usefixtures("kubeconfig_env", "node")
def test_from_name_close_leaves_the_cluster_running(kubectl: Kubectl, namespace: str) -> None:
    with KubeCluster(name="shared", n_workers=1, **_kw(namespace)) as owner:
        other = KubeCluster.from_name("shared", namespace=namespace, quiet=True)
        assert other.shutdown_on_close is False
        other.scale(2)
        other.close()
        assert _clusters(kubectl, namespace) == ["shared"]
        owner.wait_for_workers(2, timeout=WAIT)
    _until("owner's close deletes it", lambda: _clusters(kubectl, namespace) == [])


@pytest.mark.usefixtures("kubeconfig_env", "node")
def test_custom_spec_node_selector_and_toleration(kubectl: Kubectl, namespace: str) -> None:
    spec = make_cluster_spec("custom", image=IMAGE, n_workers=1)
    spec["spec"]["worker"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    spec["spec"]["worker"]["spec"]["tolerations"] = [
        {"key": "dask.org/e2e", "operator": "Exists", "effect": "NoSchedule"}
    ]
    with KubeCluster(custom_cluster_spec=spec, namespace=namespace, quiet=True) as cluster:
        cluster.wait_for_workers(1, timeout=WAIT)
        pods = _json(
            kubectl, "get", "pods", "-n", namespace, "-l",
            "dask.org/cluster-name=custom,dask.org/component=worker",
        )["items"]  # fmt: skip
        assert pods
        for pod in pods:
            assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
            assert {"key": "dask.org/e2e", "operator": "Exists", "effect": "NoSchedule"} in pod[
                "spec"
            ]["tolerations"]


@pytest.mark.usefixtures("kubeconfig_env", "node")
def test_bad_image_is_an_image_pull_error(kubectl: Kubectl, namespace: str) -> None:
    bad = "ghcr.io/dask/dask:no-such-tag-e2e"
    with pytest.raises(ImagePullError, match="no-such-tag-e2e"):
        KubeCluster(name="badimage", n_workers=0, resource_timeout=90, **_kw(namespace, image=bad))
    _until("cluster cleaned up", lambda: _clusters(kubectl, namespace) == [])


@pytest.mark.usefixtures("kubeconfig_env", "node")
def test_crashing_scheduler_is_a_crash_loop_error_with_its_log(
    kubectl: Kubectl, namespace: str
) -> None:
    spec = make_cluster_spec("crashy", image=IMAGE, n_workers=0)
    container = spec["spec"]["scheduler"]["spec"]["containers"][0]
    container["command"] = ["sh", "-c", "echo e2e-crash-marker: bad scheduler config >&2; exit 3"]
    container.pop("args", None)
    with pytest.raises(CrashLoopError, match="CrashLoopBackOff") as info:
        KubeCluster(custom_cluster_spec=spec, namespace=namespace, quiet=True, resource_timeout=240)
    message = str(info.value)
    assert "crashy-scheduler" in message
    assert "e2e-crash-marker: bad scheduler config" in message  # the tail of its log
    assert info.value.pod == "crashy-scheduler"
    _until("cluster cleaned up", lambda: _clusters(kubectl, namespace) == [])
