"""CustomResourceDefinitions generated from the models.

:func:`crd` returns the CRD of one kind as a dict; :func:`render` the YAML text committed under
``charts/dask-kubernetes-operator/files/crds/`` (``dask-crds generate`` writes it). The schemas are
structural: every node has a ``type``, no ``$ref``, int-or-string marked with
``x-kubernetes-int-or-string``, maps as ``additionalProperties``, no defaults (what a user sends
is what is stored), descriptions kept for ``kubectl explain``.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final

import yaml
from pydantic import BaseModel

from dask_crds import constants as c
from dask_crds import k8s, naming
from dask_crds import models as m

#: ``kind -> (short names, singular)``
SHORT_NAMES: Final[dict[c.Kind, list[str]]] = {
    "DaskCluster": ["dsk", "daskcluster"],
    "DaskWorkerGroup": ["dwg", "daskworkers"],
    "DaskJob": ["djb"],
    "DaskAutoscaler": ["dau"],
}
CATEGORIES: Final = ["dask"]

_SPEC_STATUS: Final[dict[c.Kind, tuple[type[BaseModel], type[BaseModel]]]] = {
    "DaskCluster": (m.DaskClusterSpec, m.DaskClusterStatus),
    "DaskWorkerGroup": (m.DaskWorkerGroupSpec, m.DaskWorkerGroupStatus),
    "DaskJob": (m.DaskJobSpec, m.DaskJobStatus),
    "DaskAutoscaler": (m.DaskAutoscalerSpec, m.DaskAutoscalerStatus),
}

_AGE: Final = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
PRINTER_COLUMNS: Final[dict[c.Kind, list[dict[str, Any]]]] = {
    "DaskCluster": [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Ready",
            "type": "integer",
            "jsonPath": ".status.readyReplicas",
            "description": "Ready workers of the default worker group",
        },
        {
            "name": "Desired",
            "type": "integer",
            "jsonPath": ".spec.worker.replicas",
            "description": "Desired workers of the default worker group",
        },
        _AGE,
    ],
    "DaskWorkerGroup": [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.worker.replicas"},
        _AGE,
    ],
    "DaskJob": [
        {"name": "Status", "type": "string", "jsonPath": ".status.jobStatus"},
        {"name": "Cluster", "type": "string", "jsonPath": ".status.clusterName"},
        {"name": "Runner", "type": "string", "jsonPath": ".status.jobRunnerPodName"},
        _AGE,
    ],
    "DaskAutoscaler": [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Group", "type": "string", "jsonPath": ".status.workerGroup"},
        {"name": "Min", "type": "integer", "jsonPath": ".spec.minimum"},
        {"name": "Max", "type": "integer", "jsonPath": ".spec.maximum"},
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
        {
            "name": "Demand",
            "type": "string",
            "jsonPath": ".status.demand",
            "description": "Whose work the recommendation counts: Cluster or WorkerGroup",
            "priority": 1,
        },
        _AGE,
    ],
}

#: CEL rules, only on small fields (the cost of a rule grows with the size of what it sees).
_CEL: Final[dict[c.Kind, list[dict[str, str]]]] = {
    "DaskAutoscaler": [
        {
            "rule": "self.minimum <= self.maximum",
            "message": "maximum must be greater than or equal to minimum",
            "fieldPath": ".maximum",
            "reason": "FieldValueInvalid",
        }
    ],
}

#: Embedded Kubernetes types (and our narrowed PodSpec), whose deep descriptions are dropped.
_K8S_NAMES: Final = frozenset(k8s.__all__) | {"RunnerPodSpec"}
_DROP: Final = {"title", "default", "additionalProperties"}
_DNS_LABEL_PATTERN: Final = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


#: How many levels into an embedded Kubernetes type descriptions are kept. The full PodSpec with
#: every description is ~300 kB of JSON; a DaskJob embeds three. Deeper levels are documented
#: by ``kubectl explain pod.spec...`` already.
K8S_DESCRIPTION_DEPTH: Final = 2


def _structural(node: Any, defs: dict[str, Any], k8s_depth: int = 0) -> Any:
    """A pydantic JSON schema node turned into a structural OpenAPI v3 schema node.

    ``k8s_depth`` counts how deep inside an embedded Kubernetes type the node is (0: outside).
    """
    if isinstance(node, list):
        return [_structural(v, defs, k8s_depth) for v in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        target = defs[name]
        merged = dict(target)
        merged.update(node)  # a field's own description wins over its type's docstring
        node = merged
        if k8s_depth or name in _K8S_NAMES:
            k8s_depth += 1
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {variants}")
        inner = _structural(variants[0], defs, k8s_depth)
        inner.update({k: v for k, v in node.items() if k not in _DROP})
        if k8s_depth > K8S_DESCRIPTION_DEPTH:
            inner.pop("description", None)
        return inner
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "description" and k8s_depth > K8S_DESCRIPTION_DEPTH:
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs, k8s_depth) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs, k8s_depth)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "x-kubernetes-int-or-string" in out:
        out.pop("type", None)
    elif "type" not in out:
        if "properties" in out or "additionalProperties" in out:
            out["type"] = "object"
        elif "enum" in out and all(isinstance(v, str) for v in out["enum"]):
            out["type"] = "string"
        elif not out.get("x-kubernetes-preserve-unknown-fields"):
            raise ValueError(f"schema node without a type: {node}")
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (a spec or status class)."""
    js = model.model_json_schema(by_alias=True, mode="validation")
    defs = js.pop("$defs", {})
    result: dict[str, Any] = _structural(js, defs)
    return result


def resource_schema(kind: c.Kind) -> dict[str, Any]:
    """The complete schema of one kind, as placed in its CRD version."""
    spec_model, status_model = _SPEC_STATUS[kind]
    spec = openapi_schema(spec_model)
    for rule in _CEL.get(kind, []):
        spec.setdefault("x-kubernetes-validations", []).append(dict(rule))
    status = openapi_schema(status_model)
    doc = (m.MODELS[kind].__doc__ or kind).strip()
    return {
        "description": doc,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion of this object: kubernetes.dask.org/v1.",
                "type": "string",
            },
            "kind": {"description": f"Kind of this object: {kind}.", "type": "string"},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "description": f"Name of the {kind}: a DNS label of at most "
                        f"{m.NAME_LIMITS[kind]} characters, so that the names derived from it "
                        f"stay within {naming.DNS_LABEL_MAX}.",
                        "type": "string",
                        "maxLength": m.NAME_LIMITS[kind],
                        "pattern": _DNS_LABEL_PATTERN,
                    }
                },
            },
            "spec": spec,
            "status": status,
        },
    }


def crd(kind: c.Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of ``kind`` as a dict (a fresh copy each call)."""
    result: dict[str, Any] = json.loads(_crd_json(kind))
    return result


@functools.cache
def _crd_json(kind: c.Kind) -> str:
    # Cached as text: a cached dict of this size would slow down every garbage collection.
    return json.dumps(_build(kind), separators=(",", ":"))


def _build(kind: c.Kind) -> dict[str, Any]:
    plural = c.PLURALS[kind]
    subresources: dict[str, Any] = {"status": {}}
    if kind in ("DaskCluster", "DaskWorkerGroup"):
        subresources["scale"] = {
            "specReplicasPath": ".spec.worker.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{c.GROUP}",
            "labels": {c.LABEL_APP_NAME: "dask-kubernetes-operator"},
        },
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": SHORT_NAMES[kind],
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": resource_schema(kind)},
                    "subresources": subresources,
                    "additionalPrinterColumns": [dict(col) for col in PRINTER_COLUMNS[kind]],
                }
            ],
        },
    }


HEADER: Final = (
    "# Generated from the dask_crds models by `dask-crds generate`; do not edit.\n"
    "# Apply with server-side apply (the schema is too large for the last-applied annotation):\n"
    "#   kubectl apply --server-side -f <this file>\n"
)


@functools.cache
def render(kind: c.Kind) -> str:
    """The YAML text of the CRD of ``kind``, as committed in the chart."""
    body = yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + "---\n" + body


def filename(kind: c.Kind) -> str:
    """File name of the CRD of ``kind`` in the chart's ``crds/`` directory."""
    return f"{kind.lower()}.yaml"


def render_all() -> dict[str, str]:
    """``{file name: YAML text}`` for every kind."""
    return {filename(kind): render(kind) for kind in c.KINDS}


def json_schema(kind: c.Kind) -> dict[str, Any]:
    """The JSON schema (pydantic's, with ``$defs``) of a whole resource of ``kind``."""
    return m.MODELS[kind].model_json_schema(by_alias=True, mode="validation")


def size(kind: c.Kind) -> int:
    """Size in bytes of the CRD as JSON (what the API server stores)."""
    return len(_crd_json(kind))
