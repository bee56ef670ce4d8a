"""Scheduler preload of the Dask Kubernetes operator: the demand for workers, by resource.

The operator puts this module's *source text* into every scheduler pod it creates (environment
variable ``DASK_DISTRIBUTED__SCHEDULER__PRELOAD``; distributed runs a preload given as text), so
it works with any image that has ``distributed``, without installing anything of ours. It adds
one read-only call, over RPC (``dask_operator_demand``) and HTTP (``GET
/dask-operator/v1/demand``): the tasks waiting for a worker and the tasks on each worker, counted
by the resources they request (``resources={"GPU": 1}``), with their expected run time. The
operator sizes each worker group from it (``dask_controller.demand``).

This file must stay standalone: it may import only the standard library, tornado, dask and
distributed, and it reads only scheduler attributes distributed has had for years.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable
from typing import Any

#: Format of the answer; the operator ignores answers of another version.
VERSION = 1
#: At most this many tasks are looked at per queue (the waiting ones, and each worker's); the
#: counts beyond are extrapolated, so a call stays cheap with a million tasks.
SCAN = 10_000
OP = "dask_operator_demand"
ROUTE = "/dask-operator/v1/demand"
#: distributed's own fallback for a task prefix with no recorded duration.
UNKNOWN_DURATION = 0.5

logger = logging.getLogger("distributed.preloading.dask_operator")


def _duration(scheduler: Any, ts: Any) -> float:
    try:
        return float(scheduler._get_prefix_duration(ts.prefix))
    except Exception:  # an older or newer distributed: a rough figure is enough
        return UNKNOWN_DURATION


def _summarise(scheduler: Any, tasks: Iterable[Any], total: int) -> list[dict[str, Any]]:
    """``tasks`` counted by the resources they request: tasks and expected seconds of each."""
    by_request: dict[tuple[tuple[str, float], ...], list[float]] = {}
    seen = 0
    for ts in itertools.islice(tasks, SCAN):
        seen += 1
        request = tuple(sorted((ts.resource_restrictions or {}).items()))
        entry = by_request.setdefault(request, [0.0, 0.0])
        entry[0] += 1
        entry[1] += _duration(scheduler, ts)
    scale = total / seen if seen else 0.0
    return [
        {"resources": dict(request), "tasks": round(n * scale), "seconds": s * scale}
        for request, (n, s) in by_request.items()
    ]


def demand(scheduler: Any) -> dict[str, Any]:
    """What the scheduler has to do, and who is doing it (JSON-ready)."""
    import dask
    from dask.utils import parse_timedelta

    queued = getattr(scheduler, "queued", ())
    unrunnable = getattr(scheduler, "unrunnable", {})
    waiting = _summarise(
        scheduler, itertools.chain(queued, unrunnable), len(queued) + len(unrunnable)
    )
    workers = [
        {
            "name": str(ws.name),
            "nthreads": int(ws.nthreads),
            "resources": dict(ws.resources or {}),
            "memoryLimit": int(ws.memory_limit or 0),
            "memory": int(ws.nbytes or 0),
            "processing": _summarise(scheduler, iter(ws.processing), len(ws.processing)),
        }
        for ws in list(scheduler.workers.values())
    ]
    target = dask.config.get("distributed.adaptive.target-duration")
    return {
        "version": VERSION,
        "targetDuration": float(parse_timedelta(target)),
        "waiting": waiting,
        "workers": workers,
    }


def answer(scheduler: Any) -> dict[str, Any]:
    """:func:`demand`, or an ``error`` the operator reports (falling back to the scheduler's
    whole-cluster target) should this distributed differ from what the summary expects."""
    try:
        return demand(scheduler)
    except Exception as exc:
        logger.warning("dask-operator demand summary failed", exc_info=True)
        return {"version": VERSION, "error": f"{type(exc).__name__}: {exc}"}


def dask_setup(scheduler: Any) -> None:
    """Register the call with the scheduler (distributed runs this at scheduler start).

    Never raises: a scheduler must start even where this preload cannot serve.
    """

    def dask_operator_demand() -> dict[str, Any]:
        return answer(scheduler)

    try:
        scheduler.handlers[OP] = dask_operator_demand
        app = getattr(scheduler, "http_application", None)
        if app is None:  # no HTTP server: RPC only
            return
        from tornado import web

        class DemandHandler(web.RequestHandler):
            def get(self) -> None:
                self.set_header("Content-Type", "application/json")
                self.write(json.dumps(answer(scheduler)))

        app.add_handlers(r".*$", [(ROUTE, DemandHandler)])
    except Exception:
        logger.warning("dask-operator demand summary not served", exc_info=True)
