"""Pod network on the host, arranged so that no packet of a pod or a service can leave the machine.

* Bridge ``dk8s0`` holds the pod gateway (10.244.0.1/24); the bridge CNI plugin attaches pods to it
  with host-local IPAM, ``ipMasq: false`` (no NAT to the outside at all).
* A blackhole route for the whole pod supernet (10.244.0.0/16): the only more-specific route is
  the bridge's own /24, so a pod address outside it can never take the default route.
* The service CIDR is routed onto the bridge (a link route, no gateway), never the default route.
  kube-proxy DNATs service traffic in PREROUTING (pods) and OUTPUT (the host), so real services
  work from pods and from host processes alike, as on any Kubernetes node (an operator or test
  running on the host reaches a scheduler's ClusterIP). A ClusterIP no Service backs goes to our
  local bridge, where nothing answers: it fails closed on this machine. (A blackhole route here
  would make the host's own connect() fail before kube-proxy's OUTPUT DNAT could apply.)
* A dedicated nftables table (``inet dask_k8s_node``, base chain on the forward hook) drops
  anything coming from the bridge or from pod addresses that would be forwarded out of any other
  interface, and anything still addressed to a service IP. This compensates for
  ``net.ipv4.ip_forward=1``, which routing pod <-> service <-> pod through the bridge needs.
* ``bridge-nf-call-iptables=1`` so replies bridged between two pods pass conntrack (un-DNAT).

The previous values of the sysctls we change are saved and restored by ``teardown``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ClusterInfo, NodeConfig
from .proc import log, run

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}
CNI_CONF_NAME = "10-dask-k8s.conflist"


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _set_sysctls(cfg: NodeConfig) -> None:
    if not cfg.sysctl_backup.exists():
        saved = {k: _sysctl_path(k).read_text().strip() for k in SYSCTLS}
        cfg.sysctl_backup.parent.mkdir(parents=True, exist_ok=True)
        cfg.sysctl_backup.write_text(json.dumps(saved))
    for key, value in SYSCTLS.items():
        _sysctl_path(key).write_text(value)


def _restore_sysctls(cfg: NodeConfig) -> None:
    try:
        saved: dict[str, str] = json.loads(cfg.sysctl_backup.read_text())
    except (OSError, ValueError):
        return
    for key, value in saved.items():
        _sysctl_path(key).write_text(value)
    cfg.sysctl_backup.unlink()


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def _ensure_bridge(cfg: NodeConfig) -> None:
    if not _link_exists(cfg.bridge):
        run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
    addrs = run(["ip", "-4", "-o", "addr", "show", "dev", cfg.bridge]).stdout
    if f" {cfg.gateway_cidr} " not in addrs:
        run(["ip", "addr", "add", cfg.gateway_cidr, "dev", cfg.bridge])
    run(["ip", "link", "set", cfg.bridge, "up"])


def _blackholes(cfg: NodeConfig, cluster: ClusterInfo) -> list[str]:
    return [cfg.pod_supernet]


def firewall_ruleset(cfg: NodeConfig, cluster: ClusterInfo) -> str:
    """Our own nftables table with a base chain on the forward hook.

    An own table (not rules in iptables' FORWARD chain) cannot be bypassed: in nftables an
    ``accept`` only ends the base chain it is in, so kube-proxy's or CNI's ``ACCEPT`` rules in
    ``ip filter FORWARD`` (priority 0) do not undo a ``drop`` here (priority -10), whatever the
    rule order there.
    """
    br, pods, svcs, table = cfg.bridge, cfg.pod_supernet, cluster.service_cidr, cfg.fw_table
    note = 'comment "dask-k8s node: nothing leaves the machine"'
    return f"""\
table inet {table}
delete table inet {table}
table inet {table} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{br}" oifname != "{br}" counter drop {note}
        ip saddr {pods} oifname != "{br}" counter drop {note}
        ip daddr {pods} oifname != "{br}" counter drop {note}
        ip daddr {svcs} counter drop {note}
    }}
}}
"""


def _ensure_firewall(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    run(["nft", "-f", "-"], input_text=firewall_ruleset(cfg, cluster))


def _firewall_present(cfg: NodeConfig) -> bool:
    return run(["nft", "list", "table", "inet", cfg.fw_table], check=False).returncode == 0


def write_cni_config(cfg: NodeConfig) -> Path:
    conf = {
        "cniVersion": "1.0.0",
        "name": "dask-k8s",
        "plugins": [
            {
                "type": "bridge",
                "bridge": cfg.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cfg.pod_cidr, "gateway": cfg.gateway_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(cfg.cni_state_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    cfg.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    for stale in cfg.cni_conf_dir.iterdir():
        if stale.name != CNI_CONF_NAME:
            stale.unlink()
    path = cfg.cni_conf_dir / CNI_CONF_NAME
    path.write_text(json.dumps(conf, indent=2) + "\n")
    return path


def write_resolv_conf(cfg: NodeConfig) -> Path:
    """The kubelet's resolvConf: no nameserver and no search domain from the host; ClusterFirst
    pods get CoreDNS plus the cluster search domains only."""
    cfg.resolv_conf.parent.mkdir(parents=True, exist_ok=True)
    cfg.resolv_conf.write_text("# dask-k8s node: pods resolve cluster names only (no upstream)\n")
    return cfg.resolv_conf


def setup(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    """Idempotent: bridge, routes, firewall chain, sysctls, CNI config."""
    _ensure_bridge(cfg)
    for cidr in _blackholes(cfg, cluster):
        run(["ip", "route", "replace", "blackhole", cidr])
    # Replaces a blackhole an older version left; goes away with the bridge.
    run(["ip", "route", "replace", cluster.service_cidr, "dev", cfg.bridge, "scope", "link"])
    _ensure_firewall(cfg, cluster)
    _set_sysctls(cfg)
    write_cni_config(cfg)
    write_resolv_conf(cfg)
    log(
        f"network: bridge {cfg.bridge} {cfg.gateway_cidr}, blackholes {_blackholes(cfg, cluster)},"
        f" services {cluster.service_cidr} on {cfg.bridge}"
    )


def _cleanup_portmap(cfg: NodeConfig) -> None:
    """Remove portmap's per-pod NAT chains that point at our pods (hostPort pods only)."""
    saved = run(["iptables-save", "-t", "nat"], check=False).stdout
    prefix = cfg.pod_supernet.split("/", 1)[0].rsplit(".", 2)[0] + "."
    ours = {
        line.split()[1]
        for line in saved.splitlines()
        if line.startswith("-A CNI-DN-") and f"--to-destination {prefix}" in line
    }
    for chain in sorted(ours):
        for line in saved.splitlines():
            if line.startswith("-A ") and f"-j {chain}" in line:
                run(["iptables", "-w", "5", "-t", "nat", "-D", *line.split()[1:]], check=False)
        run(["iptables", "-w", "5", "-t", "nat", "-F", chain], check=False)
        run(["iptables", "-w", "5", "-t", "nat", "-X", chain], check=False)


def _cleanup_kubelet_chains() -> None:
    """The kubelet's ``KUBE-FIREWALL`` chain (IPv4 and IPv6; ``kube-proxy --cleanup`` leaves
    it), with its jumps from INPUT and OUTPUT."""
    for ipt in ("iptables", "ip6tables"):
        for builtin in ("INPUT", "OUTPUT"):
            while (
                run([ipt, "-w", "5", "-D", builtin, "-j", "KUBE-FIREWALL"], check=False).returncode
                == 0
            ):
                pass
        if run([ipt, "-w", "5", "-S", "KUBE-FIREWALL"], check=False).returncode == 0:
            run([ipt, "-w", "5", "-F", "KUBE-FIREWALL"], check=False)
            run([ipt, "-w", "5", "-X", "KUBE-FIREWALL"], check=False)


def teardown(cfg: NodeConfig, service_cidr: str | None) -> None:
    """Remove what ``setup`` made (after all pods are gone). Idempotent."""
    _cleanup_portmap(cfg)
    _cleanup_kubelet_chains()
    if _firewall_present(cfg):
        run(["nft", "delete", "table", "inet", cfg.fw_table])
    if _link_exists(cfg.bridge):
        run(["ip", "link", "del", cfg.bridge])
    for cidr in (cfg.pod_supernet, service_cidr):
        if cidr and f"blackhole {cidr}" in run(["ip", "route", "show", "type", "blackhole"]).stdout:
            run(["ip", "route", "del", "blackhole", cidr])
    _restore_sysctls(cfg)


def status(cfg: NodeConfig) -> dict[str, bool]:
    routes = run(["ip", "route", "show", "type", "blackhole"], check=False).stdout
    return {
        "bridge": _link_exists(cfg.bridge),
        "firewall": _firewall_present(cfg),
        "blackhole": f"blackhole {cfg.pod_supernet}" in routes,
    }
