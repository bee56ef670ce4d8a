"""Recipe logic that needs no root: keys, hashes, wheel metadata, consistency of the pins."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from ci.images import config, recipes
from ci.images.containerd import Containerd


def test_tree_hash_follows_content_not_debris(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    first = recipes.tree_hash(tmp_path)
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "x").write_text("junk")
    assert recipes.tree_hash(tmp_path) == first
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 2\n")
    second = recipes.tree_hash(tmp_path)
    assert second != first
    (tmp_path / "src" / "pkg" / "mod.py").chmod(0o755)
    assert recipes.tree_hash(tmp_path) != second


def test_operator_source_hash_covers_the_operator_packages(tmp_path: Path) -> None:
    for pkg in recipes.OPERATOR_PACKAGES:
        (tmp_path / "packages" / pkg).mkdir(parents=True)
        (tmp_path / "packages" / pkg / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "packages" / "dask-kubecluster").mkdir()
    first = recipes.operator_source_hash(tmp_path)
    (tmp_path / "packages" / "dask-kubecluster" / "x.py").write_text("changed\n")
    assert recipes.operator_source_hash(tmp_path) == first
    (tmp_path / "packages" / "dask-crds" / "tests").mkdir()
    (tmp_path / "packages" / "dask-crds" / "tests" / "test_x.py").write_text("changed\n")
    (tmp_path / "packages" / "dask-controller" / "Dockerfile").write_text("FROM x\n")
    assert recipes.operator_source_hash(tmp_path) == first
    (tmp_path / "packages" / "dask-crds" / "x.py").write_text("changed\n")
    assert recipes.operator_source_hash(tmp_path) != first


def test_wheel_requirements_skip_extras(tmp_path: Path) -> None:
    wheel = tmp_path / "dask_controller-1.0-py3-none-any.whl"
    metadata = (
        "Metadata-Version: 2.4\nName: dask-controller\nVersion: 1.0.dev3+gabc\n"
        "Requires-Dist: dask-crds\nRequires-Dist: kopf>=1.37\n"
        "Requires-Dist: pytest>=8; extra == 'test'\n\n"
    )
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("dask_controller-1.0.dist-info/METADATA", metadata)
    name, version, requires = recipes.wheel_requirements(wheel)
    assert (name, version) == ("dask-controller", "1.0.dev3+gabc")
    assert requires == ["dask-crds", "kopf>=1.37"]
    assert recipes.operator_tag(version) == "1.0.dev3-gabc"


@pytest.mark.parametrize(
    ("req", "name"),
    [
        ("kopf>=1.37", "kopf"),
        ("kubernetes_asyncio>=30", "kubernetes-asyncio"),
        ("PyYAML", "pyyaml"),
    ],
)
def test_project_name(req: str, name: str) -> None:
    assert recipes._project_name(req) == name


def test_pins() -> None:
    assert config.PINS["dask"] == config.PINS["distributed"] == config.DASK_VERSION
    assert set(config.DASK_IMAGE_PACKAGES) <= set(config.PINS)
    assert recipes.dask_refs() == [
        f"ghcr.io/dask/dask:{config.DASK_VERSION}",
        "ghcr.io/dask/dask:latest",
    ]
    assert "registry.k8s.io/pause:3.10" in config.PAUSE_TAGS


def test_dockerfile_matches_the_pins() -> None:
    dockerfile = (config.REPO_ROOT / "packages" / "dask-controller" / "Dockerfile").read_text()
    match = re.search(r"^ARG DASK_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert match is not None
    assert match.group(1) == config.DASK_VERSION
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/dask-controller"]' in dockerfile
    assert list(recipes.OPERATOR_ENTRYPOINT) == [
        "/usr/bin/tini",
        "--",
        "/opt/venv/bin/dask-controller",
    ]
    assert "USER 1000:1000" in dockerfile


def test_prepare_sh_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(recipes.PREPARE_SH)], check=True)


def test_cache_dir_is_outside_the_repository() -> None:
    cache = config.default_cache_dir().resolve()
    assert config.REPO_ROOT not in cache.parents


def test_wheel_build_requirements_match_the_packages() -> None:
    for pkg in recipes.OPERATOR_PACKAGES:
        text = (config.REPO_ROOT / "packages" / pkg / "pyproject.toml").read_text()
        match = re.search(r"^requires = \[(.*)\]$", text, re.MULTILINE)
        assert match is not None
        requires = [r.strip().strip('"') for r in match.group(1).split(",")]
        assert requires == config.WHEEL_BUILD_REQUIREMENTS


@pytest.mark.skipif(not Path(config.GO).exists(), reason=f"no Go toolchain at {config.GO}")
def test_pause_go_tests() -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    subprocess.run(
        [config.GO, "test", "-count=1", "./..."],
        cwd=recipes.PAUSE_SRC,
        env=env,
        check=True,
        timeout=300,
    )


def test_throwaway_containerd_is_isolated(tmp_path: Path) -> None:
    c = Containerd(tmp_path)
    text = c.config_text()
    assert 'disabled_plugins = ["io.containerd.grpc.v1.cri"]' in text
    for key in ("root", "state"):
        assert f'{key} = "{tmp_path / key}"' in text
    assert c.address == str(tmp_path / "containerd.sock")
    assert f'address = "{c.address}"' in text
    assert "/run/containerd" not in text


def test_step_keeps_the_most_recently_used_results(tmp_path: Path) -> None:
    for i, key in enumerate(["a", "b", "c"]):
        step = recipes.Step(tmp_path, "kind", key)
        step.begin()
        step.finish({})
        os.utime(step.dir / "used", (1000 + i, 1000 + i))
    (tmp_path / "kind" / "crashed").mkdir()
    assert recipes.Step(tmp_path, "kind", "a").done  # "a" is now the most recently used
    recipes.Step(tmp_path, "kind", "d").begin()
    left = sorted(p.name for p in (tmp_path / "kind").iterdir())
    assert left == ["a", "c", "d"]
    assert recipes.KEEP_PER_STEP == 3
