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
#: At most this many tasks are looked at per queue (the unrunnable ones, and each worker's),
#: evenly spread over it; the counts are extrapolated, so a call stays cheap with a million
#: tasks and still sees a kind of task that only the end of a long queue holds.
SCAN = 10_000
#: Queued tasks are plain by construction (distributed queues only tasks without restrictions):
#: like ``adaptive_target``, only this many are looked at for their durations.
QUEUED_SAMPLE = 100
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


Counts = dict[tuple[tuple[str, float], ...], list[float]]


def _count(scheduler: Any, tasks: Iterable[Any], total: int, limit: int, into: Counts) -> Counts:
    """Add ``tasks`` (``total`` of them; every k-th looked at, at most ``limit``) to ``into``,
    by the resources they request: [tasks, expected seconds]."""
    found: Counts = {}
    durations: dict[int, float] = {}  # per task prefix, within this call
    seen = 0
    step = max(1, -(-total // limit))
    for ts in itertools.islice(tasks, 0, None, step):
        seen += 1
        restrictions = ts.resource_restrictions
        request = tuple(sorted(restrictions.items())) if restrictions else ()
        duration = durations.get(id(ts.prefix))
        if duration is None:
            duration = durations[id(ts.prefix)] = _duration(scheduler, ts)
        entry = found.setdefault(request, [0.0, 0.0])
        entry[0] += 1
        entry[1] += duration
    scale = total / seen if seen else 0.0
    for request, (n, seconds) in found.items():
        entry = into.setdefault(request, [0.0, 0.0])
        entry[0] += n * scale
        entry[1] += seconds * scale
    return into


def _listed(counts: Counts) -> list[dict[str, Any]]:
    return [
        {"resources": dict(request), "tasks": round(n), "seconds": seconds}
        for request, (n, seconds) in counts.items()
    ]


def demand(scheduler: Any) -> dict[str, Any]:
    """What the scheduler has to do, and who is doing it (JSON-ready)."""
    import dask
    from dask.utils import parse_timedelta

    queued = getattr(scheduler, "queued", ())
    unrunnable = getattr(scheduler, "unrunnable", {})
    waiting: Counts = {}
    _count(scheduler, iter(queued), len(queued), QUEUED_SAMPLE, waiting)
    _count(scheduler, iter(unrunnable), len(unrunnable), SCAN, waiting)
    workers = [
        {
            "name": str(ws.name),
            "nthreads": int(ws.nthreads),
            "resources": dict(ws.resources or {}),
            "memoryLimit": int(ws.memory_limit or 0),
            "memory": int(ws.nbytes or 0),
            "processing": _listed(
                _count(scheduler, iter(ws.processing), len(ws.processing), SCAN, {})
            ),
        }
        for ws in list(scheduler.workers.values())
    ]
    target = dask.config.get("distributed.adaptive.target-duration")
    return {
        "version": VERSION,
        "targetDuration": float(parse_timedelta(target)),
        "waiting": _listed(waiting),
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
