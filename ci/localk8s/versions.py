"""The Kubernetes releases we build, read from `ci/kubernetes-versions.toml`."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

VERSIONS_FILE = Path(__file__).resolve().parent.parent / "kubernetes-versions.toml"
ENV_VAR = "KUBERNETES_VERSION"

_SPEC = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?$")


class VersionError(ValueError):
    """An unknown or malformed Kubernetes version was asked for."""


@dataclass(frozen=True)
class Release:
    """One supported Kubernetes release and the pinned tools built with it."""

    minor: str  # "1.37"
    kubernetes: str  # "v1.37.2"
    etcd: str  # "v3.7.3"
    helm: str  # "v3.22.0"

    @property
    def major_number(self) -> int:
        return int(self.kubernetes.lstrip("v").split(".")[0])

    @property
    def minor_number(self) -> int:
        return int(self.kubernetes.lstrip("v").split(".")[1])

    @property
    def staging_version(self) -> str:
        """The version of the k8s.io staging modules (k8s.io/api...): v1.37.2 -> v0.37.2."""
        _, minor, patch = self.kubernetes.lstrip("v").split(".")
        return f"v0.{minor}.{patch}"


@dataclass(frozen=True)
class VersionsFile:
    default: str
    releases: dict[str, Release]

    def select(self, spec: str | None = None) -> Release:
        """The release for `spec` ("1.36", "v1.36", "v1.36.3"), `$KUBERNETES_VERSION` or default."""
        if spec is None:
            spec = os.environ.get(ENV_VAR) or self.default
        match = _SPEC.match(spec.strip())
        if match is None:
            raise VersionError(f"malformed Kubernetes version {spec!r}; use e.g. 1.37 or v1.37.2")
        minor = f"{match['major']}.{match['minor']}"
        release = self.releases.get(minor)
        if release is None:
            raise VersionError(
                f"Kubernetes {spec} is not supported; supported minors: {', '.join(self.minors)}"
                f" (see {VERSIONS_FILE})"
            )
        if match["patch"] is not None and release.kubernetes != f"v{minor}.{match['patch']}":
            raise VersionError(
                f"Kubernetes {spec} is not pinned; for {minor} we build {release.kubernetes}"
                f" (edit {VERSIONS_FILE} to change it)"
            )
        return release

    @property
    def minors(self) -> list[str]:
        return sorted(
            self.releases, key=lambda m: tuple(int(p) for p in m.split(".")), reverse=True
        )


def load(path: Path = VERSIONS_FILE) -> VersionsFile:
    with path.open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    helm = str(data["helm"])
    releases = {
        minor: Release(minor=minor, kubernetes=str(e["kubernetes"]), etcd=str(e["etcd"]), helm=helm)
        for minor, e in data["versions"].items()
    }
    default = str(data["default"])
    if default not in releases:
        raise VersionError(f"default {default!r} is not among the versions in {path}")
    return VersionsFile(default=default, releases=releases)


def select(spec: str | None = None) -> Release:
    """Shortcut: `load().select(spec)`."""
    return load().select(spec)
