"""Root filesystems: debootstrap, chroot, overlayfs stages, mounts that are always undone.

Everything here needs root (debootstrap, chroot, mount).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
#: Where the host's CA bundle is put inside a chroot while building (under /tmp: never packed).
CHROOT_CA_BUNDLE = "/tmp/.build-ca-certificates.crt"

CHROOT_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_START = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr, with the seconds since the process started."""
    print(f"[images {time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(f"{what} needs root (debootstrap, chroot and mount)")


def ensure_debootstrap() -> str:
    """The path of debootstrap, installed with apt-get if missing."""
    found = shutil.which("debootstrap")
    if found:
        return found
    log("debootstrap missing: apt-get install debootstrap")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True, env=env)
    found = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(found).exists():
        raise FileNotFoundError("debootstrap is still missing after apt-get install")
    return found


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    target = os.path.realpath(path)
    found: list[Path] = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_all(path: Path) -> None:
    """Unmount everything at or below ``path``; lazily if a plain unmount fails."""
    for point in mounts_under(path):
        result = subprocess.run(["umount", str(point)], capture_output=True, text=True)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(point)], check=True)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"still mounted under {path}: {left}")


def safe_rmtree(path: Path) -> None:
    """rmtree that first unmounts whatever is mounted below ``path`` (a bind of the host's /dev
    below a root filesystem must never be deleted through)."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_all(path)
    shutil.rmtree(path)


def _mount(args: Sequence[str]) -> None:
    subprocess.run(["mount", *args], check=True)


@contextlib.contextmanager
def overlay(lowers: Sequence[Path], upper: Path, work: Path, merged: Path) -> Iterator[Path]:
    """Mount an overlayfs (``lowers`` top first) at ``merged``; unmount on exit."""
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    lowerdir = ":".join(str(p) for p in lowers)
    _mount(
        [
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lowerdir},upperdir={upper},workdir={work}",
            str(merged),
        ]
    )
    try:
        yield merged
    finally:
        unmount_all(merged)


@contextlib.contextmanager
def build_mounts(root: Path, *, network: bool = True) -> Iterator[Path]:
    """Mount /proc and bind /dev into ``root``; for ``network`` copy the host's resolv.conf and
    CA bundle in. All undone on exit (resolv.conf removed, the CA bundle too)."""
    proc = root / "proc"
    dev = root / "dev"
    resolv = root / "etc" / "resolv.conf"
    ca = root / CHROOT_CA_BUNDLE.lstrip("/")
    proc.mkdir(exist_ok=True)
    dev.mkdir(exist_ok=True)
    try:
        _mount(["-t", "proc", "proc", str(proc)])
        _mount(["--bind", "/dev", str(dev)])
        if network:
            if resolv.is_symlink() or resolv.exists():
                resolv.unlink()
            shutil.copyfile(HOST_RESOLV_CONF, resolv)
            ca.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HOST_CA_BUNDLE, ca)
        yield root
    finally:
        unmount_all(proc)
        unmount_all(dev)
        if network:
            for f in (resolv, ca):
                if f.is_symlink() or f.exists():
                    f.unlink()


def chroot_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": CHROOT_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "DEBCONF_NOWARNINGS": "yes",
        "PIP_CERT": CHROOT_CA_BUNDLE,
        "SSL_CERT_FILE": CHROOT_CA_BUNDLE,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_DEFAULT_TIMEOUT": "120",
        "PIP_ROOT_USER_ACTION": "ignore",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if extra:
        env.update(extra)
    return env


def chroot_run(
    root: Path, script: str, *, env: Mapping[str, str] | None = None, capture: bool = False
) -> str:
    """Run a ``/bin/sh -e`` script in the chroot ``root`` (umask 022: files world-readable)."""
    result = subprocess.run(
        ["chroot", str(root), "/bin/sh", "-ec", "umask 022\n" + script],
        env=chroot_env(env),
        check=True,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )
    return result.stdout if capture else ""


def debootstrap(target: Path, *, suite: str, mirror: str, include: Sequence[str] = ()) -> None:
    """``debootstrap --variant=minbase`` into ``target`` (which must not exist yet)."""
    exe = ensure_debootstrap()
    cmd = [exe, "--variant=minbase", "--merged-usr"]
    if include:
        cmd.append("--include=" + ",".join(include))
    cmd += [suite, str(target), mirror]
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        logfile = target / "debootstrap" / "debootstrap.log"
        if logfile.exists():
            sys.stderr.write(logfile.read_text()[-4000:])
        raise
