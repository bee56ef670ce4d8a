from __future__ import annotations

import pytest

from dask_crds import cli, naming


def test_check_name_accepts_a_good_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-name", "simple"]) == 0
    assert capsys.readouterr().err == ""


def test_check_name_explains_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-name", "x" * (naming.max_cluster_name_length() + 5)]) == 1
    assert "choose a shorter name" in capsys.readouterr().err
