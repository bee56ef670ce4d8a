"""Plugins on the real API: a package registered under the ``dask_operator_plugin`` entry-point
group is loaded by ``dask-controller run`` and its kopf handler acts on a DaskCluster; a broken
plugin next to it is reported and skipped, and the operator keeps working.

The plugin "package" is a module plus a ``.dist-info`` directory with ``entry_points.txt`` on
``PYTHONPATH``: exactly how an installed distribution advertises its entry points, without
installing anything into the test environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e_support import ControllerProcess, exists, install_crds, until

if TYPE_CHECKING:
    from ci.localk8s.pytest_plugin import Kubectl

pytest.importorskip("dask_controller", reason="dask-controller is not installed")

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "packages" / "dask-controller" / "tests" / "manifests" / "simple-cluster.yaml"
WAIT = 90.0

PLUGIN = """
import kopf

@kopf.on.create("kubernetes.dask.org", "v1", "daskclusters")
def mark_cluster(patch, name, **_):
    patch.metadata.annotations["e2e.dask.org/plugin"] = f"saw {name}"
"""


def _write_plugins(where: Path) -> None:
    """A working plugin and a broken one, as two distributions on ``where``."""
    (where / "dask_e2e_plugin.py").write_text(PLUGIN)
    (where / "dask_e2e_broken_plugin.py").write_text("raise ImportError('e2e broken plugin')\n")
    for dist, entry in (
        ("dask_e2e_plugin", "e2e = dask_e2e_plugin"),
        ("dask_e2e_broken_plugin", "e2e-broken = dask_e2e_broken_plugin"),
    ):
        info = where / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[dask_operator_plugin]\n{entry}\n")


def test_plugin_handler_runs_and_a_broken_plugin_is_skipped(
    kubectl: Kubectl, k8s_kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    install_crds(kubectl)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    _write_plugins(plugins)
    ctl = ControllerProcess(k8s_kubeconfig, namespace, tmp_path / "controller.log")
    ctl.start(pythonpath=str(plugins))
    try:
        kubectl("apply", "-n", namespace, "-f", str(REFERENCE))

        def annotated() -> bool:
            got = kubectl("get", "daskcluster", "simple", "-n", namespace, "-o", "json")
            annotations = json.loads(got.stdout)["metadata"].get("annotations") or {}
            return annotations.get("e2e.dask.org/plugin") == "saw simple"

        until(
            "the plugin's handler to annotate the DaskCluster", annotated,
            context=ctl.tail, abort=ctl.exited,
        )  # fmt: skip
        # The operator's own handlers run next to it: the scheduler pod is created.
        until(
            "the scheduler pod",
            lambda: exists(kubectl, "pod", "simple-scheduler", "-n", namespace),
            context=ctl.tail, abort=ctl.exited,
        )  # fmt: skip
        assert ctl.exited() is None, ctl.tail()
        text = ctl.log.read_text()
        assert "loaded dask operator plugin 'e2e'" in text
        assert "plugin 'e2e-broken'" in text
        assert "ImportError: e2e broken plugin" in text
    finally:
        ctl.stop()
