#!/usr/bin/env python
"""Generate ``dask_crds/k8s/__init__.py``: pydantic v2 models of the Kubernetes types embedded in
the Dask custom resources (the closure of ``PodSpec``, ``ServiceSpec`` and ``ObjectMeta``).

Source: the OpenAPI v3 document the Kubernetes project publishes in its repository
(``api/openapi-spec/v3/api__v1_openapi.json``), fetched from the Go module proxy::

    go mod download -json k8s.io/kubernetes@v1.37.2      # prints "Dir"
    python packages/dask-crds/scripts/gen_k8s_models.py --version v1.37.2

or from a file you already have (``--openapi PATH``). The output is deterministic; commit it.

This is a focused generator rather than datamodel-code-generator because the models need things a
general tool does not give us in one pass: only the reachable closure, ``extra="forbid"`` on every
class, Kubernetes int-or-string and quantity semantics, strict scalars (``"2"`` is not an
integer, as for the API server), descriptions kept for ``kubectl explain``, and snake_case
attributes with camelCase aliases.
"""

from __future__ import annotations

import argparse
import json
import keyword
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOTS = [
    "io.k8s.api.core.v1.PodSpec",
    "io.k8s.api.core.v1.ServiceSpec",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
]
#: Definitions mapped onto the hand-written scalar types of ``dask_crds.kubetypes``.
SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
}
#: Constraints the API server enforces in code rather than in the OpenAPI document.
EXTRA_FIELD_ARGS = {
    ("io.k8s.api.core.v1.PodSpec", "containers"): "min_length=1",
}
#: Lists whose items Kubernetes requires to be unique by a key (its own validation code does,
#: not only the OpenAPI markers): checked by the models, and marked ``x-kubernetes-list-type:
#: map`` in the CRD so that the API server checks them too. (``env`` is a list-map in the
#: OpenAPI document but duplicate names are allowed in a Pod, so it is not here.)
UNIQUE_BY = {
    ("io.k8s.api.core.v1.PodSpec", "containers"): "name",
    ("io.k8s.api.core.v1.PodSpec", "initContainers"): "name",
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers"): "name",
    ("io.k8s.api.core.v1.PodSpec", "volumes"): "name",
}
DEFAULT_VERSION = "v1.37.2"
OUT = Path(__file__).resolve().parents[1] / "src" / "dask_crds" / "k8s" / "__init__.py"
RESERVED = set(dir(BaseModel))


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    if keyword.iskeyword(s) or s in RESERVED or s.startswith("model_"):
        s += "_"
    return s


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def load_openapi(version: str, path: str | None) -> dict[str, Any]:
    if path is None:
        go = os.environ.get("GO", "go")
        out = subprocess.run(
            [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
            check=True,
            capture_output=True,
            text=True,
            cwd="/",
        ).stdout
        path = str(Path(json.loads(out)["Dir"]) / "api/openapi-spec/v3/api__v1_openapi.json")
    with open(path, encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


class Generator:
    def __init__(self, schemas: dict[str, Any]) -> None:
        self.schemas = schemas
        self.order: list[str] = []
        self.seen: set[str] = set()

    def refs_of(self, node: Any) -> list[str]:
        found: list[str] = []
        if isinstance(node, dict):
            if "$ref" in node:
                found.append(ref_name(node["$ref"]))
            for v in node.values():
                found += self.refs_of(v)
        elif isinstance(node, list):
            for v in node:
                found += self.refs_of(v)
        return found

    def visit(self, name: str, stack: tuple[str, ...] = ()) -> None:
        if name in SPECIAL or name in self.seen:
            return
        if name in stack:
            raise SystemExit(f"recursive type {name}: not supported")
        for dep in self.refs_of(self.schemas[name].get("properties", {})):
            self.visit(dep, (*stack, name))
        self.seen.add(name)
        self.order.append(name)

    def type_of(self, prop: dict[str, Any]) -> str:
        if "allOf" in prop and len(prop["allOf"]) == 1:
            return self.type_of(prop["allOf"][0])
        if "$ref" in prop:
            name = ref_name(prop["$ref"])
            return SPECIAL.get(name) or self.class_name(name)
        t = prop.get("type")
        if t == "string":
            return "StrictStr"
        if t == "integer":
            return "StrictInt"
        if t == "number":
            return "StrictFloat"
        if t == "boolean":
            return "StrictBool"
        if t == "array":
            return f"list[{self.type_of(prop['items'])}]"
        if t == "object":
            if "additionalProperties" in prop:
                return f"dict[str, {self.type_of(prop['additionalProperties'])}]"
            return "dict[str, Any]"
        raise SystemExit(f"unsupported schema: {prop}")

    def class_name(self, name: str) -> str:
        return name.rsplit(".", 1)[-1]

    def emit(self, version: str) -> str:
        names = [self.class_name(n) for n in self.order]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise SystemExit(f"class name collisions: {sorted(dupes)}")
        lines = [
            f'"""Kubernetes {version} types embedded in the Dask resources (generated).',
            "",
            "Generated by packages/dask-crds/scripts/gen_k8s_models.py from the Kubernetes",
            f"OpenAPI v3 document (k8s.io/kubernetes@{version},",
            "api/openapi-spec/v3/api__v1_openapi.json).",
            "Do not edit by hand; run the script instead.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "from typing import Annotated, Any, Final",
            "",
            "from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr",
            "",
            "from dask_crds.kubetypes import (",
            "    FieldsV1,",
            "    IntOrString,",
            "    K8sModel,",
            "    MicroTime,",
            "    Quantity,",
            "    Time,",
            "    unique_by,",
            ")",
            "",
            f"KUBERNETES_VERSION: Final = {version!r}",
            "",
            "__all__ = [",
            '    "KUBERNETES_VERSION",',
            *[f"    {n!r}," for n in sorted(names)],
            "]",
        ]
        for full in self.order:
            schema = self.schemas[full]
            cls = self.class_name(full)
            lines += ["", "", f"class {cls}(K8sModel):"]
            doc = schema.get("description", "")
            lines.append(f"    __doc__ = {doc!r}" if doc else f'    """{cls}."""')
            required = set(schema.get("required", []))
            props = schema.get("properties", {})
            if not props:
                lines.append("    pass")
            for prop_name in sorted(props):
                prop = props[prop_name]
                attr = snake(prop_name)
                typ = self.type_of(prop)
                desc = prop.get("description", "")
                args = []
                unique = UNIQUE_BY.get((full, prop_name))
                if unique:
                    typ = f"Annotated[{typ}, unique_by({unique!r})]"
                if prop_name not in required:
                    typ = f"{typ} | None"
                    args.append("None")
                if attr != prop_name:
                    args.append(f"alias={prop_name!r}")
                if (full, prop_name) in EXTRA_FIELD_ARGS:
                    args.append(EXTRA_FIELD_ARGS[full, prop_name])
                if desc:
                    args.append(f"description={desc!r}")
                if unique:
                    extra = {
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": [unique],
                    }
                    args.append(f"json_schema_extra={extra!r}")
                lines.append(f"    {attr}: {typ} = Field({', '.join(args)})")
        lines.append("")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=DEFAULT_VERSION, help="k8s.io/kubernetes version")
    parser.add_argument("--openapi", help="path of api__v1_openapi.json (skips the download)")
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args(argv)
    doc = load_openapi(args.version, args.openapi)
    gen = Generator(doc["components"]["schemas"])
    for root in ROOTS:
        gen.visit(root)
    Path(args.output).write_text(gen.emit(args.version), encoding="utf-8")
    print(f"wrote {len(gen.order)} models to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
