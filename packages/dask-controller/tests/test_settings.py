from __future__ import annotations

import pytest

from dask_controller import cli
from dask_controller.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.cluster_domain == "cluster.local"
    assert s.worker_allocation_size == 10
    assert s.worker_allocation_delay == 0.0


def test_values_from_env() -> None:
    s = Settings.from_env(
        {
            "DASK_OPERATOR_CLUSTER_DOMAIN": "corp.internal.",
            "DASK_OPERATOR_WORKER_ALLOCATION_SIZE": "3",
            "DASK_OPERATOR_WORKER_ALLOCATION_DELAY": "0.5",
        }
    )
    assert s.cluster_domain == "corp.internal"
    assert s.worker_allocation_size == 3
    assert s.worker_allocation_delay == 0.5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DASK_OPERATOR_WORKER_ALLOCATION_SIZE", "ten", "not a whole number"),
        ("DASK_OPERATOR_WORKER_ALLOCATION_SIZE", "0", "at least 1"),
        ("DASK_OPERATOR_WORKER_ALLOCATION_DELAY", "-1", "at least 0"),
        ("DASK_OPERATOR_SCHEDULER_TIMEOUT", "soon", "not a number"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=name) as info:
        Settings.from_env({name: value})
    assert message in str(info.value)


def test_cli_reports_bad_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DASK_OPERATOR_WORKER_ALLOCATION_SIZE", "x")
    assert cli.main(["settings"]) == 2
    assert "DASK_OPERATOR_WORKER_ALLOCATION_SIZE" in capsys.readouterr().err
