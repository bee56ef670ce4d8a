"""Certificates and kubeconfigs of the node's components, signed by the cluster CA.

* kubelet client: ``CN=system:node:<node>``, ``O=system:nodes`` (Node authorizer + NodeRestriction);
* kubelet serving: valid for the node IP (the bridge gateway), 127.0.0.1 and the node name (the
  apiserver reaches the kubelet at the node's address for logs/exec/port-forward);
* kube-proxy: ``CN=system:kube-proxy`` (bound to ``system:node-proxier`` by default RBAC);
* CoreDNS: ``CN=dask-k8s:coredns`` (bound by ``coredns.RBAC``).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _load_ca(
    ca_cert: Path, ca_key: Path
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise TypeError(f"unsupported CA key type {type(key).__name__}")
    return cert, key


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
    ca, signer = _load_ca(ca_cert, ca_key)
    sans = set(server_ips) | set(server_dns)
    if out_key.is_file() and _still_valid(out_cert, ca, common_name, sans):
        return
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server_ips or server_dns:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server_ips or server_dns:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in server_dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    out_key.parent.mkdir(parents=True, exist_ok=True)
    out_key.touch(mode=0o600)
    out_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, client_cert: Path, client_key: Path, user: str
) -> None:
    """A kubeconfig with absolute paths to the CA and the client certificate."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "dask-k8s",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client_cert), "client-key": str(client_key)},
            }
        ],
        "contexts": [{"name": "default", "context": {"cluster": "dask-k8s", "user": user}}],
        "current-context": "default",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
