"""kubelet, kube-proxy and CoreDNS: configuration files, identities and processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ci.localk8s.kubeconfig import write_kubeconfig

from .config import ClusterInfo, NodeConfig
from .pki import issue_cert
from .proc import log, run, start_daemon, stop_daemon

KUBELET = "kubelet"
KUBE_PROXY = "kube-proxy"
COREDNS = "coredns"
KUBELET_HEALTHZ_PORT = 10248
KUBE_PROXY_HEALTHZ_PORT = 10256
COREDNS_HEALTH_PORT = 10254
COREDNS_READY_PORT = 10253


#: Cluster and context name in the node components' kubeconfigs.
KUBECONFIG_CONTEXT = "dask-k8s"


def _identity(
    cfg: NodeConfig, cluster: ClusterInfo, name: str, cn: str, orgs: tuple[str, ...]
) -> Path:
    cert, key = cfg.pki_dir / f"{name}.crt", cfg.pki_dir / f"{name}.key"
    issue_cert(
        ca_cert=cluster.ca_cert, ca_key=cluster.ca_key, out_cert=cert, out_key=key,
        common_name=cn, organizations=orgs,
    )  # fmt: skip
    kubeconfig = cfg.conf_dir / f"{name}.kubeconfig"
    write_kubeconfig(
        kubeconfig, cluster=KUBECONFIG_CONTEXT, server=cluster.server, ca_file=cluster.ca_cert,
        user=cn, cert_file=cert, key_file=key,
    )  # fmt: skip
    return kubeconfig


# -- kubelet ---------------------------------------------------------------------------------


def kubelet_config(cfg: NodeConfig, cluster: ClusterInfo) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Serve on the node's InternalIP (the bridge gateway): the apiserver reaches it there.
        "address": cfg.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(cfg.pki_dir / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(cfg.pki_dir / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "30s"},
            "x509": {"clientCAFile": str(cluster.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        # The machine has cgroup v1 (hybrid); kubelets >= 1.35 refuse it unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": True,
        "containerRuntimeEndpoint": f"unix://{cfg.containerd_socket}",
        "clusterDNS": [cfg.cluster_dns],
        "clusterDomain": cfg.cluster_domain,
        "resolvConf": str(cfg.resolv_conf),
        "registerNode": True,
        "failSwapOn": False,
        "podLogsDir": str(cfg.pod_logs_dir),
        # A dev box: do not evict because the disk is fairly full, never garbage-collect the
        # imported images (they cannot be pulled again).
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        # No CAP_SYS_RESOURCE here: the kubelet cannot lower its own score (default -999).
        "oomScoreAdj": 0,
        "makeIPTablesUtilChains": False,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "volumeStatsAggPeriod": "30s",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
    }


def start_kubelet(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    node = cfg.node_name
    kubeconfig = _identity(cfg, cluster, "kubelet", f"system:node:{node}", ("system:nodes",))
    issue_cert(
        ca_cert=cluster.ca_cert, ca_key=cluster.ca_key,
        out_cert=cfg.pki_dir / "kubelet-serving.crt", out_key=cfg.pki_dir / "kubelet-serving.key",
        common_name=f"system:node:{node}", organizations=("system:nodes",),
        server_ips=(cfg.node_ip, "127.0.0.1"), server_dns=(node, "localhost"),
    )  # fmt: skip
    conf = cfg.conf_dir / "kubelet.yaml"
    conf.write_text(yaml.safe_dump(kubelet_config(cfg, cluster), sort_keys=False))
    for d in (cfg.kubelet_root, cfg.pod_logs_dir):
        d.mkdir(parents=True, exist_ok=True)
    argv: list[str | Path] = [
        cluster.bin_dir / "kubelet",
        f"--config={conf}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={cfg.kubelet_root}",
        f"--cert-dir={cfg.pki_dir}",
        f"--hostname-override={node}",
        f"--node-ip={cfg.node_ip}",
        "--v=2",
    ]
    start_daemon(cfg.pid_dir, KUBELET, argv, cfg.log_dir / "kubelet.log", env=_path_env())


def _path_env() -> dict[str, str]:
    # The kubelet and kube-proxy call mount, iptables, ip, conntrack.
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


# -- kube-proxy ------------------------------------------------------------------------------


def kube_proxy_config(cfg: NodeConfig, kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": cfg.pod_supernet,
        "hostnameOverride": cfg.node_name,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts only on the bridge address, never on the host's outward interface; no
        # route_localnet.
        "nodePortAddresses": [f"{cfg.gateway_ip}/32"],
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        # Leave the host's conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def start_kube_proxy(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    kubeconfig = _identity(cfg, cluster, "kube-proxy", "system:kube-proxy", ())
    conf = cfg.conf_dir / "kube-proxy.yaml"
    conf.write_text(yaml.safe_dump(kube_proxy_config(cfg, kubeconfig), sort_keys=False))
    argv: list[str | Path] = [cluster.bin_dir / "kube-proxy", f"--config={conf}", "--v=2"]
    start_daemon(cfg.pid_dir, KUBE_PROXY, argv, cfg.log_dir / "kube-proxy.log", env=_path_env())


def cleanup_kube_proxy(cfg: NodeConfig, bin_dir: Path | None) -> None:
    """``kube-proxy --cleanup`` removes its iptables/nftables rules (KUBE-* chains)."""
    exe = bin_dir / "kube-proxy" if bin_dir else None
    if exe is None or not exe.is_file():
        return
    proc = run([exe, "--cleanup", "--v=0"], check=False, timeout=120)
    if proc.returncode != 0:
        log(f"kube-proxy --cleanup exited {proc.returncode}: {proc.stderr.strip()[-500:]}")


# -- CoreDNS ---------------------------------------------------------------------------------

RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: dask-k8s:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: dask-k8s:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: dask-k8s:coredns
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: dask-k8s:coredns
"""


def corefile(cfg: NodeConfig, kubeconfig: Path) -> str:
    """Cluster zones from the API; every other name is answered NXDOMAIN locally (no forward)."""
    dom = cfg.cluster_domain
    return f"""\
{dom}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {cfg.dns_ip}
    errors
    health 127.0.0.1:{COREDNS_HEALTH_PORT}
    ready 127.0.0.1:{COREDNS_READY_PORT}
    kubernetes {dom} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} {KUBECONFIG_CONTEXT}
        pods insecure
        ttl 5
    }}
    loadbalance
}}
.:53 {{
    bind {cfg.dns_ip}
    errors
    # No upstream: names outside the cluster never leave this machine.
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


def kube_dns_service(cfg: NodeConfig) -> str:
    """``kube-system/kube-dns`` at ``cluster_dns`` without a selector, and its EndpointSlice
    naming CoreDNS on the host (the bridge gateway)."""
    ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "clusterIP": cfg.cluster_dns,
            "ports": [{"name": n, "protocol": p, "port": 53, "targetPort": 53} for n, p in ports],
        },
    }
    eps = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-host",
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "dask-k8s-node",
            },
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [cfg.dns_ip], "conditions": {"ready": True}, "nodeName": cfg.node_name}
        ],
        "ports": [{"name": n, "protocol": p, "port": 53} for n, p in ports],
    }
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in (svc, eps))


def start_coredns(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    kubeconfig = _identity(cfg, cluster, "coredns", "dask-k8s:coredns", ())
    kubectl: list[str | Path] = [
        cluster.bin_dir / "kubectl",
        f"--kubeconfig={cluster.admin_kubeconfig}",
    ]
    run([*kubectl, "apply", "-f", "-"], input_text=f"{RBAC}---\n{kube_dns_service(cfg)}")
    conf = cfg.conf_dir / "Corefile"
    conf.write_text(corefile(cfg, kubeconfig))
    argv: list[str | Path] = [cfg.coredns_bin, "-conf", conf]
    start_daemon(cfg.pid_dir, COREDNS, argv, cfg.log_dir / "coredns.log")


# -- apiserver for pods ----------------------------------------------------------------------

APISERVER_PROXY = "apiserver-proxy"
APISERVER_PROXY_PORT = 6443


def kubernetes_endpoints(cfg: NodeConfig) -> str:
    """An EndpointSlice for ``default/kubernetes`` (10.96.0.1:443) naming the apiserver proxy on
    the bridge address. The apiserver itself listens on loopback only and runs with
    ``--endpoint-reconciler-type=none``, so pods would otherwise have no way to reach it."""
    eps = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes-node-proxy",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "dask-k8s-node",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [cfg.gateway_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "protocol": "TCP", "port": APISERVER_PROXY_PORT}],
    }
    return yaml.safe_dump(eps, sort_keys=False)


def start_apiserver_proxy(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    """socat on ``<bridge address>:6443`` -> the apiserver on loopback (TLS passes through; the
    apiserver's certificate is valid for 10.96.0.1 and kubernetes.default.svc)."""
    target = urlsplit(cluster.server)
    argv: list[str | Path] = [
        "/usr/bin/socat",
        f"TCP-LISTEN:{APISERVER_PROXY_PORT},bind={cfg.gateway_ip},reuseaddr,fork",
        f"TCP:{target.hostname}:{target.port}",
    ]
    start_daemon(cfg.pid_dir, APISERVER_PROXY, argv, cfg.log_dir / "apiserver-proxy.log")
    kubectl: list[str | Path] = [
        cluster.bin_dir / "kubectl",
        f"--kubeconfig={cluster.admin_kubeconfig}",
    ]
    run([*kubectl, "apply", "-f", "-"], input_text=kubernetes_endpoints(cfg))


def stop_all(cfg: NodeConfig) -> None:
    stop_daemon(cfg.pid_dir, APISERVER_PROXY, group=True)
    for name in (COREDNS, KUBE_PROXY, KUBELET):
        stop_daemon(cfg.pid_dir, name, timeout=30)
