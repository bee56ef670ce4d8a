"""KubeCluster: Dask clusters on Kubernetes from Python, through the Dask operator."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from dask_kubecluster import config as _config  # noqa: F401  (registers the dask config section)
from dask_kubecluster.cluster import KubeCluster
from dask_kubecluster.errors import (
    ClusterExistsError,
    ClusterNotFoundError,
    ClusterSuspendedError,
    ContainerConfigError,
    CrashLoopError,
    CRDNotInstalledError,
    ImagePullError,
    KubeClusterError,
    OperatorNotRunningError,
    PermissionDeniedError,
    ResourceTimeoutError,
    SchedulerStartError,
    UnschedulableError,
)
from dask_kubecluster.modes import CreateMode
from dask_kubecluster.spec import (
    make_autoscaler_spec,
    make_cluster_spec,
    make_scheduler_spec,
    make_worker_group_spec,
    make_worker_spec,
)

try:
    __version__ = version("dask-kubecluster")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "CRDNotInstalledError",
    "ClusterExistsError",
    "ClusterNotFoundError",
    "ClusterSuspendedError",
    "ContainerConfigError",
    "CrashLoopError",
    "CreateMode",
    "ImagePullError",
    "KubeCluster",
    "KubeClusterError",
    "OperatorNotRunningError",
    "PermissionDeniedError",
    "ResourceTimeoutError",
    "SchedulerStartError",
    "UnschedulableError",
    "__version__",
    "make_autoscaler_spec",
    "make_cluster_spec",
    "make_scheduler_spec",
    "make_worker_group_spec",
    "make_worker_spec",
]
