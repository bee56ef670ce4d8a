"""Everything that decides what goes into the images: versions, names, paths.

Change a pin here and the images that use it are rebuilt (each build step hashes what it uses).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The one place where the Dask version is pinned. `python -m ci.images check-pins` compares it
#: (and the other pins) with what PyPI offers by default.
DASK_VERSION = "2026.8.0"

#: Top-level Python packages of the images, pinned. Transitive dependencies are resolved by pip
#: and recorded (``pip freeze``) next to each built layer and in the image labels.
PINS: dict[str, str] = {
    "dask": DASK_VERSION,
    "distributed": DASK_VERSION,
    "numpy": "2.4.6",
    "pandas": "3.1.1",
    "bokeh": "3.9.2",
    "pyarrow": "26.0.1",
    "lz4": "4.4.5",
    "kopf": "1.45.2",
    "kubernetes_asyncio": "36.1.0",
    "pydantic": "2.14.4",
    "PyYAML": "6.0.4",
}

#: What the Dask runtime image installs (names of PINS).
DASK_IMAGE_PACKAGES = ["dask", "distributed", "numpy", "pandas", "bokeh", "pyarrow", "lz4"]

#: The build backend of packages/dask-crds and packages/dask-controller ([build-system] requires;
#: a test checks they agree), installed once into a cached venv to build their wheels.
WHEEL_BUILD_REQUIREMENTS = ["hatchling>=1.24", "hatch-vcs>=0.4"]

#: Debian release and the packages of the base root filesystem.
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_PACKAGES = ["python3", "python3-venv", "tini", "ca-certificates"]

#: The unprivileged user baked into the base (the operator runs as it; the Dask image may).
USER_NAME = "dask"
USER_UID = 1000

#: Image names. Every tag listed is written into the archive and imported.
DASK_REPOSITORY = "ghcr.io/dask/dask"
OPERATOR_REPOSITORY = "ghcr.io/dask/dask-kubernetes-operator"
PAUSE_VERSION = "3.10"
#: registry.k8s.io/pause tags that kubelets and containerd ask for: 3.10 (Kubernetes 1.31+),
#: 3.10.1 (1.34+), 3.9 (1.27-1.30), 3.6 (containerd 1.6's built-in default `sandbox_image`).
PAUSE_TAGS = [
    "registry.k8s.io/pause:3.10",
    "registry.k8s.io/pause:3.10.1",
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/pause:3.6",
    "localhost/pause:dev",
]

#: Go toolchain used for the pause binary.
GO = os.environ.get("DASK_K8S_GO", "/usr/local/go/bin/go")

#: Bump when the build logic changes in a way that must invalidate every cached layer.
RECIPE_REVISION = 1

#: Repository root (``ci/images/config.py`` -> three levels up).
REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def default_cache_dir() -> Path:
    """Where root filesystems, layers and archives live: never inside the repository."""
    env = os.environ.get("DASK_K8S_IMAGES_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "dask-k8s" / "images"
