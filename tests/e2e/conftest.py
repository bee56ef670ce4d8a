"""End-to-end tests against a real Kubernetes API: the local cluster of `python -m ci.localk8s`
or, with `DASK_E2E_KUBECONFIG=/path` (or `DASK_E2E_USE_KUBECONFIG=1` and `$KUBECONFIG`), an
existing one. Fixtures: `k8s_kubeconfig` (admin kubeconfig path), `kubectl` (a callable),
`e2e_provider`, and for the operator's tests `crds` (the generated CRDs applied) and `namespace`
(a fresh one per test, prefixed `e2e-<module>`, whose Dask objects' finalizers are released at
the end). Shared helpers live in `e2e_support`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `ci` is a package at the repository root, not installed
    sys.path.insert(0, str(_ROOT))

from e2e_support import fresh_namespace, install_crds  # noqa: E402

from ci.localk8s.pytest_plugin import (  # noqa: E402
    Kubectl,
    _dask_e2e_cluster,
    e2e_provider,
    k8s_kubeconfig,
    kubectl,
)

__all__ = ["_dask_e2e_cluster", "crds", "e2e_provider", "k8s_kubeconfig", "kubectl", "namespace"]


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    """The CRDs generated from the dask_crds models, applied and Established."""
    install_crds(kubectl)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, named after its module and the test."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    with fresh_namespace(kubectl, f"e2e-{module[:12]}", request.node.name) as name:
        yield name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """No e2e test fails on a ResourceWarning.

    The e2e tests run distributed clients and kubernetes_asyncio/aiohttp sessions in the test
    process; a transport they leave to the garbage collector warns whenever the collector runs,
    which can be during any later test. Every other warning stays an error (tests/pytest.ini);
    closing is checked by the packages' unit tests.
    """
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore::ResourceWarning"))
