"""KubeCluster: Dask clusters on Kubernetes from Python, through the Dask operator."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from dask_kubecluster.modes import CreateMode

try:
    __version__ = version("dask-kubecluster")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["CreateMode", "__version__"]
