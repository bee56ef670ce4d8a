"""Where am I? Namespace and in-cluster detection, as pure functions of paths and dicts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_ACCOUNT_NAMESPACE: Final = SERVICE_ACCOUNT_DIR / "namespace"
SERVICE_ACCOUNT_TOKEN: Final = SERVICE_ACCOUNT_DIR / "token"
DEFAULT_KUBECONFIG: Final = Path("~/.kube/config")
DEFAULT_NAMESPACE: Final = "default"


def in_cluster(
    environ: Mapping[str, str] | None = None,
    token_path: Path = SERVICE_ACCOUNT_TOKEN,
) -> bool:
    """Whether this process runs in a pod with a service account (in-cluster config works)."""
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and token_path.is_file()


def namespace_from_service_account(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str | None:
    """The pod's namespace from the service-account file, None when absent or empty."""
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value or None


def kubeconfig_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The kubeconfig files kubectl would read: ``$KUBECONFIG`` entries or ``~/.kube/config``."""
    env = os.environ if environ is None else environ
    raw = env.get("KUBECONFIG", "")
    paths = [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return paths or [DEFAULT_KUBECONFIG.expanduser()]


def kubeconfig_env(environ: Mapping[str, str] | None = None) -> str:
    """The kubeconfig path list as kubernetes clients take it (``$KUBECONFIG`` or the default)."""
    return os.pathsep.join(str(p) for p in kubeconfig_paths(environ))


def load_kubeconfigs(paths: Sequence[Path]) -> dict[str, Any]:
    """Merge kubeconfig files like kubectl: the first file to set a value wins.

    Only what namespace discovery needs is merged: ``current-context`` and ``contexts``.
    Unreadable or malformed files are skipped.
    """
    merged: dict[str, Any] = {"contexts": []}
    seen: set[str] = set()
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(data, dict):
            continue
        if "current-context" not in merged and data.get("current-context"):
            merged["current-context"] = data["current-context"]
        for ctx in data.get("contexts") or []:
            if isinstance(ctx, dict) and ctx.get("name") not in seen:
                seen.add(str(ctx.get("name")))
                merged["contexts"].append(ctx)
    return merged


def namespace_from_kubeconfig(config: Mapping[str, Any], context: str | None = None) -> str | None:
    """The namespace of ``context`` (default: the current context) in a kubeconfig dict."""
    name = context or config.get("current-context")
    if not name:
        return None
    for ctx in config.get("contexts") or []:
        if isinstance(ctx, Mapping) and ctx.get("name") == name:
            namespace = (ctx.get("context") or {}).get("namespace")
            return str(namespace) if namespace else None
    return None


def discover_namespace(
    *,
    service_account_namespace: Path = SERVICE_ACCOUNT_NAMESPACE,
    kubeconfig: Sequence[Path] | None = None,
    environ: Mapping[str, str] | None = None,
    context: str | None = None,
) -> str:
    """The namespace to use when none is given.

    In order: the in-cluster service-account namespace file, the kubeconfig current context's
    namespace, ``"default"``.
    """
    found = namespace_from_service_account(service_account_namespace)
    if found:
        return found
    paths = list(kubeconfig) if kubeconfig is not None else kubeconfig_paths(environ)
    found = namespace_from_kubeconfig(load_kubeconfigs(paths), context)
    return found or DEFAULT_NAMESPACE
