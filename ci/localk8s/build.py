"""Build Kubernetes, etcd and helm from Go source through the Go module proxy.

`k8s.io/kubernetes` cannot be `go install`ed: it requires its staging modules (k8s.io/api,
k8s.io/client-go...) at v0.0.0 and maps them with `replace => ./staging/...` lines that only count
in its own repository. So we generate a small wrapper module that requires k8s.io/kubernetes and
replaces every staging module by its published v0.X.Y, the list read from the `.mod` file the proxy
serves for that release, and build upstream's own `cmd/...` packages in it. etcd gets a wrapper of
the same kind (its `replace ../api` lines block `go install` as well); helm installs plainly.

Each group (kubernetes, etcd, helm) has a stamp file beside the binaries holding the hash of its
recipe (generated go.mod, build arguments, Go version); it is rebuilt only when that changes or a
binary is missing. The Go build and module caches are Go's defaults (shared with everything else).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .paths import bin_dir, format_duration, log, release_dir
from .versions import Release

# Bump to force rebuilds when the recipe changes in a way the hashed inputs do not show.
RECIPE_REVISION = "1"

KUBE_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
ALL_BINARIES = (*KUBE_BINARIES, "etcd", "helm")
GROUPS = ("kubernetes", "etcd", "helm")
HEARTBEAT_SECONDS = 60.0

_WRAPPER_PREFIX = "local.invalid/dask-k8s"


class BuildError(RuntimeError):
    """A Go command failed; the message says which and how."""


def go_binary() -> str:
    """`$GO`, `go` on PATH, or the usual /usr/local/go/bin/go."""
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).exists():
            return candidate
    raise BuildError("no Go toolchain found: install Go >= 1.26 or set $GO")


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="0", GOWORK="off")
    return env


def _go(
    args: Sequence[str],
    cwd: Path,
    *,
    capture: bool = False,
    label: str = "",
    env: dict[str, str] | None = None,
) -> str:
    """Run `go args...`; long runs print a heartbeat with the elapsed time."""
    cmd = [go_binary(), *args]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**go_env(), **(env or {})},
        stdout=subprocess.PIPE if capture else None,
        stderr=None,
        text=True,
    )
    if capture:
        out, _ = proc.communicate()
    else:
        out = ""
        while True:
            try:
                proc.wait(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                elapsed = format_duration(time.monotonic() - start)
                log(f"  ... {label or args[0]} still running ({elapsed})")
    if proc.returncode != 0:
        raise BuildError(f"`go {' '.join(args)}` failed with exit code {proc.returncode} in {cwd}")
    return out or ""


def go_version() -> str:
    return _go(["env", "GOVERSION"], Path.cwd(), capture=True).strip()


@dataclass(frozen=True)
class ModuleInfo:
    gomod: Path
    time: str  # RFC 3339 publication time of the version (a reproducible build date)


def download_module(path: str, version: str, cwd: Path) -> ModuleInfo:
    out = _go(["mod", "download", "-json", f"{path}@{version}"], cwd, capture=True)
    data = json.loads(out)
    if data.get("Error"):
        raise BuildError(f"cannot download {path}@{version}: {data['Error']}")
    info = json.loads(Path(data["Info"]).read_text())
    return ModuleInfo(gomod=Path(data["GoMod"]), time=str(info["Time"]))


_GO_LINE = re.compile(r"^go\s+(\S+)\s*$", re.MULTILINE)
_GODEBUG_LINE = re.compile(r"^godebug\s+.*$", re.MULTILINE)
_GODEBUG_BLOCK = re.compile(r"^godebug\s*\(.*?^\)", re.MULTILINE | re.DOTALL)
_STAGING = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.MULTILINE)


def go_directives(gomod_text: str) -> str:
    """The `go` and `godebug` lines of an upstream go.mod, to mirror them in a wrapper."""
    lines = []
    if m := _GO_LINE.search(gomod_text):
        lines.append(f"go {m.group(1)}")
    lines += [m.group(0) for m in _GODEBUG_BLOCK.finditer(gomod_text)]
    lines += [m.group(0) for m in _GODEBUG_LINE.finditer(gomod_text) if "(" not in m.group(0)]
    return "\n\n".join(lines)


def staging_modules(gomod_text: str) -> list[str]:
    """k8s.io/kubernetes' `k8s.io/x => ./staging/src/k8s.io/x` replacements, by module path."""
    return sorted(set(_STAGING.findall(gomod_text)))


def kubernetes_wrapper(release: Release, upstream_gomod: str) -> tuple[str, str]:
    """go.mod and tools.go of the wrapper module building Kubernetes `release`."""
    staging = staging_modules(upstream_gomod)
    if not staging:
        raise BuildError(f"no staging replace lines in the go.mod of {release.kubernetes}")
    replaces = "\n".join(f"\t{m} => {m} {release.staging_version}" for m in staging)
    gomod = (
        f"// Generated by ci/localk8s/build.py; do not edit.\n"
        f"module {_WRAPPER_PREFIX}/kubernetes\n\n{go_directives(upstream_gomod)}\n\n"
        f"require k8s.io/kubernetes {release.kubernetes}\n\nreplace (\n{replaces}\n)\n"
    )
    return gomod, _tools_go(f"k8s.io/kubernetes/cmd/{b}" for b in KUBE_BINARIES)


def etcd_wrapper(release: Release, upstream_gomod: str) -> tuple[str, str]:
    gomod = (
        f"// Generated by ci/localk8s/build.py; do not edit.\n"
        f"module {_WRAPPER_PREFIX}/etcd\n\n{go_directives(upstream_gomod)}\n\n"
        f"require go.etcd.io/etcd/server/v3 {release.etcd}\n"
    )
    return gomod, _tools_go(["go.etcd.io/etcd/server/v3"])


def _tools_go(packages: Iterator[str] | Sequence[str]) -> str:
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    return (
        "//go:build tools\n\n// Generated by ci/localk8s/build.py: pins the packages we build.\n"
        f"package tools\n\nimport (\n{imports}\n)\n"
    )


def kubernetes_ldflags(release: Release, build_date: str) -> str:
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={release.kubernetes}",
            f"-X {pkg}.gitMajor={release.major_number}",
            f"-X {pkg}.gitMinor={release.minor_number}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return " ".join(flags)


_CLIENT_GO = re.compile(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.\d+", re.MULTILINE)


def helm_ldflags(release: Release, helm_gomod: str) -> str:
    """Like helm's Makefile: its version, and the Kubernetes it assumes by default (client-go's)."""
    flags = [
        "-s",
        "-w",
        f"-X helm.sh/helm/v3/internal/version.version={release.helm}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ]
    if m := _CLIENT_GO.search(helm_gomod):
        for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={m.group(1)}"]
    return " ".join(flags)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in (RECIPE_REVISION, *parts):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stamp(bindir: Path, group: str) -> Path:
    return bindir / f".stamp-{group}"


def _up_to_date(bindir: Path, group: str, binaries: Sequence[str], digest: str) -> bool:
    stamp = _stamp(bindir, group)
    return (
        stamp.exists()
        and stamp.read_text().strip() == digest
        and all((bindir / b).is_file() for b in binaries)
    )


def _build_group(
    release: Release,
    group: str,
    binaries: Sequence[str],
    digest: str,
    work: Path,
    steps: Sequence[list[str]],
    *,
    module: tuple[str, str] | None = None,
    env: dict[str, str] | None = None,
    force: bool,
) -> bool:
    """Write the wrapper `module` (go.mod, tools.go) into `work` and run the Go `steps` there,
    unless the stamp says the binaries were built by this very recipe. True if it built."""
    bindir = bin_dir(release.kubernetes)
    if not force and _up_to_date(bindir, group, binaries, digest):
        return False
    bindir.mkdir(parents=True, exist_ok=True)
    _stamp(bindir, group).unlink(missing_ok=True)
    if module is not None:
        _write_module(work, *module)
    log(f"building {group} for Kubernetes {release.kubernetes}: {', '.join(binaries)}")
    start = time.monotonic()
    for args in steps:
        step_start = time.monotonic()
        label = f"{group}: go {' '.join(args[:2] if args[0] == 'mod' else args[:1])}"
        log(f"  {label} ...")
        _go(args, work, label=label, env=env)
        log(f"  {label} done in {format_duration(time.monotonic() - step_start)}")
    missing = [b for b in binaries if not (bindir / b).is_file()]
    if missing:
        raise BuildError(f"the build of {group} left no {', '.join(missing)} in {bindir}")
    _stamp(bindir, group).write_text(digest + "\n")
    log(f"built {group} in {format_duration(time.monotonic() - start)}")
    return True


def _write_module(work: Path, gomod: str, tools: str) -> None:
    """A fresh wrapper module; `go mod tidy` then completes go.mod and writes go.sum."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text(gomod)
    (work / "go.sum").unlink(missing_ok=True)
    (work / "tools.go").write_text(tools)


def build_kubernetes(release: Release, *, force: bool = False) -> bool:
    work = release_dir(release.kubernetes) / "src" / "kubernetes"
    work.mkdir(parents=True, exist_ok=True)
    info = download_module("k8s.io/kubernetes", release.kubernetes, work.parent)
    gomod, tools = kubernetes_wrapper(release, info.gomod.read_text())
    compile_ = [
        "build",
        "-trimpath",
        "-ldflags",
        kubernetes_ldflags(release, info.time),
        "-o",
        str(bin_dir(release.kubernetes)) + os.sep,
        *(f"k8s.io/kubernetes/cmd/{b}" for b in KUBE_BINARIES),
    ]
    digest = _digest(go_version(), gomod, tools, *compile_)
    steps = [["mod", "tidy"], compile_]
    return _build_group(
        release, "kubernetes", KUBE_BINARIES, digest, work, steps,
        module=(gomod, tools), force=force,
    )  # fmt: skip


def build_etcd(release: Release, *, force: bool = False) -> bool:
    work = release_dir(release.kubernetes) / "src" / "etcd"
    work.mkdir(parents=True, exist_ok=True)
    info = download_module("go.etcd.io/etcd/server/v3", release.etcd, work.parent)
    gomod, tools = etcd_wrapper(release, info.gomod.read_text())
    etcd = bin_dir(release.kubernetes) / "etcd"
    compile_ = [
        "build",
        "-trimpath",
        "-ldflags",
        "-s -w",
        "-o",
        str(etcd),
        "go.etcd.io/etcd/server/v3",
    ]
    digest = _digest(go_version(), gomod, tools, *compile_)
    steps = [["mod", "tidy"], compile_]
    return _build_group(
        release, "etcd", ["etcd"], digest, work, steps, module=(gomod, tools), force=force
    )


def build_helm(release: Release, *, force: bool = False) -> bool:
    """helm has no replace lines: a plain `go install helm.sh/helm/v3/cmd/helm@version`."""
    work = release_dir(release.kubernetes) / "src"
    work.mkdir(parents=True, exist_ok=True)
    info = download_module("helm.sh/helm/v3", release.helm, work)
    ldflags = helm_ldflags(release, info.gomod.read_text())
    install = [
        "install",
        "-trimpath",
        "-ldflags",
        ldflags,
        f"helm.sh/helm/v3/cmd/helm@{release.helm}",
    ]
    digest = _digest(go_version(), *install)
    env = {"GOBIN": str(bin_dir(release.kubernetes))}
    return _build_group(release, "helm", ["helm"], digest, work, [install], env=env, force=force)


_BUILDERS = {"kubernetes": build_kubernetes, "etcd": build_etcd, "helm": build_helm}


def build(release: Release, *, force: bool = False, groups: Sequence[str] = GROUPS) -> Path:
    """Build what is missing or stale for `release`; returns the bin directory."""
    start = time.monotonic()
    with _lock(release_dir(release.kubernetes) / ".build.lock"):
        built = [g for g in groups if _BUILDERS[g](release, force=force)]
    bindir = bin_dir(release.kubernetes)
    if built:
        log(f"{', '.join(built)} built in {format_duration(time.monotonic() - start)} -> {bindir}")
    else:
        log(f"binaries for Kubernetes {release.kubernetes} are up to date in {bindir}")
    return bindir


def is_built(release: Release) -> bool:
    """Whether every binary exists (stamps are checked by `build`, which also needs Go)."""
    bindir = bin_dir(release.kubernetes)
    return all((bindir / b).is_file() for b in ALL_BINARIES)
