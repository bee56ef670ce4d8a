"""The single node of the local cluster: containerd + runc + CNI + kubelet + kube-proxy + CoreDNS.

``start_node`` / ``stop_node`` / ``node_status`` are called by
``python -m ci.localk8s up|down|status``;
``python -m ci.localk8s.node`` drives the node alone (build, up, down, status) for debugging.
See docs/local-kubernetes-node.md.
"""

from __future__ import annotations

from .config import ClusterInfo, NodeConfig
from .lifecycle import ImageImporter, node_ready, node_status, start_node, stop_node
from .plugin import apiserver_args, down, status, up

__all__ = [
    "ClusterInfo",
    "ImageImporter",
    "NodeConfig",
    "apiserver_args",
    "down",
    "node_ready",
    "node_status",
    "start_node",
    "status",
    "stop_node",
    "up",
]
