from __future__ import annotations

import pytest

from dask_kubecluster import CreateMode


@pytest.mark.parametrize(
    "value", ["create_or_connect", "CREATE_OR_CONNECT", CreateMode.CREATE_OR_CONNECT]
)
def test_parse(value: str | CreateMode) -> None:
    assert CreateMode.parse(value) is CreateMode.CREATE_OR_CONNECT


def test_parse_rejects_unknown_with_choices() -> None:
    with pytest.raises(ValueError, match="CONNECT_ONLY"):
        CreateMode.parse("sometimes")


def test_permissions() -> None:
    assert CreateMode.CREATE_ONLY.may_create()
    assert not CreateMode.CREATE_ONLY.may_connect()
    assert CreateMode.CONNECT_ONLY.may_connect()
    assert not CreateMode.CONNECT_ONLY.may_create()
    assert CreateMode.CREATE_OR_CONNECT.may_create()
    assert CreateMode.CREATE_OR_CONNECT.may_connect()
