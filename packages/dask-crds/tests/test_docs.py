from __future__ import annotations

from pathlib import Path

import pytest

from dask_crds import docs

DOC = Path(__file__).resolve().parents[3] / "docs" / "resources.md"


def test_reference_mentions_every_field_group() -> None:
    text = docs.render()
    for heading in ("## DaskCluster", "### WorkerSpec", "### DaskAutoscalerSpec", "### Condition"):
        assert heading in text
    assert "`idleTimeout`" in text
    assert "top level ≤ subresource metadata ≤ reserved labels" in text


@pytest.mark.skipif(not DOC.parent.is_dir(), reason="not in the monorepo (sdist)")
def test_committed_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == docs.render(), (
        "docs/resources.md is stale: run `dask-crds docs --output docs/resources.md`"
    )
