from __future__ import annotations

import socket
import urllib.request

import pytest

from dask_controller import cli, health, metrics
from dask_controller.settings import Settings, SettingsError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_that_stops_beating_is_stalled() -> None:
    clock = FakeClock()
    beats = health.Heartbeats(clock)
    beats.beat("a")
    beats.beat("b")
    clock.now += 100
    beats.beat("b")
    assert beats.stalled(60) == ["a"]
    clock.now += 100
    assert beats.stalled(60) == ["a", "b"]
    beats.forget("a")
    assert beats.stalled(60) == ["b"]
    assert len(beats) == 1


def test_fresh_loops_are_not_stalled() -> None:
    clock = FakeClock()
    beats = health.Heartbeats(clock)
    beats.beat("a")
    clock.now += 59
    assert beats.stalled(60) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_metrics_are_served() -> None:
    metrics.RECONCILES.labels("DaskCluster", "ok").inc()
    metrics.ACTIONS.labels("DaskWorkerGroup", "Normal", "WorkersRetired").inc()
    port = _free_port()
    metrics.serve(port, "127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    assert 'dask_operator_reconcile_total{kind="DaskCluster",result="ok"}' in body
    assert 'reason="WorkersRetired"' in body
    assert "dask_operator_reconcile_duration_seconds" in body
    assert "dask_operator_api_errors_total" in body


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("0", False), ("TRUE", True)])
def test_events_switch(raw: str, value: bool) -> None:
    assert Settings.from_env({"DASK_OPERATOR_EVENTS": raw}).post_events is value


def test_events_switch_rejects_nonsense() -> None:
    with pytest.raises(SettingsError, match="DASK_OPERATOR_EVENTS"):
        Settings.from_env({"DASK_OPERATOR_EVENTS": "maybe"})


def test_run_accepts_the_chart_flags() -> None:
    args = cli.build_parser().parse_args(
        [
            "run",
            "--liveness=http://0.0.0.0:8080/healthz",
            "--metrics-port=8081",
            "--standalone",
            "--all-namespaces",
        ]
    )
    assert args.metrics_port == 8081
    assert args.standalone
    assert args.peering is None
    assert args.all_namespaces


def test_standalone_and_peering_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--standalone", "--peering=x", "-A"])
