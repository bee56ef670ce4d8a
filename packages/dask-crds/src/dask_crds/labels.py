"""Labels and annotations: the reserved base set and the propagation rules.

The rule users rely on: ``top-level <= subresource metadata <= base labels``. Labels and
annotations of a parent resource reach its children, subresource ``metadata`` (for example
``DaskCluster.spec.worker.metadata``) overrides them, and the operator's own base labels override
both. Annotations written by tooling (``kopf.zalando.org/*``, ``kubectl.kubernetes.io/*``) never
propagate.
"""

from __future__ import annotations

from collections.abc import Mapping

from dask_crds import constants as c


def base_labels(
    cluster: str,
    component: c.Component | None = None,
    worker_group: str | None = None,
    job: str | None = None,
) -> dict[str, str]:
    """The reserved labels the operator puts on an object belonging to ``cluster``."""
    labels = {
        c.LABEL_CLUSTER: cluster,
        c.LABEL_APP_NAME: c.APP_NAME,
        c.LABEL_APP_INSTANCE: cluster,
        c.LABEL_APP_PART_OF: cluster,
        c.LABEL_APP_MANAGED_BY: c.MANAGED_BY,
    }
    if component is not None:
        labels[c.LABEL_COMPONENT] = component
        labels[c.LABEL_APP_COMPONENT] = component
    if worker_group is not None:
        labels[c.LABEL_WORKER_GROUP] = worker_group
    if job is not None:
        labels[c.LABEL_JOB] = job
    return labels


def is_propagated_annotation(key: str) -> bool:
    """Whether an annotation ``key`` may be copied from a parent to its children."""
    return not key.startswith(c.NON_PROPAGATING_ANNOTATION_PREFIXES)


def merge_labels(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merge label layers, later layers winning (pass top-level, subresource, base)."""
    merged: dict[str, str] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return merged


def merge_annotations(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merge annotation layers like :func:`merge_labels`, dropping tooling annotations."""
    return {k: v for k, v in merge_labels(*layers).items() if is_propagated_annotation(k)}


def selector(labels: Mapping[str, str]) -> str:
    """A label selector string (``a=b,c=d``) matching ``labels``, in a stable order."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
