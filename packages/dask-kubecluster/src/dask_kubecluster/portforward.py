"""Port-forward through the Kubernetes API, without a kubectl binary.

A :class:`PortForward` listens on ``127.0.0.1`` and, for every accepted TCP connection, looks up
the target pod afresh and opens a new websocket port-forward stream to it
(``pods/portforward``, subprotocol ``v4.channel.k8s.io``). One broken stream or a replaced
scheduler pod therefore costs one connection, never the forward: Dask's comms reconnect and get a
new stream.

Wire format (binary frames): the first byte is the channel, ``0`` data and ``1`` errors for the
first (only) port; the first frame of each channel from the server carries the port number as
two little-endian bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

DATA_CHANNEL = 0
ERROR_CHANNEL = 1
_READ_SIZE = 64 * 1024

#: ``(pod_name) -> websocket context manager`` opening a forward to the remote port.
Opener = Callable[[str], Awaitable[Any]]
#: Returns the name of the pod to forward to (looked up per connection).
PodResolver = Callable[[], Awaitable[str]]


class PortForwardError(ConnectionError):
    """The Kubernetes API reported an error on the port-forward error channel."""


class FrameDecoder:
    """Split server frames into data and errors, dropping each channel's port-number header."""

    def __init__(self) -> None:
        self._seen_header: set[int] = set()

    def feed(self, frame: bytes) -> tuple[int, bytes] | None:
        """``(channel, payload)`` for a frame, or None when it held only the port header."""
        if not frame:
            return None
        channel, payload = frame[0], frame[1:]
        if channel not in self._seen_header:
            self._seen_header.add(channel)
            payload = payload[2:]
            if not payload:
                return None
        return channel, payload


def encode(data: bytes, channel: int = DATA_CHANNEL) -> bytes:
    return bytes([channel]) + data


class PortForward:
    """A local listener forwarding each connection to ``remote_port`` of a pod."""

    def __init__(
        self,
        opener: Opener,
        resolve_pod: PodResolver,
        remote_port: int,
        local_port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self._opener = opener
        self._resolve_pod = resolve_pod
        self.remote_port = remote_port
        self.host = host
        self._requested_port = local_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        try:
            pod = await self._resolve_pod()
            ws_cm = await self._opener(pod)
            async with ws_cm as ws:
                await _pump(ws, reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            logger.debug("port-forward connection to port %s ended: %r", self.remote_port, exc)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _pump(ws: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes both ways until either side closes."""

    async def upstream() -> None:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                return
            await ws.send_bytes(encode(data))

    async def downstream() -> None:
        decoder = FrameDecoder()
        async for msg in ws:
            data = msg.data
            if isinstance(data, str):
                data = data.encode()
            if not isinstance(data, bytes | bytearray):
                return  # close/error frames
            decoded = decoder.feed(bytes(data))
            if decoded is None:
                continue
            channel, payload = decoded
            if channel == DATA_CHANNEL:
                writer.write(payload)
                await writer.drain()
            elif channel == ERROR_CHANNEL and payload:
                raise PortForwardError(payload.decode(errors="replace"))

    tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
