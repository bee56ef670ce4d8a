"""Level-triggered reconciliation of DaskAutoscaler.

(Being built under issue #7.)
"""

from __future__ import annotations

from dask_controller.k8s import KubeApi, Obj
from dask_controller.reconcile import Outcome
from dask_controller.settings import Settings


async def reconcile_autoscaler(kube: KubeApi, settings: Settings, autoscaler: Obj) -> Outcome:
    """Size the target worker group from the scheduler's adaptive target."""
    return Outcome()
