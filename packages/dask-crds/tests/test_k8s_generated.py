"""The committed Kubernetes models are what the generator makes of the pinned OpenAPI document."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dask_crds import k8s

PKG = Path(__file__).resolve().parents[1]
SCRIPT = PKG / "scripts" / "gen_k8s_models.py"
GENERATED = PKG / "src" / "dask_crds" / "k8s" / "__init__.py"


def _openapi() -> Path | None:
    """The OpenAPI document in the local Go module cache, if it was downloaded."""
    gomodcache = os.environ.get("GOMODCACHE") or os.path.expanduser("~/go/pkg/mod")
    path = (
        Path(gomodcache)
        / f"k8s.io/kubernetes@{k8s.KUBERNETES_VERSION}"
        / "api/openapi-spec/v3/api__v1_openapi.json"
    )
    return path if path.is_file() else None


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_k8s_models", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SCRIPT.is_file(), reason="not in the monorepo (sdist)")
def test_generated_models_are_fresh(tmp_path: Path) -> None:
    openapi = _openapi()
    if openapi is None:
        pytest.skip(f"k8s.io/kubernetes@{k8s.KUBERNETES_VERSION} not in the Go module cache")
    out = tmp_path / "k8s.py"
    gen = _generator()
    assert gen.main(["--openapi", str(openapi), "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == GENERATED.read_text(encoding="utf-8"), (
        "dask_crds/k8s is stale: run packages/dask-crds/scripts/gen_k8s_models.py"
    )
