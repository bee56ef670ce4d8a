"""kubeconfig files (written as JSON, which kubectl and every client library read as YAML)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def kubeconfig_dict(
    *, cluster: str, server: str, ca_file: Path, user: str, cert_file: Path, key_file: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(cert_file), "client-key": str(key_file)},
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path,
    *,
    cluster: str,
    server: str,
    ca_file: Path,
    user: str,
    cert_file: Path,
    key_file: Path,
) -> Path:
    """Write a kubeconfig (mode 0600) referring to the certificate files by absolute path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = kubeconfig_dict(
        cluster=cluster,
        server=server,
        ca_file=ca_file.resolve(),
        user=user,
        cert_file=cert_file.resolve(),
        key_file=key_file.resolve(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    return path
