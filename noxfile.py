"""Every task of the monorepo. `nox -l` lists them; `nox -s ci` is what CI runs."""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent.resolve()
PACKAGES = ["dask-crds", "dask-controller", "dask-kubecluster"]
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DEFAULT_PYTHON = "3.12"

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
# A Python version we cannot find is an error, never a silent skip counted as a pass.
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["ci"]

# uv must never download an interpreter; it uses the machine's.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


def _expose_pyenv_interpreters() -> None:
    """Put every pyenv-installed CPython on PATH so nox finds `python3.X` without pyenv shims.

    pyenv's shims only answer for the selected global version; the others are installed but
    hidden. Nothing is done on machines without pyenv.
    """
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    dirs = []
    for version in PYTHONS:
        found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin")))
        if found:
            dirs.append(found[-1])
    if dirs:
        os.environ["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])


_expose_pyenv_interpreters()


def _editable_args(*extras: str) -> list[str]:
    args: list[str] = []
    for pkg in PACKAGES:
        spec = str(ROOT / "packages" / pkg)
        if extras:
            spec += f"[{','.join(extras)}]"
        args += ["-e", spec]
    return args


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict, once per package (sources and tests)."""
    session.install(
        "mypy>=1.13", "types-PyYAML", "nox>=2024.10", "cryptography>=42",
        *_editable_args("test"),
    )  # fmt: skip
    for pkg in PACKAGES:
        base = ROOT / "packages" / pkg
        session.log(f"mypy --strict: {pkg}")
        session.run("mypy", str(base / "src"), str(base / "tests"))
    session.log("mypy --strict: ci/, cross-package tests, benchmarks, noxfile")
    # Scripts run on DEFAULT_PYTHON only; the packages above are checked for 3.10.
    session.run(
        "mypy", "--python-version", DEFAULT_PYTHON, "ci", "tests", "benchmarks", "noxfile.py",
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@nox.session(python=PYTHONS)
def unit(session: nox.Session) -> None:
    """Unit tests of every package: pure logic, no cluster."""
    session.install(*_editable_args("test"))
    for pkg in PACKAGES:
        base = ROOT / "packages" / pkg
        session.log(f"pytest: {pkg} on Python {session.python}")
        with session.chdir(base):
            session.run("pytest", "-q", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def build(session: nox.Session) -> None:
    """Build a wheel and an sdist of every package; install each set into a fresh venv."""
    session.install("build>=1.2")
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for pkg in PACKAGES:
        session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT / "packages" / pkg))
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != len(PACKAGES) or len(sdists) != len(PACKAGES):
        session.error(f"expected {len(PACKAGES)} wheels and sdists, got {wheels + sdists}")
    session.log(f"built {len(wheels) + len(sdists)} artefacts in {dist}")
    check = ROOT / "ci" / "check_install.py"
    for label, artefacts in (("wheels", wheels), ("sdists", sdists)):
        venv = Path(session.create_tmp()) / f"install-{label}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        py = str(venv / "bin" / "python")
        # --find-links lets the controller and client resolve dask-crds from what we just built.
        session.run(
            py, "-m", "pip", "install", "-q", "--find-links", str(dist),
            *map(str, artefacts), external=True,
        )  # fmt: skip
        session.run(py, str(check), *PACKAGES, external=True)


@nox.session(python=DEFAULT_PYTHON)
def layers(session: nox.Session) -> None:
    """Architecture contracts: dask_crds is pure; controller and client stay independent."""
    session.install("import-linter>=2.1", "pytest>=8", "pytest-timeout>=2.3", *_editable_args())
    session.run("lint-imports", "--config", str(ROOT / "pyproject.toml"))
    # Prove the contracts bite: a planted forbidden import must make lint-imports fail.
    session.run("pytest", "-q", str(ROOT / "tests" / "layers"))


@nox.session(python=DEFAULT_PYTHON)
def crds(session: nox.Session) -> None:
    """Generated CRDs and docs/resources.md are up to date with the dask_crds models."""
    session.install("-e", str(ROOT / "packages" / "dask-crds"))
    crds_dir = ROOT / "charts" / "dask-kubernetes-operator" / "files" / "crds"
    session.run("dask-crds", "generate", "--check", "--output", str(crds_dir))
    session.run("dask-crds", "docs", "--check", "--output", str(ROOT / "docs" / "resources.md"))


@nox.session(python=DEFAULT_PYTHON)
def chart(session: nox.Session) -> None:
    """helm lint --strict, rendering tests of the chart, and its generated values table."""
    session.install("pytest>=8", "pytest-timeout>=2.3", "PyYAML>=6", "cryptography>=42")
    env = {"PYTHONPATH": str(ROOT)}
    # helm is built from its Go module by ci.localk8s, like every other binary the tests use.
    session.run("python", "-m", "ci.localk8s", "build", "--only", "helm", env=env)
    helm = session.run(
        "python", "-c",
        "from ci.localk8s import paths, versions;"
        "print(paths.bin_dir(versions.select().kubernetes) / 'helm')",
        env=env, silent=True,
    )  # fmt: skip
    assert isinstance(helm, str)
    session.run("python", "-m", "ci.chart_docs", "--check", env=env)
    session.run(
        "python", "-m", "pytest", "-q", str(ROOT / "tests" / "chart"),
        env={**env, "DASK_HELM": helm.strip()},
    )  # fmt: skip


def _kubernetes_minors() -> list[str]:
    """Supported Kubernetes minors, newest first, from ci/kubernetes-versions.toml."""
    if sys.version_info < (3, 11):  # no tomllib: only the unparametrised `e2e` session
        return []
    import tomllib

    with open(ROOT / "ci" / "kubernetes-versions.toml", "rb") as f:
        minors = list(tomllib.load(f)["versions"])
    return sorted(minors, key=lambda m: tuple(int(p) for p in m.split(".")), reverse=True)


def _e2e_provider(session: nox.Session) -> tuple[str, list[str]]:
    """(provider, pytest arguments): `--provider` from the session arguments, else
    `$DASK_E2E_PROVIDER`, else auto (kind where Docker works, else the local cluster)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from ci.localk8s import providers

    try:
        arg, rest = providers.split_provider_args(session.posargs)
        return providers.resolve_provider(providers.requested_provider(arg)), rest
    except providers.ProviderError as error:
        session.error(str(error))


def _run_e2e(session: nox.Session, kubernetes: str | None) -> None:
    provider, pytest_posargs = _e2e_provider(session)
    session.log(f"e2e provider: {provider}")
    session.install(
        *_editable_args(),
        "pytest>=8",
        "pytest-timeout>=2.3",
        "pytest-asyncio>=0.24",
        "kubernetes_asyncio>=31",
        "cryptography>=42",
        "tomli>=2; python_version < '3.11'",
    )
    env = {"PYTHONPATH": str(ROOT), "DASK_E2E_PROVIDER": provider}
    if kubernetes:
        env["KUBERNETES_VERSION"] = kubernetes
    if provider == "kind":
        from ci.localk8s import providers, versions

        release = versions.select(kubernetes)
        # pytest-kind downloads kind and kubectl at these versions when none is on PATH.
        env["KIND_VERSION"] = providers.kind_settings(release).kind_version
        env["KUBECTL_VERSION"] = release.kubernetes
        session.install("pytest-kind>=22.11")
        # The images the suite runs (ci.images needs root; a cached archive is reused).
        session.run("python", "-m", "ci.images", "build", *providers.KIND_IMAGES, env=env)
    else:
        # The cold build (10-20 min) happens here, outside pytest's per-test timeout.
        session.run("python", "-m", "ci.localk8s", "build", env=env)
    # pytest-asyncio (for async e2e tests) warns, an error here, unless its loop scope is set.
    pytest_args = ["-o", "asyncio_default_fixture_loop_scope=function", *pytest_posargs]
    session.run("python", "-m", "pytest", str(ROOT / "tests" / "e2e"), *pytest_args, env=env)


@nox.session(python=DEFAULT_PYTHON)
def e2e(session: nox.Session) -> None:
    """End-to-end tests on the local cluster or kind ($KUBERNETES_VERSION or default).

    `nox -s e2e -- --provider local|kind|auto` (or `$DASK_E2E_PROVIDER`); other arguments go to
    pytest. auto: kind where Docker works, else the local Kubernetes built from source.
    """
    _run_e2e(session, os.environ.get("KUBERNETES_VERSION"))


@nox.session(name="e2e-k8s", python=DEFAULT_PYTHON)
@nox.parametrize("k8s", _kubernetes_minors())
def e2e_k8s(session: nox.Session, k8s: str) -> None:
    """End-to-end tests on each supported Kubernetes minor: e2e-k8s(k8s='1.36')."""
    _run_e2e(session, k8s)


@nox.session(python=DEFAULT_PYTHON)
def images(session: nox.Session) -> None:
    """The locally built images: OCI packing, and each image run in a containerd of our own."""
    session.install("pytest>=8", "pytest-timeout>=2.3", "cryptography>=42")
    session.run("python", "-m", "pytest", "-q", "ci/images/tests", env={"PYTHONPATH": str(ROOT)})


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site: `mkdocs build --strict` (warnings are errors) into site/.

    `nox -s docs -- serve` serves it with live reload instead.
    """
    session.install("mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10")
    env = {"PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    session.run("python", "-m", "ci.supported_versions", "--check", env=env)
    config = str(ROOT / "mkdocs.yml")
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", "-f", config, *session.posargs[1:], env=env)
        return
    site = ROOT / "site"  # gitignored
    session.run(
        "mkdocs", "build", "--strict", "-f", config, "--site-dir", str(site), *session.posargs,
        env=env,
    )  # fmt: skip
    session.log(f"site built in {site} (open {site / 'index.html'})")


@nox.session(python=DEFAULT_PYTHON)
def tooling(session: nox.Session) -> None:
    """Tests of the tooling in ci/tests (no cluster, no Docker): e2e providers, workflow, docs.

    e2e provider selection and the kind commands, the GitHub workflow against the versions file
    and the noxfile, the generated supported-versions page; and the local node's rendering and
    certificates (ci/localk8s/node/tests).
    """
    # pytest-kind: the kind provider is tested against its real KindCluster (kind and docker are
    # scripts there).
    session.install(
        "pytest>=8", "pytest-timeout>=2.3", "PyYAML>=6", "cryptography>=42", "pytest-kind>=22.11",
        "tomli>=2; python_version < '3.11'",
    )  # fmt: skip
    session.run(
        "python", "-m", "pytest", "-q", str(ROOT / "ci" / "tests"),
        str(ROOT / "ci" / "localk8s" / "node" / "tests"), *session.posargs,
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks (benchmarks/): each reports candidate/reference ratios; nothing is asserted
    about speed. Not part of `ci`."""
    session.install(*_editable_args())
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        session.log(f"benchmark {script.name}")
        session.run("python", str(script))


# The Dask image runs Debian's Python 3.11: a client of the same version avoids distributed's
# version-mismatch warnings.
@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The main job: local Kubernetes, the operator via Helm, a Dask cluster via KubeCluster.

    `nox -s demo` brings everything up and computes; `nox -s demo -- down` tears it down.
    """
    session.install(*_editable_args(), "cryptography>=42", "tomli>=2; python_version < '3.11'")
    session.run("python", "-m", "ci.demo", *session.posargs, env={"PYTHONPATH": str(ROOT)})


@nox.session(python=False)
def ci(session: nox.Session) -> None:
    """What CI runs: every check, each as its own session."""
    checks = ["lint", "typecheck", "layers", "tooling", "crds", "chart", "build", "docs"]
    # e2e last: it needs the most time, and a failure of a fast check shows first.
    # e2e installs containerd and runc (Debian) for the node, which the images tests then use.
    for name in [*checks, *(f"unit-{p}" for p in PYTHONS), "e2e", "images"]:
        session.notify(name)
