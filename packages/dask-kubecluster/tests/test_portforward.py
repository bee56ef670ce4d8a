"""The port-forward listener against an in-memory websocket that speaks the channel protocol."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace, TracebackType
from typing import Any

import pytest

from dask_kubecluster.portforward import FrameDecoder, PortForward, encode

PORT_HEADER = (8786).to_bytes(2, "little")


class FakeStream:
    """An echoing pod port: answers every data frame with the same bytes."""

    def __init__(self, pod: str, error: bytes = b"") -> None:
        self.pod = pod
        self.sent: list[bytes] = []
        self.closed = False
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queue.put_nowait(bytes([0]) + PORT_HEADER)
        self._queue.put_nowait(bytes([1]) + PORT_HEADER)
        if error:
            self._queue.put_nowait(bytes([1]) + error)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)
        if data[1:] == b"drop":
            self._queue.put_nowait(None)
        else:
            self._queue.put_nowait(bytes([0]) + f"{self.pod}:".encode() + data[1:])

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return SimpleNamespace(data=item)

    async def __aenter__(self) -> FakeStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closed = True


class Harness:
    def __init__(self, error: bytes = b"") -> None:
        self.pods = iter(["pod-a", "pod-b", "pod-c"])
        self.streams: list[FakeStream] = []
        self.error = error

    async def resolve(self) -> str:
        return next(self.pods)

    async def open(self, pod: str) -> FakeStream:
        stream = FakeStream(pod, self.error)
        self.streams.append(stream)
        return stream


async def _roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await reader.readexactly(len(payload) + len(b"pod-a:"))
    writer.close()
    await writer.wait_closed()
    return data


def test_frame_decoder_drops_port_headers() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(bytes([0]) + PORT_HEADER) is None
    assert decoder.feed(bytes([1]) + PORT_HEADER) is None
    assert decoder.feed(b"\x00hello") == (0, b"hello")
    assert decoder.feed(b"\x01oops") == (1, b"oops")
    assert decoder.feed(b"") is None


def test_frame_decoder_header_and_data_in_one_frame() -> None:
    assert FrameDecoder().feed(bytes([0]) + PORT_HEADER + b"xy") == (0, b"xy")


def test_encode() -> None:
    assert encode(b"abc") == b"\x00abc"


async def test_forwards_bytes_both_ways_on_loopback() -> None:
    harness = Harness()
    forward = PortForward(harness.open, harness.resolve, 8786)
    port = await forward.start()
    try:
        assert forward.host == "127.0.0.1"
        assert await _roundtrip(port, b"hello") == b"pod-a:hello"
    finally:
        await forward.stop()
    assert harness.streams[0].sent == [b"\x00hello"]


async def test_each_connection_gets_a_new_stream_and_pod_lookup() -> None:
    harness = Harness()
    forward = PortForward(harness.open, harness.resolve, 8786)
    port = await forward.start()
    try:
        assert await _roundtrip(port, b"one") == b"pod-a:one"
        assert await _roundtrip(port, b"two") == b"pod-b:two"
    finally:
        await forward.stop()
    assert [s.pod for s in harness.streams] == ["pod-a", "pod-b"]
    assert forward.connections == 2


async def test_a_dropped_stream_closes_one_connection_and_the_next_works() -> None:
    harness = Harness()
    forward = PortForward(harness.open, harness.resolve, 8786)
    port = await forward.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"drop")
        await writer.drain()
        assert await reader.read() == b""  # EOF: the forward closed this connection
        writer.close()
        await writer.wait_closed()
        assert await _roundtrip(port, b"again") == b"pod-b:again"
    finally:
        await forward.stop()
    assert harness.streams[0].closed


async def test_error_channel_closes_the_connection() -> None:
    harness = Harness(error=b"error forwarding port 8786: connection refused")
    forward = PortForward(harness.open, harness.resolve, 8786)
    port = await forward.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
    finally:
        await forward.stop()


async def test_failing_opener_closes_the_connection_only() -> None:
    calls = 0

    async def resolve() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("no scheduler pod")
        return "pod-a"

    harness = Harness()
    forward = PortForward(harness.open, resolve, 8786)
    port = await forward.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        assert await _roundtrip(port, b"ok") == b"pod-a:ok"
    finally:
        await forward.stop()


async def test_fixed_local_port_and_stop_frees_it() -> None:
    harness = Harness()
    probe = PortForward(harness.open, harness.resolve, 8786)
    free = await probe.start()
    await probe.stop()
    forward = PortForward(harness.open, harness.resolve, 8786, local_port=free)
    assert await forward.start() == free
    await forward.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", free)
