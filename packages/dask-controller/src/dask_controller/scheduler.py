"""The one adapter between the operator and a Dask scheduler.

Two transports, tried in order:

1. the scheduler's HTTP API (``/api/v1/...`` on the dashboard port, served when the scheduler's
   ``distributed.scheduler.http.routes`` include ``distributed.http.scheduler.api``; the
   operator's builders inject that into every scheduler pod);
2. the ``distributed`` RPC over the scheduler's comm address, for schedulers without the HTTP
   API (404 on ``/api/v1``, dashboard disabled) or for calls the HTTP API cannot answer
   (``workers_to_close``: ranking the workers that are cheapest to retire).

Every call has a timeout. Every failure to reach or use the scheduler surfaces as
:class:`SchedulerUnavailable` (a :class:`SchedulerError`); nothing else escapes, so callers can
hold off anything destructive and report a condition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiohttp

from dask_controller import scheduler_preload
from dask_controller.demand import Snapshot, parse_snapshot

logger = logging.getLogger(__name__)

T = TypeVar("T")
Transport = Literal["http", "rpc"]


class SchedulerError(Exception):
    """A call to a Dask scheduler did not give an answer the operator can act on."""


class SchedulerUnavailable(SchedulerError):
    """The scheduler could not be reached (or answered an error) over every transport."""


class DemandUnavailable(SchedulerError):
    """The scheduler did not answer the operator's demand call usefully.

    ``permanent``: it never will — it was started without this operator's preload (by another
    operator release, or with the user's own preload setting); else the failure may pass.
    """

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


class _NoHttpApi(Exception):
    """The HTTP API is not served by this scheduler (or not for this route)."""


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as the scheduler knows it: its name (the pod name, via ``DASK_WORKER_NAME``)
    and its comm address."""

    name: str
    address: str


@dataclass(frozen=True)
class RetireResult:
    """Workers the scheduler retired (their data moved elsewhere), by name."""

    retired: tuple[str, ...]
    via: Transport


def _http_base(url: str | None) -> str | None:
    return url.rstrip("/") if url else None


class SchedulerClient:
    """Talks to one scheduler. Use as ``async with SchedulerClient(...) as s:``.

    ``comm_address`` is the ``tcp://host:port`` address for RPC; ``http_url`` the base URL of
    the scheduler's HTTP server (``http://host:8787``) or ``None`` when there is none.
    """

    def __init__(
        self,
        comm_address: str,
        http_url: str | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.comm_address = comm_address
        self.http_url = _http_base(http_url)
        self.timeout = timeout
        # None: not probed yet; True/False once a call told us.
        self.http_api: bool | None = None if self.http_url else False
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SchedulerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transports --------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _http_call(self, method: str, path: str, payload: Any = None) -> Any:
        """One HTTP API call; ``_NoHttpApi`` when the route is not served."""
        assert self.http_url is not None
        session = self._http()
        async with session.request(method, f"{self.http_url}{path}", json=payload) as resp:
            if resp.status in (404, 405):
                raise _NoHttpApi(f"{method} {path}: HTTP {resp.status}")
            if resp.status >= 400:
                text = await resp.text()
                raise SchedulerUnavailable(
                    f"scheduler HTTP API {method} {path} answered {resp.status}: {text[:200]}"
                )
            return await resp.json(content_type=None)

    async def _rpc_call(self, op: str, **kwargs: Any) -> Any:
        from distributed.core import rpc

        rpc_: Any = rpc  # untyped in distributed
        async with rpc_(self.comm_address, timeout=self.timeout) as remote:
            method: Callable[..., Awaitable[Any]] = getattr(remote, op)
            return await asyncio.wait_for(method(**kwargs), self.timeout)

    async def _call(
        self,
        what: str,
        http: Callable[[], Awaitable[T]] | None,
        rpc: Callable[[], Awaitable[T]] | None,
    ) -> tuple[T, Transport]:
        """HTTP first (unless known absent), then RPC; every failure becomes typed."""
        errors: list[str] = []
        if http is not None and self.http_url is not None and self.http_api is not False:
            try:
                result = await asyncio.wait_for(http(), self.timeout)
            except _NoHttpApi as exc:
                logger.debug("scheduler HTTP API absent (%s); using RPC", exc)
                self.http_api = False
            except SchedulerUnavailable as exc:
                errors.append(str(exc))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                errors.append(f"HTTP {self.http_url}: {type(exc).__name__}: {exc}")
            else:
                self.http_api = True
                return result, "http"
        if rpc is not None:
            try:
                return await rpc(), "rpc"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # distributed raises many kinds; none may leak
                errors.append(f"RPC {self.comm_address}: {type(exc).__name__}: {exc}")
        if not errors:
            errors.append("no transport can answer this call")
        raise SchedulerUnavailable(f"{what}: " + "; ".join(errors))

    # -- public calls ------------------------------------------------------------------------

    async def get_workers(self) -> list[WorkerInfo]:
        """Every worker connected to the scheduler."""

        async def http() -> list[WorkerInfo]:
            body = await self._http_call("GET", "/api/v1/get_workers")
            return [WorkerInfo(str(w["name"]), str(w["address"])) for w in body["workers"]]

        async def rpc() -> list[WorkerInfo]:
            ident = await self._rpc_call("identity")
            workers: Mapping[str, Mapping[str, Any]] = ident.get("workers", {})
            return [WorkerInfo(str(info.get("name", addr)), addr) for addr, info in workers.items()]

        result, _ = await self._call("get_workers", http, rpc)
        return result

    async def workers_to_close(self, n: int, among: Collection[str]) -> list[str] | None:
        """Up to ``n`` names out of ``among`` that the scheduler finds cheapest to retire.

        The scheduler ranks *all* its workers (idle ones first, then by least data held); the
        ranking is filtered to ``among`` so that another group's workers are never chosen.
        Returns ``None`` when the scheduler cannot rank (no RPC): the caller picks itself and
        still retires through the scheduler.
        """
        if n <= 0:
            return []
        wanted = set(among)

        async def rpc() -> list[str]:
            ident = await self._rpc_call("identity", n_workers=0)
            total = int(ident.get("n_workers", 0))
            ranked = await self._rpc_call("workers_to_close", n=total, attribute="name")
            return [str(name) for name in ranked if str(name) in wanted]

        try:
            ranked, _ = await self._call("workers_to_close", None, rpc)
        except SchedulerUnavailable as exc:
            logger.info("scheduler cannot rank workers to close: %s", exc)
            return None
        return ranked[:n]

    async def retire_workers(self, names: Sequence[str]) -> RetireResult:
        """Gracefully retire the named workers; their data is moved to other workers first.

        Only workers in the returned ``retired`` may be deleted: the scheduler leaves out a worker
        whose data could not be moved.
        """
        if not names:
            return RetireResult((), "http" if self.http_api else "rpc")
        wanted = {str(n) for n in names}

        async def http() -> tuple[str, ...]:
            workers = await self._http_get_workers_raw()
            addresses = [w.address for w in workers if w.name in wanted]
            if not addresses:
                return ()
            body = await self._http_call("POST", "/api/v1/retire_workers", {"workers": addresses})
            return _retired_names(body, workers)

        async def rpc() -> tuple[str, ...]:
            body = await self._rpc_call(
                "retire_workers", names=sorted(wanted), close_workers=True, remove=True
            )
            return _retired_names(body, [])

        retired, via = await self._call("retire_workers", http, rpc)
        return RetireResult(tuple(n for n in retired if n in wanted), via)

    async def adaptive_target(self) -> int:
        """The number of workers the scheduler would like (adaptive scaling)."""

        async def http() -> int:
            body = await self._http_call("GET", "/api/v1/adaptive_target")
            return int(body["workers"])

        async def rpc() -> int:
            return int(await self._rpc_call("adaptive_target"))

        result, _ = await self._call("adaptive_target", http, rpc)
        return result

    async def check_idle(self) -> float | None:
        """Since when the scheduler has had no work (its own clock, seconds since the epoch),
        or ``None`` while it is busy.

        The scheduler decides (``Scheduler.check_idle``): it is busy while any task is
        processing, queued or unrunnable, while a graph is being submitted, or when any task
        changed state since the previous check. Results merely held in memory, and connected
        clients, do not count as work.
        """

        async def http() -> float | None:
            body = await self._http_call("GET", "/api/v1/check_idle")
            value = body.get("idle_since") if isinstance(body, Mapping) else None
            return None if value is None else float(value)

        async def rpc() -> float | None:
            value = await self._rpc_call("check_idle")
            return None if value is None else float(value)

        result, _ = await self._call("check_idle", http, rpc)
        return result

    async def demand(self) -> Snapshot:
        """The work waiting and running, by requested resources (the operator's preload).

        HTTP first; a 404 there means no preload (asking over RPC then would only put a warning
        into the scheduler's log), so RPC is tried only when HTTP cannot be reached.
        :class:`DemandUnavailable` when the scheduler does not serve the call.
        """

        async def http() -> Any:
            try:
                return await self._http_call("GET", scheduler_preload.ROUTE)
            except _NoHttpApi as exc:  # not a verdict on the rest of the HTTP API
                raise DemandUnavailable(f"demand: {exc}") from None

        async def rpc() -> Any:
            return await self._rpc_call(scheduler_preload.OP)

        body, _ = await self._call("demand", http, rpc)
        if body is None:  # distributed's answer to an unknown RPC call
            raise DemandUnavailable(f"demand: no {scheduler_preload.OP!r} handler")
        return self._snapshot(body)

    @staticmethod
    def _snapshot(body: Any) -> Snapshot:
        try:
            return parse_snapshot(body)
        except ValueError as exc:
            other_release = (
                isinstance(body, Mapping) and body.get("version") != scheduler_preload.VERSION
            )
            raise DemandUnavailable(f"demand: {exc}", permanent=other_release) from None

    async def _http_get_workers_raw(self) -> list[WorkerInfo]:
        body = await self._http_call("GET", "/api/v1/get_workers")
        return [WorkerInfo(str(w["name"]), str(w["address"])) for w in body["workers"]]


def _retired_names(body: Mapping[str, Any], known: Sequence[WorkerInfo]) -> tuple[str, ...]:
    """Names out of a ``retire_workers`` answer (address -> worker info)."""
    by_address = {w.address: w.name for w in known}
    names: list[str] = []
    for address, info in body.items():
        name = info.get("name") if isinstance(info, Mapping) else None
        if name is None:
            name = by_address.get(address)
        if name is not None:
            names.append(str(name))
    return tuple(names)
