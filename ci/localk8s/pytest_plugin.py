"""pytest fixtures for end-to-end tests against a real Kubernetes API.

- `k8s_kubeconfig` (session): `pathlib.Path` of an admin kubeconfig.
- `e2e_provider` (session): `local`, `kind` or `external`, for the few tests about the local
  node itself.
- `kubectl` (session): `kubectl(*args, input=None, check=True, timeout=120)` ->
  `subprocess.CompletedProcess[str]`, running kubectl against that kubeconfig.

The cluster comes from a provider (`ci.localk8s.providers`): `local`, the cluster of
`python -m ci.localk8s`, or `kind` (pytest-kind, the node image of the selected Kubernetes minor,
the `ci.images` archives loaded with `kind load image-archive`). `$DASK_E2E_PROVIDER` (`auto`,
`local`, `kind`; the e2e nox session sets it from `--provider`) chooses; `auto`, the default,
is kind where Docker works and the local cluster elsewhere.

The local cluster is brought up for the session, built first if needed (a cold build takes
10-20 minutes: run `python -m ci.localk8s build` beforehand). A cluster (local or kind) that was
already up is reused and left running; one started here is stopped at the end unless
`DASK_K8S_KEEP=1`. To test against an existing cluster instead, set
`DASK_E2E_KUBECONFIG=/path/to/kubeconfig` (or `DASK_E2E_USE_KUBECONFIG=1` with `$KUBECONFIG`);
kubectl is then `$DASK_E2E_KUBECTL`, the one on PATH, or the built one.

Use it from a conftest.py with `from ci.localk8s.pytest_plugin import k8s_kubeconfig, kubectl`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import build, cluster, providers, versions


class KubectlError(AssertionError):
    """kubectl failed; the message carries the command, exit code, stdout and stderr."""


@dataclass(frozen=True)
class Kubectl:
    """Callable running a kubectl binary against one kubeconfig."""

    binary: Path
    kubeconfig: Path

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result


@dataclass(frozen=True)
class E2ECluster:
    kubeconfig: Path
    kubectl: Path
    #: "local", "kind" or "external" (`DASK_E2E_KUBECONFIG`): tests that touch the local node
    #: (its containerd, its network) can skip elsewhere. On kind the `ci.images` archives of
    #: `providers.KIND_IMAGES` are loaded before the tests run.
    provider: str = "local"


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def external_kubeconfig() -> Path | None:
    """The kubeconfig of an existing cluster the user opted into, if any."""
    if path := os.environ.get("DASK_E2E_KUBECONFIG"):
        return Path(path).expanduser()
    if _truthy("DASK_E2E_USE_KUBECONFIG"):
        env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        return Path(env or "~/.kube/config").expanduser()
    return None


def _kubectl_for_external(release: versions.Release) -> Path:
    if env := os.environ.get("DASK_E2E_KUBECTL"):
        return Path(env)
    if found := shutil.which("kubectl"):
        return Path(found)
    return build.build(release, groups=["kubernetes"]) / "kubectl"


def local_cluster(
    release: versions.Release | None = None, *, keep: bool | None = None
) -> Iterator[E2ECluster]:
    """Generator behind the fixture: yields a usable cluster, cleans up what it started."""
    release = release or versions.select()
    external = external_kubeconfig()
    if external is not None:
        if not external.is_file():
            raise FileNotFoundError(f"kubeconfig {external} (from the environment) does not exist")
        yield E2ECluster(
            kubeconfig=external, kubectl=_kubectl_for_external(release), provider="external"
        )
        return
    cluster.check_version(release)
    bindir = build.build(release)
    local = cluster.Cluster()
    was_up = local.exists() and all(v == "ok" for v in local.health().values())
    local = cluster.up(release)
    try:
        yield E2ECluster(kubeconfig=local.kubeconfig_path, kubectl=bindir / "kubectl")
    finally:
        keep = _truthy("DASK_K8S_KEEP") if keep is None else keep
        if not was_up and not keep:
            cluster.down(local.name)


def e2e_cluster(provider: str | None = None) -> Generator[E2ECluster, None, None]:
    """Generator behind the fixture: an existing cluster from the environment, else the cluster
    of the provider asked for (`provider`, else `$DASK_E2E_PROVIDER`, else `auto`)."""
    if external_kubeconfig() is not None:
        yield from local_cluster()
        return
    chosen = providers.resolve_provider(providers.requested_provider(provider))
    if chosen == "local":
        yield from local_cluster()
        return
    kind = providers.kind_cluster()
    found = next(kind)
    try:
        yield E2ECluster(kubeconfig=found.kubeconfig, kubectl=found.kubectl, provider="kind")
    finally:
        kind.close()


@pytest.fixture(scope="session")
def _dask_e2e_cluster() -> Iterator[E2ECluster]:
    yield from e2e_cluster()


@pytest.fixture(scope="session")
def e2e_provider(_dask_e2e_cluster: E2ECluster) -> str:
    """Where the cluster comes from: `local`, `kind` or `external` (for tests that touch the
    local node itself)."""
    return _dask_e2e_cluster.provider


@pytest.fixture(scope="session")
def k8s_kubeconfig(_dask_e2e_cluster: E2ECluster) -> Path:
    """Path of an admin kubeconfig for the e2e cluster."""
    return _dask_e2e_cluster.kubeconfig


@pytest.fixture(scope="session")
def kubectl(_dask_e2e_cluster: E2ECluster) -> Kubectl:
    """`kubectl(*args, input=None, check=True)` against the e2e cluster."""
    return Kubectl(binary=_dask_e2e_cluster.kubectl, kubeconfig=_dask_e2e_cluster.kubeconfig)


__all__: Sequence[str] = [
    "Kubectl",
    "KubectlError",
    "e2e_cluster",
    "k8s_kubeconfig",
    "kubectl",
    "local_cluster",
]
