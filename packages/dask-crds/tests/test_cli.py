from __future__ import annotations

import json
from pathlib import Path

import pytest

from dask_crds import cli, crd, naming


def test_check_name_accepts_a_good_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-name", "simple"]) == 0
    assert capsys.readouterr().err == ""


def test_check_name_explains_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-name", "x" * (naming.max_cluster_name_length() + 5)]) == 1
    assert "choose a shorter name" in capsys.readouterr().err


def test_generate_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["generate", "--output", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(crd.render_all())
    assert cli.main(["generate", "--output", str(tmp_path), "--check"]) == 0
    (tmp_path / "daskjob.yaml").write_text("stale", encoding="utf-8")
    assert cli.main(["generate", "--output", str(tmp_path), "--check"]) == 1
    assert "daskjob.yaml: stale" in capsys.readouterr().err


def test_generate_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["generate"]) == 0
    out = capsys.readouterr().out
    assert out.count("kind: CustomResourceDefinition") == 4


def test_validate_reports_file_document_path_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n"
        "apiVersion: kubernetes.dask.org/v1\nkind: DaskAutoscaler\nmetadata: {name: a}\n"
        "spec: {cluster: c, minimum: 0, maximum: 3}\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kubernetes.dask.org/v1\nkind: DaskWorkerGroup\nmetadata: {name: g}\n"
        "spec:\n  cluster: c\n  worker:\n    replicas: two\n    spec:\n      containers:\n"
        "      - name: w\n        resources: {limit: {cpu: 1}}\n",
        encoding="utf-8",
    )
    assert cli.main(["validate", str(good)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{good}:0: skipped: not a Dask resource (v1/Namespace)" in captured.err
    assert f"{good}:1: ok: DaskAutoscaler a" in captured.err
    assert cli.main(["validate", str(good), str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{bad}:0: spec.worker.replicas: expected an integer, got 'two' (str)",
        f"{bad}:0: spec.worker.spec.containers[0].resources.limit: unknown field of "
        "ResourceRequirements (Kubernetes would silently drop it); did you mean 'limits'?",
    ]


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_validate_unknown_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("apiVersion: kubernetes.dask.org/v1\nkind: DaskThing\n", encoding="utf-8")
    assert cli.main(["validate", "-q", str(f)]) == 1
    assert "kind: unknown kind 'DaskThing'" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["DaskCluster", "daskclusters", "dsk"])
def test_schema(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", name]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "DaskCluster"
    assert cli.main(["schema", "--openapi", name]) == 0
    assert "x-kubernetes-int-or-string" in capsys.readouterr().out


def test_schema_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "pod"]) == 2
    assert "unknown kind" in capsys.readouterr().err


def test_docs_check(tmp_path: Path) -> None:
    out = tmp_path / "resources.md"
    assert cli.main(["docs", "--output", str(out)]) == 0
    assert cli.main(["docs", "--output", str(out), "--check"]) == 0
    out.write_text("old", encoding="utf-8")
    assert cli.main(["docs", "--output", str(out), "--check"]) == 1
