"""Certificates of the node's components, signed by the cluster CA (reused while valid).

* kubelet client: ``CN=system:node:<node>``, ``O=system:nodes`` (Node authorizer + NodeRestriction);
* kubelet serving: valid for the node IP (the bridge gateway), 127.0.0.1 and the node name (the
  apiserver reaches the kubelet at the node's address for logs/exec/port-forward);
* kube-proxy: ``CN=system:kube-proxy`` (bound to ``system:node-proxier`` by default RBAC);
* CoreDNS: ``CN=dask-k8s:coredns`` (bound by ``coredns.RBAC``).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from ci.localk8s import pki


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def _still_valid(cert_path: Path, ca: x509.Certificate, cn: str, sans: set[str]) -> bool:
    """Reuse an existing certificate if it was issued by this CA for this name and is not
    about to expire."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != cn or _sans(cert) != sans:
        return False
    remaining = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return remaining > datetime.timedelta(days=1)


def issue_cert(
    *,
    ca_cert: Path,
    ca_key: Path,
    out_cert: Path,
    out_key: Path,
    common_name: str,
    organizations: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    server_dns: tuple[str, ...] = (),
) -> None:
    """Write a P-256 key and a certificate signed by the cluster CA (client, and server if SANs
    are given). Idempotent: a valid certificate for the same CA and name is kept."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    sans = set(server_ips) | set(server_dns)
    if out_key.is_file() and _still_valid(out_cert, ca, common_name, sans):
        return
    pki.issue_cert(
        ca_cert, ca_key, pki.CertPair(cert=out_cert, key=out_key), common_name, organizations,
        server=bool(sans), dns_names=server_dns, ip_addresses=server_ips,
    )  # fmt: skip
