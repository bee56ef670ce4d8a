"""The main job: Dask on a real local Kubernetes, from nothing.

    nox -s demo             # up: cluster, operator (Helm), a DaskCluster via KubeCluster, compute
    nox -s demo -- down     # tear everything down

Steps of `up`, each skipped when already done:
1. bring up the local single-node Kubernetes built from source (`python -m ci.localk8s up`);
2. build the operator image from this checkout and import it into the node's containerd;
3. `helm upgrade --install` the chart with that image;
4. create a DaskCluster through `KubeCluster`, scale it 1 -> 3, run a computation on the pods,
   print the result and where the dashboard is. The Dask cluster is left running for you to use.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ci.localk8s import versions
from ci.localk8s.cluster import Cluster
from ci.localk8s.paths import bin_dir

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "dask-kubernetes-operator"
RELEASE = "dask-operator"
OPERATOR_NAMESPACE = "dask-operator"
DEMO_NAMESPACE = "default"
DEMO_CLUSTER = "demo"


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(c) for c in cmd], check=True, env={**os.environ, **(env or {})})


def local_python(*args: str) -> None:
    run(sys.executable, "-m", *args, env={"PYTHONPATH": str(ROOT)})


def operator_image() -> str:
    """Build the operator image from this checkout and import it into the node's containerd."""
    from ci.images import build, import_into_containerd
    from ci.localk8s.node.plugin import node_config

    archive = build(["operator"])[0]
    import_into_containerd([archive], str(node_config().containerd_socket))
    tagged = [ref for ref in archive.refs if not ref.endswith(":dev")]
    return tagged[0] if tagged else archive.refs[0]


def install_operator(kubeconfig: Path, image: str) -> None:
    helm = bin_dir(versions.select().kubernetes) / "helm"
    name, tag = image.rsplit(":", 1)
    run(
        helm, "upgrade", "--install", RELEASE, CHART,
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.name={name}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--wait", "--timeout", "5m",
        env={"KUBECONFIG": str(kubeconfig)},
    )  # fmt: skip


def use_dask(kubeconfig: Path) -> None:
    os.environ["KUBECONFIG"] = str(kubeconfig)
    from distributed import Client

    from dask_kubecluster import KubeCluster

    cluster = KubeCluster(
        name=DEMO_CLUSTER,
        namespace=DEMO_NAMESPACE,
        n_workers=1,
        image="ghcr.io/dask/dask:latest",
        shutdown_on_close=False,
    )
    say(f"DaskCluster {DEMO_CLUSTER!r} is up; scaling to 3 workers")
    cluster.scale(3)
    client = Client(cluster)  # type: ignore[no-untyped-call]  # distributed is not typed
    client.wait_for_workers(3, timeout=300)
    start = time.monotonic()
    futures = client.map(lambda x: x * x, range(1000))
    total = client.submit(sum, futures).result()
    workers = sorted(client.scheduler_info()["workers"].values(), key=lambda w: w["name"])
    say(
        f"sum of squares of 0..999 = {total} (expected {sum(x * x for x in range(1000))}), "
        f"computed in {time.monotonic() - start:.1f}s on {len(workers)} worker pods:"
    )
    for w in workers:
        print(f"    {w['name']}")
    say(f"dashboard: {cluster.dashboard_link}")
    print(
        f"    (served through a port-forward while this process runs; afterwards use\n"
        f"     kubectl port-forward -n {DEMO_NAMESPACE} svc/{DEMO_CLUSTER}-scheduler 8787)"
    )
    client.close()  # type: ignore[no-untyped-call]
    cluster.close()


def up() -> int:
    say("local Kubernetes (control plane + node), built from source when needed")
    local_python("ci.localk8s", "up")
    cluster = Cluster()
    kubeconfig = cluster.kubeconfig_path
    say("operator image from this checkout")
    image = operator_image()
    say(f"operator: helm upgrade --install {RELEASE} ({image})")
    install_operator(kubeconfig, image)
    say("a Dask cluster through KubeCluster")
    use_dask(kubeconfig)
    say("done")
    print(f"    export KUBECONFIG={kubeconfig}")
    print("    kubectl get daskclusters,pods -A")
    print("    nox -s demo -- down     # remove everything")
    return 0


def down() -> int:
    cluster = Cluster()
    if cluster.exists():
        kubeconfig = cluster.kubeconfig_path
        kubectl = bin_dir(versions.select().kubernetes) / "kubectl"
        say(f"deleting DaskCluster {DEMO_CLUSTER!r}")
        subprocess.run(
            [str(kubectl), "--kubeconfig", str(kubeconfig), "delete", "daskcluster",
             DEMO_CLUSTER, "-n", DEMO_NAMESPACE, "--ignore-not-found", "--wait=true",
             "--timeout=120s"],
            check=False,
        )  # fmt: skip
    say("stopping the local Kubernetes")
    local_python("ci.localk8s", "down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s demo --", description=__doc__)
    parser.add_argument("action", nargs="?", choices=["up", "down"], default="up")
    args = parser.parse_args(argv)
    return up() if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
