"""Level-triggered reconciliation of DaskJob: its DaskCluster and runner pod.

(Being built under issue #7.)
"""

from __future__ import annotations

from dask_controller.k8s import KubeApi, Obj
from dask_controller.reconcile import Outcome
from dask_controller.settings import Settings


async def reconcile_job(kube: KubeApi, settings: Settings, job: Obj) -> Outcome:
    """Bring a DaskJob's DaskCluster and runner pod into line with its spec and state."""
    return Outcome()
