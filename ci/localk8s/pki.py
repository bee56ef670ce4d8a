"""The cluster's certificates: one CA signs serving and client certificates (ECDSA P-256).

A client certificate's CN is the Kubernetes user name and its O entries are the groups, e.g.
`issue_client(ca, "admin", ["system:masters"])` or, for a kubelet,
`issue_client(ca, "system:node:NAME", ["system:nodes"])`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
_KeyType = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _write_key(key: _KeyType, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_key(path: Path) -> _KeyType:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path} is not an EC private key")
    return key


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class CertificateAuthority:
    """The cluster CA in `directory` (ca.crt, ca.key)."""

    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def key_path(self) -> Path:
        return self.directory / "ca.key"

    def exists(self) -> bool:
        return self.cert_path.is_file() and self.key_path.is_file()

    @classmethod
    def create(cls, directory: Path, common_name: str = "dask-k8s-ca") -> CertificateAuthority:
        ca = cls(directory)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        name = _name(common_name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + 10 * VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_key(key, ca.key_path)
        _write_cert(cert, ca.cert_path)
        return ca

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        ca = cls(directory)
        return ca if ca.exists() else cls.create(directory)

    def issue(
        self,
        path_stem: Path,
        common_name: str,
        organizations: Sequence[str] = (),
        *,
        client: bool = True,
        server: bool = False,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> CertPair:
        """Sign a new key pair; writes `<path_stem>.crt` and `<path_stem>.key`."""
        pair = CertPair(cert=path_stem.with_suffix(".crt"), key=path_stem.with_suffix(".key"))
        issue_cert(
            self.cert_path, self.key_path, pair, common_name, organizations,
            client=client, server=server, dns_names=dns_names, ip_addresses=ip_addresses,
        )  # fmt: skip
        return pair

    def issue_client(self, path_stem: Path, user: str, groups: Sequence[str] = ()) -> CertPair:
        """A client certificate authenticating as `user` in `groups`."""
        return self.issue(path_stem, user, groups, client=True)


def write_service_account_key(private: Path, public: Path) -> None:
    """The key pair the apiserver signs (and verifies) service-account tokens with."""
    key = ec.generate_private_key(ec.SECP256R1())
    _write_key(key, private)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def issue_cert(
    ca_cert: Path,
    ca_key: Path,
    out: CertPair,
    common_name: str,
    organizations: Sequence[str] = (),
    *,
    client: bool = True,
    server: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> None:
    """Write a new P-256 key and a certificate for it signed by the CA in ``ca_cert``/``ca_key``:
    CN ``common_name`` (the user), O ``organizations`` (the groups), client and/or server use,
    and the given DNS/IP subject alternative names."""
    signer = _load_key(ca_key)
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
        [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
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
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    _write_key(key, out.key)
    _write_cert(cert, out.cert)
