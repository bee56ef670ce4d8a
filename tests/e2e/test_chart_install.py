"""The Helm chart installed on the real cluster: CRD install/upgrade/keep, the operator as a pod
under the chart's own RBAC, single-namespace mode, and a clean uninstall.

The CRD part needs only the control plane. The operator part needs a Ready node: the operator
image is built from this checkout and imported into the node's containerd (no registry).
"""

from __future__ import annotations

import json
import operator
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from e2e_support import get_json, ready_node, release_finalizers, until

if TYPE_CHECKING:
    from ci.localk8s.pytest_plugin import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dask-kubernetes-operator"
REFERENCE = ROOT / "packages" / "dask-controller" / "tests" / "manifests" / "simple-cluster.yaml"
CRDS = [
    "daskclusters.kubernetes.dask.org",
    "daskworkergroups.kubernetes.dask.org",
    "daskjobs.kubernetes.dask.org",
    "daskautoscalers.kubernetes.dask.org",
]
#: kopf's peering CRDs, installed with peering.enabled and kept on uninstall like ours.
KOPF_CRDS = ["kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"]
WAIT = 240.0

Helm = Callable[..., subprocess.CompletedProcess[str]]


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    until(what, check, timeout, interval=1.0)


_json = get_json
_ready_node = ready_node


@pytest.fixture(scope="module")
def helm(k8s_kubeconfig: Path) -> Helm:
    from ci.localk8s import paths, versions

    binary = paths.bin_dir(versions.select().kubernetes) / "helm"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `python -m ci.localk8s build --only helm`")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(k8s_kubeconfig)}
        out = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, env=env, timeout=600
        )
        if check and out.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out

    return run


def _adopt_existing_crds(kubectl: Kubectl, release: str, namespace: str) -> None:
    """Let the release take over CRDs another test applied (Helm's documented adoption)."""
    for crd in [*CRDS, *KOPF_CRDS]:
        if kubectl("get", "crd", crd, check=False).returncode != 0:
            continue
        kubectl(
            "annotate", "crd", crd, "--overwrite",
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip
        kubectl("label", "crd", crd, "--overwrite", "app.kubernetes.io/managed-by=Helm")


@pytest.fixture
def release(kubectl: Kubectl, helm: Helm) -> Iterator[tuple[str, str]]:
    """A release name and namespace; uninstalled (and the namespace deleted) afterwards."""
    suffix = uuid.uuid4().hex[:6]
    name, namespace = f"dask-op-{suffix}", f"dask-op-{suffix}"
    _adopt_existing_crds(kubectl, name, namespace)
    yield name, namespace
    helm("uninstall", name, "-n", namespace, "--wait", check=False)
    kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def namespaces(kubectl: Kubectl) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        ns = f"dask-chart-{uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", ns)
        made.append(ns)
        return ns

    yield make
    for ns in made:
        kubectl("delete", "daskclusters", "--all", "-n", ns, "--wait=false", check=False)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
        release_finalizers(kubectl, ns)  # in case the operator went before its objects


def test_crds_install_upgrade_and_survive_uninstall(
    kubectl: Kubectl, helm: Helm, release: tuple[str, str], tmp_path: Path
) -> None:
    name, namespace = release
    # No operator pod is needed to check what Helm does with the CRDs.
    helm(
        "install",
        name,
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        "--set",
        "replicaCount=0",
    )
    for crd in CRDS:
        meta = _json(kubectl, "get", "crd", crd)["metadata"]
        assert meta["annotations"]["meta.helm.sh/release-name"] == name
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"

    # A chart whose DaskCluster CRD gained a printer column: `helm upgrade` must apply it.
    changed = tmp_path / "chart"
    shutil.copytree(CHART, changed)
    crd_file = changed / "files" / "crds" / "daskcluster.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    column = {"name": "UpgradeCheck", "type": "string", "jsonPath": ".metadata.uid"}
    crd["spec"]["versions"][0].setdefault("additionalPrinterColumns", []).append(column)
    crd_file.write_text(yaml.safe_dump(crd))
    helm("upgrade", name, str(changed), "-n", namespace, "--set", "replicaCount=0")
    live = _json(kubectl, "get", "crd", CRDS[0])["spec"]["versions"][0]
    assert column in live["additionalPrinterColumns"]

    # Back to the real chart (removes the column again), then uninstall.
    helm("upgrade", name, str(CHART), "-n", namespace, "--set", "replicaCount=0")
    live = _json(kubectl, "get", "crd", CRDS[0])["spec"]["versions"][0]
    assert column not in live.get("additionalPrinterColumns", [])
    helm("uninstall", name, "-n", namespace, "--wait")
    for crd_name in CRDS:  # kept: uninstalling the operator never deletes users' resources
        kubectl("get", "crd", crd_name)
    left = kubectl(
        "get", "deploy,sa,role,rolebinding", "-n", namespace,
        "-l", f"app.kubernetes.io/instance={name}", "-o", "name",
    ).stdout.strip()  # fmt: skip
    assert left == ""
    for kind in ("clusterrole", "clusterrolebinding"):
        got = kubectl("get", kind, "-l", f"app.kubernetes.io/instance={name}", "-o", "name")
        assert got.stdout.strip() == ""


@pytest.fixture(scope="module")
def operator_image(kubectl: Kubectl, e2e_provider: str) -> str:
    """The operator image built from this checkout, imported into the node's containerd (on
    kind the provider has loaded it already)."""
    if not _ready_node(kubectl):
        pytest.skip("needs a Ready node (kubelet) so that the operator pod runs; none is Ready")
    from ci.images import build, import_into_containerd
    from ci.localk8s.node.plugin import node_config

    archive = build(["operator"])[0]  # up to date: a no-op when the sources did not change
    if e2e_provider == "local":
        import_into_containerd([archive], str(node_config().containerd_socket))
    tagged = [ref for ref in archive.refs if not ref.endswith(":dev")]
    return tagged[0] if tagged else archive.refs[0]


def _install_operator(helm: Helm, name: str, namespace: str, image: str, *sets: str) -> None:
    repo, tag = image.rsplit(":", 1)
    args = ["--set", f"image.name={repo}", "--set", f"image.tag={tag}"]
    args += ["--set", "image.pullPolicy=Never"]
    for s in sets:
        args += ["--set", s]
    helm(
        "install", name, str(CHART), "-n", namespace, "--create-namespace",
        *args, "--wait", "--timeout", "5m",
    )  # fmt: skip


def _apply_reference(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", str(REFERENCE))


def _running_pods(kubectl: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = _json(kubectl, "get", "pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in pods
        if p.get("status", {}).get("phase") == "Running"
        and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
    ]


def _workers(kubectl: Kubectl, namespace: str) -> list[str]:
    pods = _json(kubectl, "get", "pods", "-n", namespace, "-l", "dask.org/component=worker")
    return [
        p["metadata"]["name"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp")
    ]


def _compute_and_scale_down(
    kubectl: Kubectl, namespace: str, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client computes on the reference cluster; `kubectl scale` to one worker then goes
    through the operator pod's own connection to the scheduler (retirement), losing nothing."""
    from distributed import Client, wait

    from dask_kubecluster import KubeCluster

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # Only functions the workers import are sent: the image's Python is not the test's.
    with (
        KubeCluster.from_name("simple", namespace=namespace, quiet=True) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(2, timeout=WAIT)
        futures = client.map(operator.mul, range(100), [2] * 100, pure=False)
        wait(futures)  # type: ignore[no-untyped-call]
        kubectl("scale", "daskcluster", "simple", "-n", namespace, "--replicas=1")
        _until("one worker pod left", lambda: len(_workers(kubectl, namespace)) == 1)
        _until(
            "the scheduler down to one worker",
            lambda: len(client.scheduler_info()["workers"]) == 1,
        )
        assert [f.key for f in futures if f.status != "finished"] == []
        assert client.gather(futures) == [i * 2 for i in range(100)]


def _cluster_ready(kubectl: Kubectl, namespace: str) -> bool:
    scheduler = _running_pods(kubectl, namespace, "dask.org/component=scheduler")
    workers = _running_pods(kubectl, namespace, "dask.org/component=worker")
    want = yaml.safe_load(REFERENCE.read_text())["spec"]["worker"]["replicas"]
    return len(scheduler) == 1 and len(workers) == want


@pytest.mark.filterwarnings("ignore:Mismatched versions found")
def test_operator_pod_runs_a_reference_cluster(
    kubectl: Kubectl,
    helm: Helm,
    release: tuple[str, str],
    operator_image: str,
    namespaces: Callable[[], str],
    k8s_kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, namespace = release
    _install_operator(helm, name, namespace, operator_image)
    pods = _json(
        kubectl, "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}"
    )
    assert len(pods["items"]) == 1
    pod = pods["items"][0]
    assert pod["spec"]["serviceAccountName"] == f"{name}-dask-kubernetes-operator"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True

    users = namespaces()
    _apply_reference(kubectl, users)
    _until(
        "the reference DaskCluster's scheduler and workers running",
        lambda: _cluster_ready(kubectl, users),
    )
    _compute_and_scale_down(kubectl, users, k8s_kubeconfig, monkeypatch)

    kubectl("delete", "daskcluster", "--all", "-n", users, "--wait=true", "--timeout=120s")
    _until(
        "every pod of the deleted DaskCluster gone",
        lambda: not _json(kubectl, "get", "pods", "-n", users)["items"],
    )


def test_single_namespace_mode_leaves_other_namespaces_alone(
    kubectl: Kubectl,
    helm: Helm,
    release: tuple[str, str],
    operator_image: str,
    namespaces: Callable[[], str],
) -> None:
    name, namespace = release
    other = namespaces()
    # Created first: by the time the operator has served its own namespace, it has seen this one.
    _apply_reference(kubectl, other)
    _install_operator(
        helm, name, namespace, operator_image,
        "rbac.cluster=false", f"kopfArgs={{--namespace={namespace}}}",
    )  # fmt: skip
    assert kubectl(
        "get", "clusterrole", "-l", f"app.kubernetes.io/instance={name}", "-o", "name"
    ).stdout.strip() == ""  # fmt: skip
    _apply_reference(kubectl, namespace)
    _until(
        "the DaskCluster in the operator's namespace running",
        lambda: _cluster_ready(kubectl, namespace),
    )
    assert _json(kubectl, "get", "pods", "-n", other)["items"] == []
    assert "status" not in _json(kubectl, "get", "daskcluster", "simple", "-n", other)
    kubectl("delete", "daskcluster", "--all", "-n", namespace, "--wait=true", "--timeout=120s")


def _peers(kubectl: Kubectl, peering: str) -> dict[str, Any]:
    got = kubectl("get", "clusterkopfpeering", peering, "-o", "json", check=False)
    if got.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(got.stdout).get("status") or {}
    return {k: v for k, v in status.items() if isinstance(v, dict)}


def test_two_replicas_with_peering_one_acts_and_one_takes_over(
    kubectl: Kubectl,
    helm: Helm,
    release: tuple[str, str],
    operator_image: str,
    namespaces: Callable[[], str],
) -> None:
    """replicaCount=2 with peering: both replicas join the peering with distinct priorities,
    a DaskCluster is served once (no duplicate pods), and after the active replica's pod is
    deleted the operator still serves new clusters."""
    name, namespace = release
    peering = f"peering-{name}"
    try:
        _install_operator(
            helm, name, namespace, operator_image,
            "replicaCount=2", "peering.enabled=true", f"peering.name={peering}",
        )  # fmt: skip
        pods = _json(
            kubectl, "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}"
        )["items"]
        replicas = {
            p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
        }
        assert len(replicas) == 2
        _until("both replicas in the peering", lambda: replicas <= set(_peers(kubectl, peering)))
        priorities = {k: v.get("priority") for k, v in _peers(kubectl, peering).items()}
        assert len({priorities[r] for r in replicas}) == 2, priorities  # no tie: no freeze
        active = max(replicas, key=lambda r: int(priorities[r]))

        first = namespaces()
        _apply_reference(kubectl, first)
        _until("the first DaskCluster running", lambda: _cluster_ready(kubectl, first))
        assert len(_workers(kubectl, first)) == 2  # served once, not by both replicas

        kubectl("delete", "pod", "-n", namespace, active, "--wait=true", "--timeout=120s")
        second = namespaces()
        _apply_reference(kubectl, second)
        _until(
            "a DaskCluster created after the active replica left, running",
            lambda: _cluster_ready(kubectl, second),
        )
        assert len(_workers(kubectl, second)) == 2
        assert active not in _peers(kubectl, peering)  # it signed off the peering on exit
    finally:
        kubectl("delete", "clusterkopfpeering", peering, "--ignore-not-found", check=False)
