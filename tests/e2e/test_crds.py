"""The generated CRDs on a real API server: they install, accept every reference manifest
unchanged (nothing pruned), reject what the offline validator rejects at the same field path,
explain themselves and print useful columns.

Fixtures `k8s_kubeconfig` and `kubectl` come from tests/e2e/conftest.py (ci.localk8s).
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dask_crds import constants as c
from dask_crds import crd, validation

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "dask_crds_test_fixtures", ROOT / "packages" / "dask-crds" / "tests" / "crd_fixtures.py"
)
assert _spec is not None
assert _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fixtures  # dataclasses look their module up
_spec.loader.exec_module(fixtures)

VALID: list[Path] = fixtures.valid_files()
INVALID = fixtures.invalid_cases()
SERVER_INVALID = [case for case in INVALID if case.server_rejects]

Kubectl = Callable[..., Any]  # kubectl(*args, input=None, check=True) -> CompletedProcess[str]


@pytest.fixture(scope="module")
def crds_installed(kubectl: Kubectl) -> list[str]:
    """Install (server-side apply) every generated CRD and wait until it is established."""
    names = []
    for kind in c.KINDS:
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=dask-crds-e2e",
            "-f",
            "-",
            input=crd.render(kind),
        )
        names.append(f"{c.PLURALS[kind]}.{c.GROUP}")
    for name in names:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    return names


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl, crds_installed: list[str]) -> Iterator[str]:
    name = f"dask-crds-e2e-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def _send(doc: dict[str, Any]) -> str:
    doc = json.loads(json.dumps(doc))
    doc.get("metadata", {}).pop("namespace", None)  # the test namespace is used instead
    return json.dumps(doc)


def test_crds_are_structural_and_established(kubectl: Kubectl, crds_installed: list[str]) -> None:
    for name in crds_installed:
        obj = json.loads(kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {cond["type"]: cond["status"] for cond in obj["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NamesAccepted") == "True", conditions
        assert "NonStructuralSchema" not in conditions, conditions


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_reference_manifest_is_accepted_unchanged(
    kubectl: Kubectl, namespace: str, path: Path
) -> None:
    doc = fixtures.load(path)
    problems = validation.validate(doc)
    assert all(p.severity == "warning" for p in problems)
    # Warned fields (mis-indented probe settings of a 2022 reference) are what Kubernetes drops:
    # strict field validation would refuse them, so that manifest is sent with warnings on.
    mode = "--validate=warn" if problems else "--validate=strict"
    result = kubectl(
        "create", "--dry-run=server", mode, "-n", namespace, "-o", "json", "-f", "-",
        input=_send(doc),
    )  # fmt: skip
    stored = json.loads(result.stdout)
    expected = validation.without(doc, [p.path for p in problems])
    assert stored["spec"] == expected["spec"], "the API server pruned or defaulted spec fields"
    for key in ("labels", "annotations"):
        assert stored["metadata"].get(key) == expected["metadata"].get(key)
    for problem in problems:
        assert f'unknown field "{problem.path}"' in result.stderr, result.stderr


def _server_paths(path: str) -> list[str]:
    """The API server writes a map key as `[key]` and sometimes prefixes a dot."""
    loc = validation.parse_path(path)
    keyed = path.rsplit(".", 1)[0] + f"[{loc[-1]}]" if isinstance(loc[-1], str) else path
    return [path, keyed]


@pytest.mark.parametrize("case", SERVER_INVALID, ids=[case.id for case in SERVER_INVALID])
def test_invalid_manifest_is_rejected_at_the_same_path(
    kubectl: Kubectl, namespace: str, case: Any
) -> None:
    result = kubectl(
        "create", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=_send(case.document()), check=False,
    )  # fmt: skip
    assert result.returncode != 0, f"accepted by the API server: {result.stdout}"
    assert any(p in result.stderr for p in _server_paths(case.expect_path)), result.stderr


def test_explain_shows_descriptions(kubectl: Kubectl, crds_installed: list[str]) -> None:
    deadline = time.monotonic() + 60
    while True:  # the OpenAPI document is published a moment after the CRD is established
        result = kubectl("explain", "daskcluster.spec.worker", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert result.returncode == 0, result.stderr
    assert "replicas" in result.stdout
    assert "Number of worker pods" in result.stdout
    assert "kubectl scale" in result.stdout
    result = kubectl("explain", "dsk.spec.worker.spec.containers.image")
    assert "Container image name" in result.stdout


def _get_table(kubectl: Kubectl, namespace: str, *what: str) -> list[list[str]]:
    """`kubectl get` output as [header, *rows]; empty cells are "" (columns are fixed-width)."""
    lines = kubectl("get", *what, "-n", namespace).stdout.rstrip().splitlines()
    header = lines[0].split()
    starts = [lines[0].index(f" {name}") + 1 if i else 0 for i, name in enumerate(header)]
    ends = [*starts[1:], None]
    rows = [[line[a:b].strip() for a, b in zip(starts, ends, strict=True)] for line in lines[1:]]
    return [header, *rows]


def test_printer_columns_scale_and_status(kubectl: Kubectl, namespace: str) -> None:
    cluster = fixtures.load(
        ROOT / "packages/dask-crds/tests/fixtures/valid/001-simple-cluster.yaml"
    )
    group = fixtures.load(ROOT / "packages/dask-crds/tests/fixtures/valid/001-simple-highmem.yaml")
    scaler = fixtures.load(ROOT / "packages/dask-crds/tests/fixtures/valid/001-autoscaler.yaml")
    job = fixtures.load(ROOT / "packages/dask-crds/tests/fixtures/valid/001-simple-job.yaml")
    for doc in (cluster, group, scaler, job):
        kubectl("create", "-n", namespace, "-f", "-", input=_send(doc))

    status = {
        "phase": "Running",
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": 1,
        "selector": "dask.org/cluster-name=simple,dask.org/workergroup-name=simple-default",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "WorkersStarting",
                "message": "1 of 2 workers ready",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    kubectl(
        "patch", "daskcluster", "simple", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    header, row = _get_table(kubectl, namespace, "dsk")
    assert header == ["NAME", "PHASE", "READY", "DESIRED", "AGE"]
    assert row[:4] == ["simple", "Running", "1", "2"]

    # The status schema refuses what the model refuses.
    bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    result = kubectl(
        "patch", "daskcluster", "simple", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(bad), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "status.conditions[0].status" in result.stderr

    # Scale subresource on both kinds (kubectl scale, HPA).
    kubectl("scale", "daskcluster", "simple", "-n", namespace, "--replicas=5")
    kubectl("scale", "daskworkergroup", "simple-highmem", "-n", namespace, "--replicas=3")
    got = json.loads(kubectl("get", "dsk", "simple", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["worker"]["replicas"] == 5
    got = json.loads(kubectl("get", "dwg", "simple-highmem", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["worker"]["replicas"] == 3
    scale = json.loads(
        kubectl(
            "get", "--raw",
            f"/apis/{c.API_VERSION}/namespaces/{namespace}/daskclusters/simple/scale",
        ).stdout
    )  # fmt: skip
    assert scale["spec"]["replicas"] == 5
    assert scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == status["selector"]

    header, row = _get_table(kubectl, namespace, "dwg")
    assert header == ["NAME", "CLUSTER", "READY", "DESIRED", "AGE"]
    assert row[:4] == ["simple-highmem", "simple", "", "3"]
    header, _ = _get_table(kubectl, namespace, "djb")
    assert header == ["NAME", "STATUS", "CLUSTER", "RUNNER", "AGE"]
    header, row = _get_table(kubectl, namespace, "dau")
    assert header == ["NAME", "CLUSTER", "GROUP", "MIN", "MAX", "DESIRED", "AGE"]
    assert row[:5] == ["simple", "simple", "", "1", "10"]  # no status: no operator here

    # The category lists every kind.
    out = kubectl("get", "dask", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(out) == sorted(
        [
            "daskcluster.kubernetes.dask.org/simple",
            "daskworkergroup.kubernetes.dask.org/simple-highmem",
            "daskautoscaler.kubernetes.dask.org/simple",
            "daskjob.kubernetes.dask.org/simple-job",
        ]
    )


def test_stored_objects_parse_with_the_models(kubectl: Kubectl, namespace: str) -> None:
    """What the API server returns (metadata, status) is accepted by the models."""
    doc = fixtures.load(ROOT / "packages/dask-crds/tests/fixtures/valid/001-simple-job.yaml")
    doc["metadata"]["name"] = "parse-job"
    kubectl("create", "-n", namespace, "-f", "-", input=_send(doc))
    got = yaml.safe_load(kubectl("get", "djb", "parse-job", "-n", namespace, "-o", "yaml").stdout)
    resource = validation.parse(got)
    assert resource.metadata.uid
    assert resource.to_dict()["spec"] == doc["spec"]
