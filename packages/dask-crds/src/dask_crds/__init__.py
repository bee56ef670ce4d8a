"""Models, CRD manifests and offline validation of the Dask operator's custom resources.

This package does no I/O and imports no Kubernetes client: the controller and ``KubeCluster``
share it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from dask_crds.constants import API_VERSION, GROUP, KINDS, PLURALS, VERSION

try:
    __version__ = version("dask-crds")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["API_VERSION", "GROUP", "KINDS", "PLURALS", "VERSION", "__version__"]
