"""Where binaries, caches and cluster state live: all outside the repository."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def cache_root() -> Path:
    """Built binaries and generated wrapper modules: `$DASK_K8S_CACHE` or ~/.cache/dask-k8s."""
    if env := os.environ.get("DASK_K8S_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "dask-k8s"


def state_root() -> Path:
    """Running clusters (certs, etcd data, logs, pids): `$DASK_K8S_STATE` or ~/.local/state."""
    if env := os.environ.get("DASK_K8S_STATE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "dask-k8s"


def release_dir(kubernetes_version: str) -> Path:
    return cache_root() / kubernetes_version


def bin_dir(kubernetes_version: str) -> Path:
    """`~/.cache/dask-k8s/v1.37.2/bin/`: kube-*, kubelet, kubectl, etcd, helm."""
    return release_dir(kubernetes_version) / "bin"


def log(message: str) -> None:
    """Progress for humans, on stderr (stdout carries results such as a kubeconfig path)."""
    print(f"[localk8s {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
