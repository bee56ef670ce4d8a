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
    """Build (cached) the node's images with ``ci.images`` and import whichever containerd does
    not hold at the same digest.

    ``DASK_K8S_NODE_IMAGES`` (comma-separated, default ``pause,dask``) names the images built
    here; archives of other images that are already built (e.g. ``operator`` by
    ``python -m ci.images build``) are imported too but not rebuilt, which keeps ``up`` fast.
    """
    images = importlib.import_module("ci.images")
    wanted = os.environ.get("DASK_K8S_NODE_IMAGES") or DEFAULT_IMAGES
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    if "pause" not in names:
        names.append("pause")
    archives = list(images.build(names))
    built = {a.name for a in archives}
    archives += [a for a in images.list_archives() if a.name not in built]
    have = _image_digests(cfg)
    todo = [a for a in archives if any(have.get(ref) != a.manifest_digest for ref in a.refs)]
    if todo:
        images.import_into_containerd(todo, str(cfg.containerd_socket))
    else:
        log(f"images already in containerd: {', '.join(a.name for a in archives)}")


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
