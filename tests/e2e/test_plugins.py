"""Plugins on the real API: a package registered under the ``dask_operator_plugin`` entry-point
group is loaded by ``dask-controller run`` and its kopf handler acts on a DaskCluster; a broken
plugin next to it is reported and skipped, and the operator keeps working.

The plugin "package" is a module plus a ``.dist-info`` directory with ``entry_points.txt`` on
``PYTHONPATH``: exactly how an installed distribution advertises its entry points, without
installing anything into the test environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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


def _until(what: str, check: Callable[[], bool], log: Path, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{log.read_text()}")
        time.sleep(0.25)  # poll interval of a deadline loop


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


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"e2e-plugins-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def test_plugin_handler_runs_and_a_broken_plugin_is_skipped(
    kubectl: Kubectl, k8s_kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    from dask_crds import crd

    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-",
        input="\n---\n".join(crd.render_all().values()),
    )  # fmt: skip
    kubectl(
        "wait", "--for=condition=Established", "crd/daskclusters.kubernetes.dask.org",
        "--timeout=60s",
    )  # fmt: skip
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    _write_plugins(plugins)
    log = tmp_path / "controller.log"
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KUBECONFIG": str(k8s_kubeconfig), "PYTHONPATH": path}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dask_controller.cli", "run", "--namespace", namespace,
             "--kubeconfig", str(k8s_kubeconfig)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        kubectl("apply", "-n", namespace, "-f", str(REFERENCE))

        def annotated() -> bool:
            got = kubectl("get", "daskcluster", "simple", "-n", namespace, "-o", "json")
            annotations = json.loads(got.stdout)["metadata"].get("annotations") or {}
            return annotations.get("e2e.dask.org/plugin") == "saw simple"

        _until("the plugin's handler to annotate the DaskCluster", annotated, log)
        # The operator's own handlers run next to it: the scheduler pod is created.
        _until(
            "the scheduler pod",
            lambda: (
                kubectl("get", "pod", "simple-scheduler", "-n", namespace, check=False).returncode
                == 0
            ),
            log,
        )
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        assert "loaded dask operator plugin 'e2e'" in text
        assert "plugin 'e2e-broken'" in text
        assert "ImportError: e2e broken plugin" in text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
