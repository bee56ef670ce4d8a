"""The API facade's own logic (no server): errors of unpreloaded responses raise."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from dask_controller import k8s


class Resp:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.reason = "Not Found" if status == 404 else "OK"
        self._body = body

    async def read(self) -> bytes:
        return self._body


async def _returns(resp: Resp) -> Any:
    return resp


async def test_json_of_success() -> None:
    assert await k8s._json(_returns(Resp(200, b'{"a": 1}'))) == {"a": 1}
    assert await k8s._json(_returns(Resp(200, b""))) == {}


async def test_json_of_error_raises_api_exception() -> None:
    body = b'{"kind": "Status", "reason": "NotFound", "code": 404}'
    with pytest.raises(ApiException) as info:
        await k8s._json(_returns(Resp(404, body)))
    assert info.value.status == 404
    assert "NotFound" in str(info.value.body)
