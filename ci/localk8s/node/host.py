"""Host prerequisites: Debian packages (containerd, runc, iptables, ...) and the Go-built binaries
(CNI plugins, CoreDNS), cached under ``~/.cache/dask-k8s``."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .config import HOST_PACKAGES, NodeConfig
from .proc import log, run, wait_for

GO = os.environ.get("DASK_K8S_GO", "/usr/local/go/bin/go")
CNI_PLUGINS = {
    "bridge": "plugins/main/bridge",
    "host-local": "plugins/ipam/host-local",
    "loopback": "plugins/main/loopback",
    "portmap": "plugins/meta/portmap",
}


def _dpkg_idle() -> bool:
    """True when no other apt/dpkg holds the lock (engineer B's image build may be installing)."""
    proc = run(["fuser", "/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"], check=False)
    return proc.returncode != 0


def ensure_host_packages() -> None:
    """``apt-get install`` whichever of containerd/runc/iptables/iproute2/conntrack is missing."""
    missing = sorted({pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None})
    if not missing:
        return
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if shutil.which("fuser") is not None:
        wait_for("dpkg lock", _dpkg_idle, timeout=600, interval=1)
    run(["apt-get", "update", "-qq"], env=env, timeout=600)
    run(
        ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600", *missing],
        env=env,
        timeout=1200,
    )
    still = sorted(cmd for cmd in HOST_PACKAGES if shutil.which(cmd) is None)
    if still:
        raise RuntimeError(f"commands still missing after apt-get install: {still}")


def _go_install(gobin: Path, packages: list[str], ldflags: str) -> None:
    gobin.mkdir(parents=True, exist_ok=True)
    env = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOBIN": str(gobin), "GOFLAGS": "-mod=mod"}
    start = time.monotonic()
    log(f"go install {' '.join(packages)}")
    run([GO, "install", "-trimpath", f"-ldflags={ldflags}", *packages], env=env, timeout=3600)
    log(f"built in {time.monotonic() - start:.0f}s -> {gobin}")


def build_cni(cfg: NodeConfig) -> Path:
    """bridge, host-local, loopback, portmap from github.com/containernetworking/plugins."""
    bin_dir = cfg.cni_bin_dir
    if all((bin_dir / name).is_file() for name in CNI_PLUGINS):
        return bin_dir
    mod = "github.com/containernetworking/plugins"
    ver = cfg.cni_version
    ldflags = f"-s -w -X {mod}/pkg/utils/buildversion.BuildVersion={ver}"
    _go_install(bin_dir, [f"{mod}/{path}@{ver}" for path in CNI_PLUGINS.values()], ldflags)
    return bin_dir


def build_coredns(cfg: NodeConfig) -> Path:
    """CoreDNS from github.com/coredns/coredns (v1.15's go.mod has no replace lines, so a plain
    ``go install`` works; the module root is the main package)."""
    if cfg.coredns_bin.is_file():
        return cfg.coredns_bin
    _go_install(
        cfg.coredns_bin.parent, [f"github.com/coredns/coredns@{cfg.coredns_version}"], "-s -w"
    )
    return cfg.coredns_bin


def build_all(cfg: NodeConfig) -> None:
    ensure_host_packages()
    build_cni(cfg)
    build_coredns(cfg)
