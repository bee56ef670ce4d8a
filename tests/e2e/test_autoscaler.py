# distributed's Client is not annotated.
# mypy: disable-error-code="no-untyped-call"
"""DaskAutoscaler, KubeCluster.adapt and idle shutdown on the real local cluster.

The controller runs as a subprocess (`dask-controller run --namespace NS`) watching one fresh
namespace, polling schedulers every 2 seconds. The tests need pods that really run (a Ready
node) and skip with the reason otherwise. Work is sent with functions pickled by reference
(`time.sleep`, `operator.mul`), so the test's Python and the image's need not match.

Every wait is a poll against a deadline, never a bare sleep as synchronisation.
"""

from __future__ import annotations

import copy
import json
import operator
import os
import subprocess
import time
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

pytest.importorskip("dask_controller", reason="dask-controller is not installed")
pytest.importorskip("dask_kubecluster", reason="dask-kubecluster is not installed")

from distributed import Client, wait

from dask_crds.models import AUTOSCALER_DECISIONS
from dask_kubecluster import KubeCluster

if TYPE_CHECKING:
    from ci.localk8s.pytest_plugin import Kubectl

WAIT = 300.0
IMAGE = os.environ.get("DASK_E2E_IMAGE", "ghcr.io/dask/dask:latest")

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings(
        "ignore:.*Port.*is already in use.*:UserWarning",
        # the host's client runs the test's Python, the Dask image Debian's 3.11
        "ignore:Mismatched versions found",
    ),
]


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    until_controlled(what, check, timeout, interval=0.5)


_json = get_json


def _manifest(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return obj


@pytest.fixture
def controller(
    kubectl: Kubectl,
    k8s_kubeconfig: Path,
    crds: None,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """The controller watching `namespace`, polling schedulers every 2 s (needs a Ready node);
    yields its log. KubeCluster in the test process uses the same kubeconfig."""
    if not ready_node(kubectl):
        pytest.skip("needs a Ready node (kubelet) so that pods really run; none is Ready")
    monkeypatch.setenv("KUBECONFIG", str(k8s_kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    ctl = ControllerProcess(k8s_kubeconfig, namespace, tmp_path / "controller.log")
    ctl.start("--verbose", DASK_OPERATOR_SCHEDULER_POLL_INTERVAL="2")
    try:
        yield ctl.log
    finally:
        RUNNING.clear()
        # Delete the Dask objects while the controller still runs, so it releases their kopf
        # finalizers and the namespace can go.
        kubectl(
            "delete", "daskautoscalers,daskjobs,daskclusters,daskworkergroups", "--all",
            "-n", namespace, "--timeout=60s", check=False,
        )  # fmt: skip
        ctl.stop()


def _replicas(kubectl: Kubectl, ns: str, group: str) -> int:
    obj = _json(kubectl, "get", "daskworkergroup", group, "-n", ns)
    return int(obj["spec"]["worker"]["replicas"])


def _worker_pods(kubectl: Kubectl, ns: str, group: str) -> list[str]:
    sel = f"dask.org/component=worker,dask.org/workergroup-name={group}"
    items = _json(kubectl, "get", "pods", "-n", ns, "-l", sel)["items"]
    return [p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")]


def _events(kubectl: Kubectl, ns: str, kind: str, name: str) -> list[tuple[str, str]]:
    items = _json(kubectl, "get", "events", "-n", ns)["items"]
    return [
        (e.get("type", ""), e.get("reason", ""))
        for e in items
        if (e.get("involvedObject") or {}).get("kind") == kind
        and (e.get("involvedObject") or {}).get("name") == name
    ]


class Peak:
    """Largest group size and scheduler worker count seen while polling."""

    def __init__(self, kubectl: Kubectl, ns: str, group: str, client: Any) -> None:
        self.kubectl, self.ns, self.group, self.client = kubectl, ns, group, client
        self.replicas = 0
        self.workers = 0

    def sample(self) -> None:
        self.replicas = max(self.replicas, _replicas(self.kubectl, self.ns, self.group))
        self.workers = max(self.workers, len(self.client.scheduler_info()["workers"]))


def _burst(client: Any, n: int = 80, seconds: float = 2.0) -> list[Any]:
    """``n`` tasks of ``seconds`` each: enough queued work for the scheduler to want more
    workers than one."""
    futures: list[Any] = client.map(time.sleep, [seconds] * n, pure=False)
    return futures


# ============================================================================ the reference


def test_reference_autoscaler_scales_up_to_maximum_and_down_keeping_data(
    kubectl: Kubectl, namespace: str, controller: Path
) -> None:
    """The reference `simple` cluster and `autoscaler.yaml` (minimum 1, maximum 10, default
    windows): a burst scales the default group up (never beyond 10); once idle it goes down to
    1 through retirement, and every result held in worker memory survives."""
    ns = namespace
    kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "simple-cluster.yaml"))
    kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "autoscaler.yaml"))

    def decided() -> bool:
        st = _json(kubectl, "get", "daskautoscaler", "simple", "-n", ns).get("status") or {}
        return st.get("lastDecision") in AUTOSCALER_DECISIONS

    _until("the autoscaler's first decision", decided)
    scaler = _json(kubectl, "get", "daskautoscaler", "simple", "-n", ns)
    assert scaler["status"]["workerGroup"] == "simple-default"
    assert scaler["metadata"]["ownerReferences"][0]["name"] == "simple"

    cluster = KubeCluster.from_name("simple", namespace=ns, quiet=True)
    client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=WAIT)
        peak = Peak(kubectl, ns, "simple-default", client)
        burst = _burst(client)

        def scaled_up() -> bool:
            peak.sample()
            return peak.replicas > 2 and peak.workers > 2

        _until("the burst scales the group up", scaled_up)

        def burst_done() -> bool:
            peak.sample()
            return all(f.done() for f in burst)

        _until("the burst finishes", burst_done)
        # Results spread over the workers' memory while there are several of them.
        data = client.map(operator.mul, range(300), range(300), pure=False)
        wait(data)
        holders = client.who_has(data)
        assert len({w for ws in holders.values() for w in ws}) > 1, "data on one worker only"

        def scaled_down() -> bool:
            peak.sample()
            return (
                _replicas(kubectl, ns, "simple-default") == 1
                and len(_worker_pods(kubectl, ns, "simple-default")) == 1
                and len(client.scheduler_info()["workers"]) == 1
            )

        _until("idle: down to the minimum of 1 worker", scaled_down)
        assert peak.replicas <= 10
        assert peak.workers <= 10
        lost = [f.key for f in [*burst, *data] if f.status != "finished"]
        assert lost == []
        assert client.gather(data) == [i * i for i in range(300)]

        status = _json(kubectl, "get", "daskautoscaler", "simple", "-n", ns)["status"]
        assert status["desiredReplicas"] == 1
        assert status["lastDecision"] in AUTOSCALER_DECISIONS
        assert status["lastDecisionReason"]
        reasons = {r for _, r in _events(kubectl, ns, "DaskAutoscaler", "simple")}
        assert {"ScaleUp", "ScaleDown"} <= reasons
    finally:
        client.close()
        cluster.close()

    # Deleting the autoscaler leaves the replicas where they are.
    kubectl("delete", "-n", ns, "-f", str(MANIFESTS / "autoscaler.yaml"))
    assert _replicas(kubectl, ns, "simple-default") == 1


# ============================================================================ KubeCluster


def test_kubecluster_adapt_1_3_under_a_burst(
    kubectl: Kubectl, namespace: str, controller: Path
) -> None:
    """`adapt(1, 3)`: a burst takes the cluster above one worker and never above three; when the
    work is done it returns to one."""
    ns = namespace
    with KubeCluster(name="adapt", n_workers=1, namespace=ns, image=IMAGE, quiet=True) as cluster:
        cluster.adapt(1, 3, scale_down_window=10)
        scaler = _json(kubectl, "get", "daskautoscaler", "adapt", "-n", ns)
        assert scaler["spec"]["scaleDown"] == {"stabilizationWindowSeconds": 10}
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=WAIT)
            peak = Peak(kubectl, ns, "adapt-default", client)
            burst = _burst(client)

            def grew() -> bool:
                peak.sample()
                return peak.workers > 1

            _until("more than one worker", grew)

            def done() -> bool:
                peak.sample()
                return all(f.done() for f in burst)

            _until("the burst finishes", done)

            def back_to_one() -> bool:
                peak.sample()
                return (
                    _replicas(kubectl, ns, "adapt-default") == 1
                    and len(client.scheduler_info()["workers"]) == 1
                )

            _until("back to one worker", back_to_one)
            assert 1 < peak.workers <= 3
            assert peak.replicas <= 3
            assert [f.key for f in burst if f.status != "finished"] == []


# ============================================================================ per-group demand


GPU_WORKER_ARGS = ["dask-worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", "1",
                   "--resources", "GPU=1"]  # fmt: skip


def _gpu_group(cluster: str) -> dict[str, Any]:
    """A worker group whose workers offer the Dask resource ``GPU=1`` (a label: no GPU is
    needed), one thread each, starting at zero."""
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": f"{cluster}-gpu"},
        "spec": {
            "cluster": cluster,
            "worker": {
                "replicas": 0,
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "args": GPU_WORKER_ARGS,
                        }
                    ]
                },
            },
        },
    }


def _autoscaler(name: str, group: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "cluster": "simple",
            "workerGroup": group,
            "minimum": minimum,
            "maximum": maximum,
            "scaleDown": {"stabilizationWindowSeconds": 10},
        },
    }


def test_each_group_is_sized_by_the_work_it_can_serve(
    kubectl: Kubectl, namespace: str, controller: Path
) -> None:
    """The reference `simple` cluster plus a `GPU=1` group, each with an autoscaler. A burst of
    GPU tasks grows only the GPU group (the scheduler's whole-cluster target would have grown
    the default group too) and runs there; once idle the GPU group returns to zero; a burst of
    plain tasks then grows only the default group."""
    ns = namespace
    kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "simple-cluster.yaml"))
    docs = [
        _gpu_group("simple"),
        _autoscaler("simple", "simple-default", 1, 2),
        _autoscaler("simple-gpu", "simple-gpu", 0, 3),
    ]
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def settled() -> bool:
        statuses = [
            _json(kubectl, "get", "daskautoscaler", n, "-n", ns).get("status") or {}
            for n in ("simple", "simple-gpu")
        ]
        return (
            all(st.get("demand") == "WorkerGroup" for st in statuses)
            and _replicas(kubectl, ns, "simple-default") == 1
            and len(_worker_pods(kubectl, ns, "simple-default")) == 1
            and _replicas(kubectl, ns, "simple-gpu") == 0
        )

    _until("both autoscalers size their groups by their own work; default at 1", settled)
    table = kubectl("get", "daskautoscalers", "-n", ns, "-o", "wide").stdout.split("\n")
    assert table[0].split()[:8] == [
        "NAME", "CLUSTER", "GROUP", "MIN", "MAX", "DESIRED", "DEMAND", "AGE"
    ], table[0]  # fmt: skip
    assert {tuple(row.split()[:3] + row.split()[6:7]) for row in table[1:] if row} == {
        ("simple", "simple", "simple-default", "WorkerGroup"),
        ("simple-gpu", "simple", "simple-gpu", "WorkerGroup"),
    }

    cluster = KubeCluster.from_name("simple", namespace=ns, quiet=True)
    client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=WAIT)
        default = Peak(kubectl, ns, "simple-default", client)
        gpu = Peak(kubectl, ns, "simple-gpu", client)
        gpu_burst = client.map(time.sleep, [2.0] * 30, resources={"GPU": 1}, pure=False)

        def gpu_done() -> bool:
            default.sample()
            gpu.sample()
            return all(f.done() for f in gpu_burst)

        _until("the GPU burst finishes", gpu_done)
        assert 1 <= gpu.replicas <= 3
        assert default.replicas == 1, "the default group grew for work it cannot run"
        assert [f.key for f in gpu_burst if f.status != "finished"] == []
        workers = client.scheduler_info()["workers"]  # address -> info
        holders = {w for ws in client.who_has(gpu_burst).values() for w in ws}
        ran_on = {workers[a]["id"] for a in holders if a in workers}
        assert ran_on, "no GPU result is held by a connected worker"
        assert all(n.startswith("simple-gpu-worker-") for n in ran_on), ran_on
        reason = _json(kubectl, "get", "daskautoscaler", "simple-gpu", "-n", ns)["status"]
        assert "waiting for this group" in reason["lastDecisionReason"]

        def gpu_back_to_zero() -> bool:
            return _replicas(kubectl, ns, "simple-gpu") == 0 and not _worker_pods(
                kubectl, ns, "simple-gpu"
            )

        _until("idle: the GPU group back to zero", gpu_back_to_zero)

        default, gpu = (Peak(kubectl, ns, g, client) for g in ("simple-default", "simple-gpu"))
        burst = _burst(client)

        def plain_done() -> bool:
            default.sample()
            gpu.sample()
            return all(f.done() for f in burst)

        _until("the plain burst finishes", plain_done)
        assert default.replicas == 2
        assert gpu.replicas == 0, "the GPU group grew for plain work"
        assert [f.key for f in burst if f.status != "finished"] == []
    finally:
        client.close()
        cluster.close()


# ============================================================================ idle shutdown


class Watch:
    """`kubectl get --watch --output-watch-events -o json` of one object, read without
    blocking: every version of it the API server streamed."""

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "get", *args,
             "--watch", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.data = b""

    def events(self) -> list[dict[str, Any]]:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.data += chunk
        return _decode_stream(self.data.decode(errors="replace"))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _decode_stream(text: str) -> list[dict[str, Any]]:
    """Concatenated JSON documents -> list (an incomplete last one is left out)."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        try:
            obj, i = decoder.raw_decode(text, i)
        except ValueError:
            return out
        out.append(obj)


def test_idle_cluster_is_deleted_and_a_busy_one_is_kept(
    kubectl: Kubectl, namespace: str, controller: Path
) -> None:
    """Three clusters with `idleTimeout: 10`: `idle` (never given work) is deleted after a
    Warning Event, its status having shown `idleSince`; `dozy` (idle, `idleAction: Suspend`) is
    suspended and kept; `simple`, running a long task all the while, stays and is reported
    busy."""
    ns = namespace
    kubectl("apply", "-n", ns, "-f", str(MANIFESTS / "simple-cluster.yaml"))
    cluster = KubeCluster.from_name("simple", namespace=ns, quiet=True)
    client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=WAIT)
        long_task = client.submit(time.sleep, 600, pure=False)
        _until("the long task runs", lambda: any(client.processing().values()))
        kubectl(
            "patch", "daskcluster", "simple", "-n", ns, "--type=merge",
            "-p", '{"spec": {"idleTimeout": 10}}',
        )  # fmt: skip

        idle = _manifest("simple-cluster.yaml")
        idle["metadata"]["name"] = "idle"
        idle["spec"]["idleTimeout"] = 10
        idle["spec"]["worker"]["replicas"] = 0
        idle["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] = "idle"
        dozy = copy.deepcopy(idle)
        dozy["metadata"]["name"] = "dozy"
        dozy["spec"]["idleAction"] = "Suspend"
        dozy["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] = "dozy"
        kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all([idle, dozy]))
        # Every version of the idle cluster, as a watch streams them: the status with
        # `idleSince` may live for only a second before the deletion.
        watch = Watch(kubectl, "daskcluster", "idle", "-n", ns)

        def idle_gone() -> bool:
            return any(e.get("type") == "DELETED" for e in watch.events())

        try:
            _until("the idle cluster is deleted", idle_gone)
            versions = watch.events()
        finally:
            watch.stop()
        statuses = [(v.get("object") or {}).get("status") or {} for v in versions]
        assert any(st.get("idleSince") for st in statuses), statuses
        assert ("Warning", "IdleTimeout") in _events(kubectl, ns, "DaskCluster", "idle")

        def dozy_suspended() -> bool:
            obj = _json(kubectl, "get", "daskcluster", "dozy", "-n", ns)
            pods = _json(kubectl, "get", "pods", "-n", ns, "-l", "dask.org/cluster-name=dozy")
            return (obj.get("status") or {}).get("phase") == "Suspended" and not pods["items"]

        _until("the dozy cluster is suspended, not deleted", dozy_suspended)
        assert _json(kubectl, "get", "daskcluster", "dozy", "-n", ns)["spec"]["suspend"] is True
        assert ("Warning", "IdleTimeout") in _events(kubectl, ns, "DaskCluster", "dozy")

        busy = _json(kubectl, "get", "daskcluster", "simple", "-n", ns)
        assert busy["spec"]["idleTimeout"] == 10
        assert not busy["status"].get("idleSince")
        [cond] = [c for c in busy["status"]["conditions"] if c["type"] == "Idle"]
        assert (cond["status"], cond["reason"]) == ("False", "Busy")
        assert not long_task.done()
    finally:
        client.close()
        cluster.close()
