"""The node's generated configuration: addresses, containerd, CNI, firewall, kubelet, CoreDNS,
certificates. Pure logic: no root, no cluster."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ci.localk8s.node import ClusterInfo, NodeConfig, components, containerd, network, pki


@pytest.fixture
def cfg(tmp_path: Path) -> NodeConfig:
    return NodeConfig(state_dir=tmp_path / "state", run_dir=tmp_path / "run")


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp_path / "ca.crt", tmp_path / "ca.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


@pytest.fixture
def cluster(ca: tuple[Path, Path], tmp_path: Path) -> ClusterInfo:
    return ClusterInfo(
        server="https://127.0.0.1:6443",
        ca_cert=ca[0],
        ca_key=ca[1],
        admin_kubeconfig=tmp_path / "admin.kubeconfig",
        bin_dir=tmp_path / "bin",
    )


def test_addresses(cfg: NodeConfig) -> None:
    assert cfg.gateway_ip == cfg.dns_ip == cfg.node_ip == cfg.node_name == "10.244.0.1"
    assert cfg.gateway_cidr == "10.244.0.1/24"
    assert cfg.containerd_socket == cfg.run_dir / "containerd.sock"


def test_containerd_config(cfg: NodeConfig) -> None:
    text = containerd.render_config(cfg, "overlayfs")
    assert f'address = "{cfg.containerd_socket}"' in text
    assert f'root = "{cfg.containerd_root}"' in text
    assert "SystemdCgroup = false" in text
    assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in text
    assert "restrict_oom_score_adj = true" in text
    assert "netns_mounts_under_state_dir = true" in text
    assert f'bin_dir = "{cfg.cni_bin_dir}"' in text


def test_cni_config_never_masquerades(cfg: NodeConfig) -> None:
    conf = json.loads(network.write_cni_config(cfg).read_text())
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["ipMasq"] is False
    assert bridge["isGateway"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]


def test_firewall_drops_everything_leaving_the_bridge(
    cfg: NodeConfig, cluster: ClusterInfo
) -> None:
    rules = network.firewall_ruleset(cfg, cluster)
    assert "hook forward priority -10" in rules
    assert 'iifname "dk8s0" oifname != "dk8s0" counter drop' in rules
    assert 'ip saddr 10.244.0.0/16 oifname != "dk8s0" counter drop' in rules
    assert "ip daddr 10.96.0.0/16 counter drop" in rules
    assert "accept" not in rules.replace("policy accept", "")


def test_resolv_conf_has_no_upstream(cfg: NodeConfig) -> None:
    text = network.write_resolv_conf(cfg).read_text()
    assert "nameserver" not in text
    assert "search" not in text


def test_kubelet_config(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    conf = components.kubelet_config(cfg, cluster)
    assert conf["failCgroupV1"] is False
    assert conf["cgroupDriver"] == "cgroupfs"
    assert conf["containerRuntimeEndpoint"] == f"unix://{cfg.containerd_socket}"
    assert conf["address"] == "10.244.0.1"
    assert conf["healthzBindAddress"] == "127.0.0.1"
    assert conf["clusterDNS"] == ["10.96.0.10"]
    assert conf["authentication"]["anonymous"] == {"enabled": False}
    assert conf["authorization"] == {"mode": "Webhook"}
    assert conf["imageGCHighThresholdPercent"] == 100


def test_corefile_has_no_forwarding(cfg: NodeConfig) -> None:
    text = components.corefile(cfg, Path("/k/coredns.kubeconfig"))
    assert "forward" not in text
    assert text.count("bind 10.244.0.1") == 2
    assert "rcode NXDOMAIN" in text
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in text


def test_kube_dns_service_points_at_host_coredns(cfg: NodeConfig) -> None:
    svc, eps = yaml.safe_load_all(components.kube_dns_service(cfg))
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert "selector" not in svc["spec"]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    assert eps["endpoints"][0]["addresses"] == ["10.244.0.1"]


def test_kube_proxy_config(cfg: NodeConfig, tmp_path: Path) -> None:
    conf = components.kube_proxy_config(cfg, tmp_path / "kp.kubeconfig")
    assert conf["mode"] == "iptables"
    assert conf["clusterCIDR"] == "10.244.0.0/16"
    assert conf["healthzBindAddress"].startswith("127.0.0.1:")
    assert conf["iptables"]["localhostNodePorts"] is False


def test_node_certificates(cfg: NodeConfig, cluster: ClusterInfo) -> None:
    cert_path, key_path = cfg.pki_dir / "kubelet.crt", cfg.pki_dir / "kubelet.key"
    kwargs: dict[str, Any] = {
        "ca_cert": cluster.ca_cert,
        "ca_key": cluster.ca_key,
        "out_cert": cert_path,
        "out_key": key_path,
        "common_name": "system:node:10.244.0.1",
        "organizations": ("system:nodes",),
        "server_ips": ("10.244.0.1", "127.0.0.1"),
    }
    pki.issue_cert(**kwargs)
    first = cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(first)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:node:10.244.0.1"
    )
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:nodes"
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "10.244.0.1",
        "127.0.0.1",
    }
    assert key_path.stat().st_mode & 0o077 == 0
    pki.issue_cert(**kwargs)
    assert cert_path.read_bytes() == first, "a valid certificate is reused"
