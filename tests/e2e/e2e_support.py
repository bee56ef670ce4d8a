"""What the end-to-end test modules share: waiting on conditions, reading objects, the CRDs, a
fresh namespace, and the controller as a subprocess.

Every wait is a poll against a deadline, never a bare sleep.
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
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ci.localk8s.pytest_plugin import Kubectl

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "packages" / "dask-controller" / "tests" / "manifests"
#: Seconds a single condition may take on a busy two-core machine, unless a test says otherwise.
WAIT = 90.0
KINDS = ("DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler")


def until(
    what: str,
    check: Callable[[], bool],
    timeout: float = WAIT,
    *,
    context: Callable[[], str] | None = None,
    abort: Callable[[], str | None] | None = None,
    interval: float = 0.25,
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` (and ``context()``) at the deadline,
    or as soon as ``abort()`` gives a reason (say, the controller process exited)."""
    deadline = time.monotonic() + timeout
    while not check():
        if abort is not None and (why := abort()):
            pytest.fail(f"{why} before {what}{context() if context else ''}")
        if time.monotonic() > deadline:
            extra = context() if context else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)  # poll interval of a deadline loop


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    """``kubectl ARGS -o json``, parsed."""
    data: dict[str, Any] = json.loads(kubectl(*args, "-o", "json").stdout)
    return data


def exists(kubectl: Kubectl, *args: str) -> bool:
    """Whether ``kubectl get ARGS`` finds the object (any other error fails the test)."""
    result = kubectl("get", *args, check=False)
    if result.returncode == 0:
        return True
    assert "NotFound" in result.stderr, result.stderr
    return False


def ready_node(kubectl: Kubectl) -> bool:
    """Whether some node is Ready, so that pods really run."""
    for node in get_json(kubectl, "get", "nodes")["items"]:
        for cond in node.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                return True
    return False


def crd_manifests() -> str:
    """The CRDs generated from the dask_crds models: exactly what the chart installs."""
    from dask_crds import crd

    return "\n---\n".join(crd.render_all().values())


def install_crds(kubectl: Kubectl) -> None:
    """Apply the generated CRDs (server-side) and wait until all four are served."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd_manifests())
    for kind in KINDS:
        kubectl(
            "wait", "--for=condition=Established",
            f"crd/{kind.lower()}s.kubernetes.dask.org", "--timeout=60s",
        )  # fmt: skip


def release_finalizers(kubectl: Kubectl, namespace: str) -> None:
    """Drop the finalizers of every Dask object in ``namespace``.

    kopf puts a finalizer on each object it runs a per-object loop for; once the test's
    controller is stopped nothing would remove it, and the namespace would stay Terminating.
    """
    plurals = ",".join(f"{kind.lower()}s.kubernetes.dask.org" for kind in KINDS)
    listed = kubectl("get", plurals, "-n", namespace, "-o", "name", check=False)
    for ref in listed.stdout.split():
        kubectl(
            "patch", ref, "-n", namespace, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip


@contextmanager
def fresh_namespace(kubectl: Kubectl, prefix: str, test_name: str = "") -> Iterator[str]:
    """A new namespace named after the test, deleted (without waiting) afterwards, with the kopf
    finalizers of its Dask objects released so that it really goes."""
    base = test_name.lower().replace("_", "-").replace("[", "-").replace("]", "")
    name = "-".join(p for p in (prefix, base[:28].strip("-"), uuid.uuid4().hex[:6]) if p)
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
        release_finalizers(kubectl, name)


#: The controller the running test started, so that waits fail early, with its log, if it dies.
RUNNING: dict[str, ControllerProcess] = {}


def until_controlled(
    what: str, check: Callable[[], bool], timeout: float = WAIT, *, interval: float = 0.25
) -> None:
    """:func:`until`, failing at once (with the controller's log) if the test's controller
    exits, and showing that log on a timeout."""
    ctl = RUNNING.get("controller")
    until(
        what, check, timeout, interval=interval,
        context=ctl.tail if ctl else None, abort=ctl.exited if ctl else None,
    )  # fmt: skip


class ControllerProcess:
    """``dask-controller run --namespace NS`` as a subprocess, restartable, logging to a file."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, pythonpath: str | None = None, **env: str) -> None:
        full_env = {
            **os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **env
        }  # fmt: skip
        if pythonpath:
            full_env["PYTHONPATH"] = os.pathsep.join(
                p for p in (pythonpath, os.environ.get("PYTHONPATH", "")) if p
            )
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dask_controller.cli", "run", "--namespace",
                 self.namespace, "--kubeconfig", str(self.kubeconfig), *args],
                stdout=out, stderr=subprocess.STDOUT, env=full_env,
            )  # fmt: skip
        RUNNING["controller"] = self

    def exited(self) -> str | None:
        """Why the started process is gone (``None`` while it runs or when it was stopped)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"the controller exited ({self.proc.returncode})"

    def tail(self, chars: int = 4000) -> str:
        """The end of the log, for failure messages."""
        if not self.log.exists():
            return ""
        return "\ncontroller log (tail):\n" + self.log.read_text()[-chars:]

    def stop(self, sig: int = signal.SIGINT) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
