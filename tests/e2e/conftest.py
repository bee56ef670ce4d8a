"""End-to-end tests against a real Kubernetes API: the local cluster of `python -m ci.localk8s`
or, with `DASK_E2E_KUBECONFIG=/path` (or `DASK_E2E_USE_KUBECONFIG=1` and `$KUBECONFIG`), an
existing one. Fixtures: `k8s_kubeconfig` (admin kubeconfig path) and `kubectl` (a callable)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `ci` is a package at the repository root, not installed
    sys.path.insert(0, str(_ROOT))

from ci.localk8s.pytest_plugin import (  # noqa: E402
    _dask_e2e_cluster,
    e2e_provider,
    k8s_kubeconfig,
    kubectl,
)

__all__ = ["_dask_e2e_cluster", "e2e_provider", "k8s_kubeconfig", "kubectl"]
