"""docs/supported-versions.md says what the versions file and the noxfile say."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import supported_versions
from ci.localk8s import versions


def test_the_committed_page_is_up_to_date() -> None:
    doc = supported_versions.DOC.read_text()
    rendered = supported_versions.render(supported_versions.read_facts())
    assert supported_versions.replace_block(doc, rendered) == doc, (
        "run `python -m ci.supported_versions`"
    )


def test_facts_follow_the_sources() -> None:
    facts = supported_versions.read_facts()
    data = versions.load()
    assert [row.minor for row in facts.kubernetes] == data.minors
    assert [row.kubernetes for row in facts.kubernetes] == [
        data.releases[m].kubernetes for m in data.minors
    ]
    assert [row.minor for row in facts.kubernetes if row.default] == [data.default]
    assert facts.newest_python == max(facts.pythons, key=lambda v: tuple(map(int, v.split("."))))
    assert set(facts.requires_python) == {"dask-crds", "dask-controller", "dask-kubecluster"}


def test_every_version_is_on_the_page() -> None:
    facts = supported_versions.read_facts()
    page = supported_versions.render(facts)
    for row in facts.kubernetes:
        assert f"| {row.kubernetes} |" in page
    for python in facts.pythons:
        assert python in page
    assert facts.dask in page


def test_check_fails_on_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "page.md"
    doc.write_text(f"# x\n{supported_versions.BEGIN}\nold\n{supported_versions.END}\n")
    assert supported_versions.main(["--check", "--doc", str(doc)]) == 1
    assert "stale" in capsys.readouterr().err
    assert supported_versions.main(["--doc", str(doc)]) == 0
    assert supported_versions.main(["--check", "--doc", str(doc)]) == 0


def test_missing_markers_are_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "page.md"
    doc.write_text("# no markers\n")
    assert supported_versions.main(["--check", "--doc", str(doc)]) == 1
