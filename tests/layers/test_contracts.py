"""The architecture contracts in pyproject.toml must reject the imports they forbid.

Each test copies the packages' sources into a temporary tree, plants one import, and runs
import-linter on the copy: the clean copy passes, every planted violation fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "dask_crds": "dask-crds",
    "dask_controller": "dask-controller",
    "dask_kubecluster": "dask-kubecluster",
}


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    src = tmp_path / "src"
    for module, dist in PACKAGES.items():
        shutil.copytree(ROOT / "packages" / dist / "src" / module, src / module)
    return src


def _lint_imports(tmp_path: Path, src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    exe = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(exe), "--config", str(tmp_path / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _plant(src: Path, module: str, line: str) -> None:
    target = src / module / "_planted.py"
    target.write_text(f"{line}\n")


def test_clean_tree_passes(tmp_path: Path) -> None:
    src = _copy_tree(tmp_path)
    result = _lint_imports(tmp_path, src)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("dask_crds", "import kopf", "dask_crds is pure"),
        ("dask_crds", "import kubernetes_asyncio", "dask_crds is pure"),
        ("dask_crds", "import dask_controller", "dask_crds is pure"),
        ("dask_crds", "from dask_kubecluster import modes", "dask_crds is pure"),
        ("dask_controller", "import dask_kubecluster", "never import each other"),
        ("dask_kubecluster", "import dask_controller.settings", "never import each other"),
        ("dask_kubecluster", "import kopf", "does not depend on the operator framework"),
    ],
)
def test_planted_violation_fails(tmp_path: Path, module: str, line: str, contract: str) -> None:
    src = _copy_tree(tmp_path)
    _plant(src, module, line)
    result = _lint_imports(tmp_path, src)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert contract in output
    assert "BROKEN" in output
