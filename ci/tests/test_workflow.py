"""`.github/workflows/ci.yml` cannot run here: its structure is checked against the files it
must follow (ci/kubernetes-versions.toml, PYTHONS in noxfile.py), so it cannot drift silently."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import supported_versions
from ci.localk8s import versions

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def facts() -> supported_versions.Facts:
    return supported_versions.read_facts()


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def _combinations(matrix: dict[str, Any]) -> set[tuple[str, str]]:
    """(kubernetes, python) pairs a matrix with `include` entries expands to."""
    pairs = {(str(k), str(p)) for k in matrix.get("kubernetes", []) for p in matrix["python"]}
    for extra in matrix.get("include", []):
        pairs.add((str(extra["kubernetes"]), str(extra["python"])))
    return pairs


def test_triggers_and_jobs(workflow: dict[str, Any]) -> None:
    # YAML 1.1 reads the key `on` as True.
    raw: dict[Any, Any] = dict(workflow)
    triggers = raw["on"] if "on" in raw else raw[True]
    assert {"push", "pull_request"} <= set(triggers)
    assert set(workflow["jobs"]) == {"checks", "chart", "docs", "e2e"}
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert job["runs-on"].startswith("ubuntu-"), name
        assert job["steps"][0]["uses"].startswith("actions/checkout@"), name


def test_checks_run_lint_typecheck_and_unit_on_every_python(
    workflow: dict[str, Any], facts: supported_versions.Facts
) -> None:
    job = workflow["jobs"]["checks"]
    assert [str(p) for p in job["strategy"]["matrix"]["python"]] == facts.pythons
    runs = _runs(job)
    assert re.search(r"nox -s lint typecheck tooling --force-python \$\{\{ matrix.python }}", runs)
    assert "nox -s unit-${{ matrix.python }}" in runs
    setup = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/setup-python")]
    assert setup[0]["with"]["python-version"] == "${{ matrix.python }}"


def test_e2e_covers_every_minor_on_the_newest_python_and_every_python_on_the_newest_minor(
    workflow: dict[str, Any], facts: supported_versions.Facts
) -> None:
    job = workflow["jobs"]["e2e"]
    expected = {(row.minor, facts.newest_python) for row in facts.kubernetes}
    expected |= {(facts.newest_minor, python) for python in facts.pythons}
    assert _combinations(job["strategy"]["matrix"]) == expected
    assert job["strategy"]["fail-fast"] is False


def test_e2e_runs_the_nox_session_on_kind_at_the_matrix_versions(
    workflow: dict[str, Any],
) -> None:
    job = workflow["jobs"]["e2e"]
    assert job["env"]["KUBERNETES_VERSION"] == "${{ matrix.kubernetes }}"
    assert job["env"]["DASK_E2E_PROVIDER"] == "kind"
    runs = _runs(job)
    assert "nox -s e2e --force-python ${{ matrix.python }} -- --provider kind" in runs
    assert 'go install "sigs.k8s.io/kind@${KIND_VERSION}"' in runs
    # Every job of the run stays within the 90 minutes CI is given elsewhere too.
    assert job["timeout-minutes"] <= 90


def test_kind_version_matches_the_versions_file(
    workflow: dict[str, Any], facts: supported_versions.Facts
) -> None:
    assert workflow["env"]["KIND_VERSION"] == facts.kind


def test_chart_and_docs_jobs_run_their_sessions(workflow: dict[str, Any]) -> None:
    assert "nox -s chart" in _runs(workflow["jobs"]["chart"])
    assert "nox -s docs" in _runs(workflow["jobs"]["docs"])


def test_minors_are_the_versions_file(facts: supported_versions.Facts) -> None:
    assert [row.minor for row in facts.kubernetes] == versions.load().minors
