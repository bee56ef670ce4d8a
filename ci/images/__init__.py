"""Container images of the local Kubernetes, built without Docker or a registry.

Command line: ``python -m ci.images build|import|list|check-pins`` (from the repository root).
API for the node and CI code::

    from ci.images import build_all, import_into_containerd
    archives = build_all()                      # cached under ~/.cache/dask-k8s/images
    import_into_containerd(archives, "/run/containerd/containerd.sock")
"""

from __future__ import annotations

from ci.images.config import DASK_VERSION, default_cache_dir
from ci.images.containerd import import_into_containerd
from ci.images.recipes import IMAGES, ImageArchive, build, build_all, list_archives

__all__ = [
    "DASK_VERSION",
    "IMAGES",
    "ImageArchive",
    "build",
    "build_all",
    "default_cache_dir",
    "import_into_containerd",
    "list_archives",
]
