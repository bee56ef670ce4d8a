"""The node plugin interface of ``ci.localk8s.cluster``: ``up(cluster)``, ``down(cluster)``,
``status(cluster)``.

``python -m ci.localk8s up`` calls ``up`` once the control plane is ready, ``down`` calls ``down``
before stopping the control plane, ``status`` adds the node's lines. The control plane is typed
structurally (``ControlPlane``) so this package does not depend on its internals.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Protocol

from ci.localk8s import network

from . import containerd
from .config import ClusterInfo, NodeConfig
from .lifecycle import node_status, start_node, stop_node
from .proc import log


class _CA(Protocol):
    @property
    def cert_path(self) -> Path: ...
    @property
    def key_path(self) -> Path: ...


class ControlPlane(Protocol):
    """What the node uses of ``ci.localk8s.cluster.Cluster``."""

    @property
    def apiserver_url(self) -> str: ...
    @property
    def kubeconfig_path(self) -> Path: ...
    @property
    def ca(self) -> _CA: ...
    def bin(self, name: str) -> Path: ...


def node_config() -> NodeConfig:
    return NodeConfig(cluster_dns=network.CLUSTER_DNS_IP, cluster_domain=network.CLUSTER_DOMAIN)


def cluster_info(cluster: ControlPlane) -> ClusterInfo:
    return ClusterInfo(
        server=cluster.apiserver_url,
        ca_cert=cluster.ca.cert_path,
        ca_key=cluster.ca.key_path,
        admin_kubeconfig=cluster.kubeconfig_path,
        bin_dir=cluster.bin("kubelet").parent,
        service_cidr=network.SERVICE_CIDR,
    )


def _image_digests(cfg: NodeConfig) -> dict[str, str]:
    """ref -> target digest of what containerd (namespace k8s.io) holds."""
    rows = [line.split() for line in containerd.ctr(cfg, "images", "ls").splitlines()[1:]]
    return {row[0]: row[2] for row in rows if len(row) >= 3}


DEFAULT_IMAGES = "pause,dask"


def import_local_images(cfg: NodeConfig) -> None:
    """Import the images built by ``ci.images`` that containerd does not hold at the same digest.

    Archives already built are used as they are (``python -m ci.images build`` refreshes them);
    of the images named by ``DASK_K8S_NODE_IMAGES`` (comma-separated, default ``pause,dask``)
    the missing ones are built here. ``DASK_K8S_NODE_REBUILD_IMAGES=1`` runs the (cached) build
    for them in any case. Other archives (e.g. ``operator``) are imported if they exist.
    """
    images = importlib.import_module("ci.images")
    wanted = os.environ.get("DASK_K8S_NODE_IMAGES") or DEFAULT_IMAGES
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    if "pause" not in names:
        names.append("pause")
    existing = {a.name: a for a in images.list_archives()}
    rebuild = os.environ.get("DASK_K8S_NODE_REBUILD_IMAGES") == "1"
    to_build = [n for n in names if rebuild or n not in existing]
    archives = list(images.build(to_build)) if to_build else []
    built = {a.name for a in archives}
    archives += [a for name, a in existing.items() if name not in built]
    have = _image_digests(cfg)
    todo = [a for a in archives if any(have.get(ref) != a.manifest_digest for ref in a.refs)]
    if todo:
        images.import_into_containerd(todo, str(cfg.containerd_socket))
    else:
        log(f"images already in containerd: {', '.join(a.name for a in archives)}")


def apiserver_args(cluster: ControlPlane) -> list[str]:
    """Flags the control plane adds to kube-apiserver when the node is enabled: dial kubelets at
    their InternalIP (never a name that would need DNS) and verify their serving certificates
    (signed by the cluster CA for the node IP)."""
    return [
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={cluster.ca.cert_path}",
    ]


def up(cluster: ControlPlane) -> None:
    start_node(cluster_info(cluster), node_config(), import_images=import_local_images)


def down(cluster: ControlPlane) -> None:
    try:
        bin_dir: Path | None = cluster.bin("kube-proxy").parent
    except Exception:  # the control plane's state may already be gone
        bin_dir = None
    stop_node(node_config(), bin_dir=bin_dir, service_cidr=network.SERVICE_CIDR)


def status(cluster: ControlPlane) -> list[str]:
    try:
        info: ClusterInfo | None = cluster_info(cluster)
    except Exception:
        info = None
    return [f"{k}: {v}" for k, v in node_status(node_config(), info).items()]
