from __future__ import annotations

import io

import pytest
from rich.console import Console

from dask_kubecluster.progress import StartupStatus


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=100), out


def test_history_and_final_line() -> None:
    console, out = _console()
    with StartupStatus("KubeCluster foo", quiet=False, console=console) as status:
        status.update("creating DaskCluster")
        status.update("creating DaskCluster")  # repeated updates are recorded once
        status.update("scheduler pod Pending")
        status.done("ready (port-forward)")
    assert [m for _, m in status.history] == [
        "creating DaskCluster",
        "scheduler pod Pending",
        "ready (port-forward)",
    ]
    assert "KubeCluster foo: ready (port-forward)" in out.getvalue()


def test_quiet_prints_nothing_but_keeps_history() -> None:
    console, out = _console()
    with StartupStatus("KubeCluster foo", quiet=True, console=console) as status:
        status.update("creating DaskCluster")
        status.done("ready")
    assert out.getvalue() == ""
    assert len(status.history) == 2


def test_failure_is_recorded() -> None:
    console, _ = _console()
    with (
        pytest.raises(RuntimeError),
        StartupStatus("KubeCluster foo", quiet=False, console=console) as status,
    ):
        raise RuntimeError("boom")
    assert status.history[-1][1] == "failed: boom"
