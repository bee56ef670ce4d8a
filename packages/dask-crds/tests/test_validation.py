from __future__ import annotations

import pytest
from crd_fixtures import InvalidCase, invalid_cases

from dask_crds import validation

CASES = invalid_cases()


def test_there_are_enough_invalid_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_manifest_is_rejected_at_its_path(case: InvalidCase) -> None:
    resource, problems = validation.check(case.document())
    assert resource is None
    errors = [p for p in problems if p.severity == "error"]
    assert [p.path for p in errors] == [case.expect_path], [str(p) for p in problems]
    assert case.expect_message in errors[0].message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parse_raises_with_the_problems(case: InvalidCase) -> None:
    with pytest.raises(validation.InvalidResource) as info:
        validation.parse(case.document())
    assert case.expect_path in str(info.value)


def test_format_path() -> None:
    assert validation.format_path(["spec", "containers", 0, "name"]) == "spec.containers[0].name"
    assert validation.format_path([]) == ""


def test_several_problems_are_all_reported() -> None:
    doc = {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": "g"},
        "spec": {"cluster": "c", "worker": {"replicas": "two", "replica": 2, "spec": {}}},
    }
    paths = {p.path for p in validation.validate(doc)}
    assert paths == {"spec.worker.replicas", "spec.worker.replica", "spec.worker.spec.containers"}


def test_not_a_mapping() -> None:
    problems = validation.validate(["a", "list"])
    assert problems[0].path == ""
    assert "mapping" in problems[0].message


def test_stream_skips_other_kinds_and_reports_each_document() -> None:
    text = """
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: kubernetes.dask.org/v1
kind: DaskAutoscaler
metadata: {name: a}
spec: {cluster: c, minimum: 1, maximum: 2}
---
apiVersion: kubernetes.dask.org/v1
kind: DaskAutoscaler
metadata: {name: b}
spec: {cluster: c, minimum: 3, maximum: 2}
---
apiVersion: kubernetes.dask.org/v1beta1
kind: DaskCluster
metadata: {name: c}
"""
    results = list(validation.validate_stream(text))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert results[0].skipped is not None
    assert "ConfigMap" in results[0].skipped
    assert results[1].ok
    assert results[1].resource is not None
    assert not results[2].ok
    assert results[2].problems[0].path == "spec.maximum"
    assert not results[3].ok
    assert results[3].problems[0].path == "apiVersion"


def test_stream_with_broken_yaml() -> None:
    (result,) = validation.validate_stream("a: [1, 2\nb: c")
    assert not result.ok
    assert "not valid YAML" in result.problems[0].message


def test_problem_str() -> None:
    assert str(validation.Problem("spec.x", "bad")) == "spec.x: bad"
    assert str(validation.Problem("spec.x", "odd", "warning")) == "spec.x: warning: odd"


def _group_with(container: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": "g"},
        "spec": {"cluster": "c", "worker": {"spec": {"containers": [container]}}},
    }


@pytest.mark.parametrize(
    ("container", "path", "severity"),
    [
        # A field of the enclosing object, one level too deep: Kubernetes drops it; a warning.
        (
            {"name": "w", "readinessProbe": {"tcpSocket": {"port": 1, "periodSeconds": 3}}},
            "spec.worker.spec.containers[0].readinessProbe.tcpSocket.periodSeconds",
            "warning",
        ),
        (
            {"name": "w", "ports": [{"containerPort": 1, "image": "x"}]},
            "spec.worker.spec.containers[0].ports[0].image",
            "warning",
        ),
        # Two levels too deep, or not a field anywhere near: an error.
        (
            {"name": "w", "readinessProbe": {"tcpSocket": {"port": 1, "image": "x"}}},
            "spec.worker.spec.containers[0].readinessProbe.tcpSocket.image",
            "error",
        ),
        (
            {"name": "w", "resources": {"limit": {"cpu": 1}}},
            "spec.worker.spec.containers[0].resources.limit",
            "error",
        ),
    ],
)
def test_misplaced_kubernetes_fields(
    container: dict[str, object], path: str, severity: str
) -> None:
    resource, problems = validation.check(_group_with(container))
    assert [(p.path, p.severity) for p in problems] == [(path, severity)]
    assert (resource is None) == (severity == "error")
