"""Idle shutdown: ``spec.idleTimeout`` on a DaskCluster.

What "idle" means is the scheduler's own definition (``Scheduler.check_idle``, the same the
reference operator asks for): no task processing, queued or unrunnable, no graph being
submitted, and no task changing state since the previous check. Results held in memory and
connected clients are *not* work: a cluster that only holds persisted data is idle.

A pass of the DaskCluster loop asks the scheduler (HTTP ``/api/v1/check_idle``, RPC
``check_idle`` as fallback) and records ``status.idleSince``. Once the cluster has been idle for
longer than the timeout, one pass marks the ``Idle`` condition ``IdleTimeoutExceeded`` and posts a
Warning Event; the next pass, if the cluster is still idle, takes ``spec.idleAction``: ``Delete``
(the default) deletes the DaskCluster (its children go by garbage collection), ``Suspend`` sets
``spec.suspend`` (its pods go, the resources stay). A scheduler that cannot be asked never leads
to either.

Only :func:`decide` is logic; :func:`check` gathers the observation.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dask_controller import builders as b
from dask_controller.decisions import Condition
from dask_controller.scheduler import SchedulerClient, SchedulerUnavailable

logger = logging.getLogger(__name__)

CONDITION = "Idle"
EXCEEDED = "IdleTimeoutExceeded"

Action = Literal["none", "warn", "delete", "suspend"]


@dataclass(frozen=True)
class IdleDecision:
    #: ``status.idleSince`` to write (RFC 3339), ``None`` when busy or unknown-and-never-idle.
    idle_since: str | None
    condition: Condition
    action: Action = "none"
    #: seconds until the timeout is reached (for an earlier next pass), if it is counting down.
    remaining: float | None = None


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(
    timeout: int,
    idle_since: float | None,
    reachable: bool,
    now: float,
    old_status: Mapping[str, Any],
    error: str = "",
    idle_action: str = "Delete",
) -> IdleDecision:
    """What to do about an idle cluster.

    ``idle_since`` is the scheduler's answer (its clock, seconds since the epoch; ``None``:
    busy). ``reachable`` is False when the scheduler could not be asked: then nothing is
    deleted and the previous ``idleSince`` is kept. The action (``idle_action``: ``Delete`` or
    ``Suspend``) happens only on a pass after the one that warned (its condition says
    ``IdleTimeoutExceeded``), so the Event comes first.
    """
    suspend = idle_action == "Suspend"
    verb = ("suspended", "suspending") if suspend else ("deleted", "deleting")
    previous = old_status.get("idleSince")
    if not reachable:
        cond = Condition(CONDITION, "Unknown", "SchedulerUnreachable", f"{error}; not {verb[1]}")
        return IdleDecision(previous if isinstance(previous, str) else None, cond)
    if idle_since is None:
        return IdleDecision(None, Condition(CONDITION, "False", "Busy", "the scheduler has work"))
    since = min(idle_since, now)  # a scheduler clock ahead of ours never shortens the timeout
    idle_for = now - since
    if idle_for <= timeout:
        # stable while idle: a message that changed every pass would rewrite the status
        msg = f"idle since {_iso(since)}; {verb[0]} after {timeout}s idle"
        return IdleDecision(
            _iso(since), Condition(CONDITION, "True", "Idle", msg), remaining=timeout - idle_for
        )
    msg = (
        f"idle since {_iso(since)}, longer than the {timeout}s idle timeout; {verb[1]} the cluster"
    )
    cond = Condition(CONDITION, "True", EXCEEDED, msg)
    warned = any(
        c.get("type") == CONDITION and c.get("reason") == EXCEEDED
        for c in old_status.get("conditions") or []
    )
    return IdleDecision(
        _iso(since), cond, ("suspend" if suspend else "delete") if warned else "warn"
    )


async def ask_scheduler(
    cluster: Mapping[str, Any],
    service_spec: Mapping[str, Any],
    cluster_domain: str,
    timeout: float,
) -> tuple[bool, float | None, str]:
    """(reachable, idle_since, error) from the cluster's scheduler."""
    meta = cluster["metadata"]
    addr, url = b.controller_scheduler_endpoints(
        meta["name"], meta["namespace"], service_spec, cluster_domain
    )
    try:
        async with SchedulerClient(addr, url, timeout=timeout) as sched:
            return True, await sched.check_idle(), ""
    except SchedulerUnavailable as exc:
        return False, None, str(exc)
