"""Names of the API group, kinds and the labels every operator-created object carries."""

from __future__ import annotations

from typing import Final, Literal

GROUP: Final = "kubernetes.dask.org"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

Kind = Literal["DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler"]
KINDS: Final[tuple[Kind, ...]] = ("DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler")

#: plural resource names, as used in API paths and ``kubectl get``.
PLURALS: Final[dict[Kind, str]] = {
    "DaskCluster": "daskclusters",
    "DaskWorkerGroup": "daskworkergroups",
    "DaskJob": "daskjobs",
    "DaskAutoscaler": "daskautoscalers",
}

# Labels the operator sets on every object it creates. They are reserved: user labels with
# these keys are overridden (top-level <= subresource metadata <= base labels).
LABEL_CLUSTER: Final = "dask.org/cluster-name"
LABEL_COMPONENT: Final = "dask.org/component"
LABEL_WORKER_GROUP: Final = "dask.org/workergroup-name"
LABEL_JOB: Final = "dask.org/job-name"

Component = Literal["scheduler", "worker", "job-runner"]
COMPONENTS: Final[tuple[Component, ...]] = ("scheduler", "worker", "job-runner")

LABEL_APP_NAME: Final = "app.kubernetes.io/name"
LABEL_APP_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_APP_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_APP_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_APP_MANAGED_BY: Final = "app.kubernetes.io/managed-by"

APP_NAME: Final = "dask"
MANAGED_BY: Final = "dask-kubernetes-operator"

#: Annotation prefixes written by tooling; they never propagate from a parent to its children.
NON_PROPAGATING_ANNOTATION_PREFIXES: Final[tuple[str, ...]] = (
    "kopf.zalando.org/",
    "kubectl.kubernetes.io/",
)

#: Environment variables the operator injects into the pods it creates.
ENV_WORKER_NAME: Final = "DASK_WORKER_NAME"
ENV_SCHEDULER_ADDRESS: Final = "DASK_SCHEDULER_ADDRESS"

DEFAULT_SCHEDULER_PORT: Final = 8786
DEFAULT_DASHBOARD_PORT: Final = 8787
DEFAULT_CLUSTER_DOMAIN: Final = "cluster.local"
