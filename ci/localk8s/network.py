"""Network constants of the local cluster, in one place for the control plane and the node.

Nothing may send a packet off this machine: every component binds and advertises loopback,
and the virtual ranges below must be routed locally (blackhole routes, NAT only inside) by
whoever brings up a node.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"
# ClusterIP range of Services; the first address is the `kubernetes` Service.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
# Pod range; kube-controller-manager hands each Node a /24 of it (spec.podCIDR).
POD_CIDR = "10.244.0.0/16"
NODE_CIDR_MASK_SIZE = 24


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel picks it; a race is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct free ports, held open together so they differ."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
