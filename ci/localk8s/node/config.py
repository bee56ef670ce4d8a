"""Where the node keeps its state, its addresses, and what it needs from the control plane.

Everything the node creates lives under our own directories (``NodeConfig.state_dir`` and
``NodeConfig.run_dir``) or is a named kernel object we own (the bridge ``NodeConfig.bridge``, the
nftables table ``NodeConfig.fw_table``, blackhole routes for our ranges), so ``stop_node`` can
remove exactly what ``start_node`` made and nothing system-wide is disturbed.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

CNI_PLUGINS_VERSION = "v1.10.0"
COREDNS_VERSION = "v1.15.0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

# Debian packages the node needs; installed with apt-get when a command is missing.
HOST_PACKAGES: dict[str, str] = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "nft": "nftables",
    "socat": "socat",
    "ip": "iproute2",
    "conntrack": "conntrack",
    "mount": "mount",
}


def _home_dir(env: str, default: str) -> Path:
    return Path(os.environ.get(env) or os.path.expanduser(default))


def cache_root() -> Path:
    """Build cache shared with the control plane (``~/.cache/dask-k8s``)."""
    return _home_dir("DASK_K8S_CACHE", "~/.cache/dask-k8s")


@dataclass(frozen=True)
class ClusterInfo:
    """What the node needs from the control plane (engineer A's ``ci.localk8s``)."""

    server: str
    """URL of the kube-apiserver, e.g. ``https://127.0.0.1:6443``."""
    ca_cert: Path
    ca_key: Path
    """Cluster CA; the node signs its own client and serving certificates with it."""
    admin_kubeconfig: Path
    """A ``system:masters`` kubeconfig, used to add CoreDNS's RBAC."""
    bin_dir: Path
    """Directory holding ``kubelet``, ``kube-proxy`` and ``kubectl`` of the cluster's version."""
    service_cidr: str = "10.96.0.0/16"


@dataclass(frozen=True)
class NodeConfig:
    """Names, addresses and directories of the single node."""

    node_name: str = "10.244.0.1"
    """Also the node's ``Hostname`` address, which the apiserver prefers over InternalIP when it
    dials the kubelet (logs/exec/port-forward): an IP, so that needs no DNS lookup, which could
    leave the machine (``hack/local-up-cluster.sh`` names its node by IP too)."""
    node_ip: str = "10.244.0.1"
    """The node's InternalIP and the kubelet's serving address: the bridge gateway (the kubelet
    refuses a loopback node IP: "nodeIP can't be loopback address"). A local address that only
    this host and its pods can reach."""
    pod_cidr: str = "10.244.0.0/24"
    pod_supernet: str = "10.244.0.0/16"
    """Blackholed as a whole so a pod address outside our /24 can never take the default route."""
    cluster_domain: str = "cluster.local"
    cluster_dns: str = "10.96.0.10"
    """ClusterIP of the ``kube-system/kube-dns`` Service; pods' nameserver. kube-proxy DNATs it
    to CoreDNS on the host at ``dns_ip`` (the bridge gateway)."""
    bridge: str = "dk8s0"
    fw_table: str = "dask_k8s_node"
    """nftables table (family inet) holding our forward-hook drop rules."""
    state_dir: Path = field(
        default_factory=lambda: _home_dir("DASK_K8S_NODE_STATE", "~/.local/state/dask-k8s/node")
    )
    run_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("DASK_K8S_RUN", "/run/dask-k8s"))
    )
    cni_version: str = CNI_PLUGINS_VERSION
    coredns_version: str = COREDNS_VERSION
    pause_image: str = PAUSE_IMAGE

    # -- addresses ---------------------------------------------------------------------------
    @property
    def gateway_ip(self) -> str:
        """First address of the pod CIDR: the bridge's address and CoreDNS's listen address."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def dns_ip(self) -> str:
        """Where CoreDNS listens: the bridge's address, reachable from pods and the host only."""
        return self.gateway_ip

    @property
    def gateway_cidr(self) -> str:
        net = ipaddress.ip_network(self.pod_cidr)
        return f"{self.gateway_ip}/{net.prefixlen}"

    # -- directories -------------------------------------------------------------------------
    @property
    def containerd_root(self) -> Path:
        return self.state_dir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.run_dir / "runc"

    @property
    def cni_bin_dir(self) -> Path:
        return cache_root() / "cni" / self.cni_version / "bin"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_dir / "cni" / "net.d"

    @property
    def cni_state_dir(self) -> Path:
        """host-local IPAM's allocations (``dataDir``)."""
        return self.run_dir / "cni" / "networks"

    @property
    def coredns_bin(self) -> Path:
        return cache_root() / "coredns" / self.coredns_version / "bin" / "coredns"

    @property
    def kubelet_root(self) -> Path:
        return self.state_dir / "kubelet"

    @property
    def pod_logs_dir(self) -> Path:
        return self.state_dir / "pod-logs"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def conf_dir(self) -> Path:
        return self.state_dir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.run_dir / "pids"

    @property
    def resolv_conf(self) -> Path:
        """The kubelet's ``resolvConf``: no outside nameserver, no outside search domain."""
        return self.conf_dir / "resolv.conf"

    @property
    def sysctl_backup(self) -> Path:
        return self.state_dir / "sysctl-backup.json"
