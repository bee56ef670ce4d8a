from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dask_crds import constants as c
from dask_crds import crd

CHART_CRDS = (
    Path(__file__).resolve().parents[3] / "charts" / "dask-kubernetes-operator" / "files" / "crds"
)


def _nodes(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += _nodes(sub, f"{path}.{name}")
    if "items" in schema:
        found += _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _nodes(schema["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("kind", c.KINDS)
def test_schema_is_structural(kind: c.Kind) -> None:
    schema = crd.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = json.dumps(schema)
    assert "$ref" not in text
    assert "$defs" not in text
    assert "x-kubernetes-preserve-unknown-fields" not in text
    assert '"default"' not in text  # what a user sends is what is stored
    assert '"title"' not in text
    for path, node in _nodes(schema):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
            continue
        assert "type" in node, path
        assert not {"anyOf", "oneOf", "allOf"} & set(node), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("additionalProperties") is not False, path


def _at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_key_fields_have_the_expected_schema() -> None:
    schema = crd.resource_schema("DaskCluster")
    replicas = _at(schema, "spec.worker.replicas")
    assert replicas == {"description": replicas["description"], "minimum": 0, "type": "integer"}
    port = _at(schema, "spec.scheduler.service.ports.[].targetPort")
    assert port["x-kubernetes-int-or-string"] is True
    limits = _at(schema, "spec.worker.spec.containers.[].resources.limits")
    assert limits["type"] == "object"
    assert limits["additionalProperties"]["x-kubernetes-int-or-string"] is True
    assert "pattern" in limits["additionalProperties"]
    assert _at(schema, "spec.worker.spec.containers")["minItems"] == 1
    assert "containers" in _at(schema, "spec.worker.spec")["required"]
    assert "name" in _at(schema, "spec.worker.spec.containers.[]")["required"]
    assert _at(schema, "metadata.name")["maxLength"] == 37
    assert set(_at(schema, "status.conditions.[]")["required"]) == {"type", "status"}


def test_descriptions_are_kept_for_kubectl_explain() -> None:
    schema = crd.resource_schema("DaskCluster")
    for path in (
        "spec.worker",
        "spec.worker.replicas",
        "spec.worker.spec",
        "spec.worker.spec.containers",
        "spec.worker.spec.containers.[].image",
        "spec.scheduler.service",
        "status.conditions",
    ):
        assert _at(schema, path).get("description"), path


def test_autoscaler_cel_rule_is_cheap_and_on_small_fields() -> None:
    spec = crd.resource_schema("DaskAutoscaler")["properties"]["spec"]
    (rule,) = spec["x-kubernetes-validations"]
    assert rule["rule"] == "self.minimum <= self.maximum"
    assert rule["fieldPath"] == ".maximum"
    text = json.dumps(crd.resource_schema("DaskCluster"))
    assert "x-kubernetes-validations" not in text  # nothing on the huge PodSpec


@pytest.mark.parametrize("kind", c.KINDS)
def test_crd_metadata(kind: c.Kind) -> None:
    doc = crd.crd(kind)
    spec = doc["spec"]
    assert doc["metadata"]["name"] == f"{c.PLURALS[kind]}.{c.GROUP}"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["categories"] == ["dask"]
    version = spec["versions"][0]
    assert version["name"] == "v1"
    assert version["served"]
    assert version["storage"]
    assert "status" in version["subresources"]
    assert version["additionalPrinterColumns"][-1]["name"] == "Age"


def test_short_names() -> None:
    names = {k: crd.crd(k)["spec"]["names"]["shortNames"] for k in c.KINDS}
    assert names == {
        "DaskCluster": ["dsk", "daskcluster"],
        "DaskWorkerGroup": ["dwg", "daskworkers"],
        "DaskJob": ["djb"],
        "DaskAutoscaler": ["dau"],
    }


@pytest.mark.parametrize("kind", ["DaskCluster", "DaskWorkerGroup"])
def test_scale_subresource(kind: c.Kind) -> None:
    scale = crd.crd(kind)["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.worker.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns() -> None:
    cols = {
        k: [col["name"] for col in crd.crd(k)["spec"]["versions"][0]["additionalPrinterColumns"]]
        for k in c.KINDS
    }
    assert cols == {
        "DaskCluster": ["Phase", "Ready", "Desired", "Age"],
        "DaskWorkerGroup": ["Cluster", "Ready", "Desired", "Age"],
        "DaskJob": ["Status", "Cluster", "Runner", "Age"],
        "DaskAutoscaler": ["Cluster", "Group", "Min", "Max", "Desired", "Demand", "Age"],
    }


@pytest.mark.parametrize("kind", c.KINDS)
def test_size_fits_the_api_server(kind: c.Kind) -> None:
    # etcd stores at most 1.5 MiB per object; leave room for managedFields of server-side apply.
    assert crd.size(kind) < 600_000


@pytest.mark.parametrize("kind", c.KINDS)
def test_render_is_yaml_of_the_crd(kind: c.Kind) -> None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert list(yaml.load_all(crd.render(kind), Loader=loader)) == [crd.crd(kind)]


@pytest.mark.skipif(not CHART_CRDS.is_dir(), reason="not in the monorepo (sdist)")
@pytest.mark.parametrize("kind", c.KINDS)
def test_committed_crds_are_up_to_date(kind: c.Kind) -> None:
    committed = CHART_CRDS / crd.filename(kind)
    assert committed.is_file(), f"missing {committed}"
    assert committed.read_text(encoding="utf-8") == crd.render(kind), (
        f"{committed} is stale: run `dask-crds generate --output {CHART_CRDS}`"
    )


def test_no_other_files_in_the_crds_directory() -> None:
    if not CHART_CRDS.is_dir():
        pytest.skip("not in the monorepo (sdist)")
    assert sorted(p.name for p in CHART_CRDS.iterdir()) == sorted(crd.render_all())
