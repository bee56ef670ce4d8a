"""Level-triggered reconciliation of DaskAutoscaler.

Each pass asks the cluster's scheduler for its adaptive target (the number of workers it would
like), clamps it to ``[minimum, maximum]``, stabilises it over time and writes the result into
the target DaskWorkerGroup's ``spec.worker.replicas``; the worker group's own reconcile loop then
creates pods or retires workers through the scheduler. The autoscaler is the only writer of that
field while it exists; deleting it leaves the replicas where they are.

Stabilisation works like the Kubernetes HPA's: every pass records the (clamped) recommendation;
a scale-up goes to the *lowest* recommendation seen within the scale-up window, a scale-down to
the *highest* seen within the scale-down window, so a short burst or a short lull does not move
the group. The recommendation history is kept, as change points, in an annotation on the
autoscaler, so a controller restart does not forget it. A new autoscaler's history starts with
the group's present size, so even its first scale-down waits for the window.

When the cluster's worker groups offer different Dask resources (a ``GPU`` group next to a plain
one), the scheduler's whole-cluster target would grow every group for any burst; then each
autoscaler asks the scheduler for its work by requested resource (the operator's scheduler
preload) and sizes its group by the share only that group should serve
(:mod:`dask_controller.demand`). A scheduler without the preload (started by an older operator,
or with the user's own preloads) gets the whole-cluster target, and the status says so.

Pure decision functions come first (unit-tested without a cluster); the reconcile pass follows.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dask_controller import builders as b
from dask_controller import decisions as d
from dask_controller import demand as dm
from dask_controller.k8s import KubeApi, Obj
from dask_controller.reconcile import (
    Event,
    Outcome,
    SchedulerFactory,
    validate_spec,
    write_status,
)
from dask_controller.scheduler import DemandUnavailable, SchedulerClient, SchedulerUnavailable
from dask_controller.settings import Settings
from dask_crds import constants as c
from dask_crds import models, naming

logger = logging.getLogger(__name__)

#: Annotation on the DaskAutoscaler holding the recommendation history (JSON change points).
HISTORY_ANNOTATION = "kubernetes.dask.org/autoscaler-recommendations"
#: Most change points kept (the oldest go first); bounds the annotation's size.
MAX_HISTORY = 64

#: ``[(since, recommendation), ...]``, oldest first; each value holds until the next entry.
History = list[tuple[float, int]]


# -- pure decisions --------------------------------------------------------------------------


def parse_history(raw: str | None) -> History:
    """The history stored in the annotation; an unreadable one counts as empty."""
    if not raw:
        return []
    try:
        data = json.loads(raw)
        return [(float(t), int(v)) for t, v in data]
    except (ValueError, TypeError):
        logger.warning("ignoring unreadable %s annotation: %r", HISTORY_ANNOTATION, raw[:100])
        return []


def dump_history(history: Sequence[tuple[float, int]]) -> str:
    return json.dumps([[round(t, 1), v] for t, v in history], separators=(",", ":"))


def record(history: Sequence[tuple[float, int]], now: float, value: int, keep: float) -> History:
    """``history`` with ``value`` recommended at ``now``: a new change point only when the
    value differs from the last one; points older than ``keep`` seconds (whose successor
    started before ``now - keep``) are dropped."""
    out = list(history)
    if not out or out[-1][1] != value:
        out.append((now, value))
    pruned = [
        entry for i, entry in enumerate(out) if i == len(out) - 1 or out[i + 1][0] > now - keep
    ]
    return pruned[-MAX_HISTORY:]


def window_values(history: Sequence[tuple[float, int]], now: float, window: float) -> list[int]:
    """The recommendations in force at some time within the last ``window`` seconds."""
    out: list[int] = []
    for i, (_, value) in enumerate(history):
        until = history[i + 1][0] if i + 1 < len(history) else float("inf")
        if until > now - window:
            out.append(value)
    return out


@dataclass(frozen=True)
class Decision:
    """What the autoscaler decided in one pass."""

    decision: models.AutoscalerDecision
    replicas: int
    reason: str


def decide(
    current: int,
    recommended: int,
    minimum: int,
    maximum: int,
    history: Sequence[tuple[float, int]],
    now: float,
    up_window: float,
    down_window: float,
    starting: int = 0,
    wanted: str | None = None,
) -> Decision:
    """The replicas the target group should have.

    ``recommended`` is the scheduler's raw target; ``history`` already includes the clamped
    recommendation of this pass. ``starting`` counts the group's workers that are still
    starting (created, not yet Ready, not failing): no scale-down while there are any.
    ``wanted`` says where ``recommended`` comes from (default: the scheduler's target).
    The bounds are hard: a group outside ``[minimum, maximum]`` is brought inside at once.
    """
    target = max(minimum, min(maximum, recommended))
    if current < minimum:
        return Decision("ScaleUp", minimum, f"{current} worker(s) is below the minimum {minimum}")
    if current > maximum:
        return Decision("ScaleDown", maximum, f"{current} worker(s) is above the maximum {maximum}")
    wanted = wanted or f"the scheduler wants {recommended} worker(s)"
    if target != recommended:
        wanted += f", {target} within [{minimum}, {maximum}]"
    ups = window_values(history, now, up_window) or [target]
    downs = window_values(history, now, down_window) or [target]
    up_to, down_to = min(ups), max(downs)
    if up_to > current:
        how = f" (lowest over the last {up_window:g}s)" if up_to != target else ""
        return Decision("ScaleUp", up_to, f"{wanted}; scaling up to {up_to}{how}")
    if down_to < current:
        if starting:
            return Decision(
                "NoChange",
                current,
                f"{wanted}; no scale-down while {starting} worker(s) are still starting",
            )
        how = f" (highest over the last {down_window:g}s)" if down_to != target else ""
        return Decision("ScaleDown", down_to, f"{wanted}; scaling down to {down_to}{how}")
    if target > current:
        why = f"held by the {up_window:g}s scale-up stabilisation window"
    elif target < current:
        why = f"held by the {down_window:g}s scale-down stabilisation window"
    else:
        why = "the group has that many"
    return Decision("NoChange", current, f"{wanted}; {why}")


def starting_workers(pods: Sequence[d.PodView]) -> int:
    """Worker pods that are on their way to Ready: not Ready, not terminating or finished, and
    not stuck on a failure (an Unschedulable or crash-looping pod will not become Ready by
    waiting, so it does not block a scale-down)."""
    return sum(
        1
        for p in pods
        if not p.ready
        and not p.terminating
        and not p.finished
        and (p.reason is None or p.reason not in d.FAILURE_REASONS)
    )


# -- the reconcile pass ----------------------------------------------------------------------

#: Monotonic time of the last scheduler poll per autoscaler: the pass's own writes (status,
#: history annotation) wake the loop again, and those wake-ups must not become extra polls.
_last_poll: dict[tuple[str, str, str], float] = {}
#: An entry not refreshed for this long (seconds, or 20 poll intervals if longer) belongs to an
#: autoscaler that went away unseen (deleted while the operator was down): it is dropped.
STALE_POLL = 600.0


def _forget_stale_polls(now: float, interval: float) -> None:
    cutoff = now - max(STALE_POLL, 20 * interval)
    for key in [k for k, t in _last_poll.items() if t < cutoff]:
        del _last_poll[key]


#: Scheduler pods (by uid) found without the operator's preload: not asked again, since only a
#: new scheduler pod can gain it (and asking one without it over RPC fills its log). Bounded.
_without_preload: dict[str, str] = {}
MAX_WITHOUT_PRELOAD = 256


def _remember_without_preload(uid: str, why: str) -> None:
    _without_preload[uid] = why
    while len(_without_preload) > MAX_WITHOUT_PRELOAD:
        del _without_preload[next(iter(_without_preload))]


@dataclass(frozen=True)
class Recommendation:
    """The raw worker count for the group, and how it was arrived at."""

    workers: int
    demand: models.AutoscalerDemand
    wanted: str


async def _shapes(kube: KubeApi, ns: str, cluster: str) -> list[dm.GroupShape]:
    """The shapes of the cluster's live worker groups."""
    groups = await kube.list_custom("DaskWorkerGroup", ns, {})
    return [
        dm.group_shape(g["metadata"]["name"], (g.get("spec") or {}).get("worker"))
        for g in groups
        if (g.get("spec") or {}).get("cluster") == cluster
        and not g["metadata"].get("deletionTimestamp")
    ]


def _fallback_note(why: str, permanent: bool) -> str:
    """Why groups that offer different resources get the whole-cluster target this time."""
    if permanent:
        return (
            " for the whole cluster (its worker groups offer different resources, but the "
            f"scheduler pod does not serve per-group demand: {why}; recreate it with this "
            "operator release to size each group by its own work)"
        )
    return (
        " for the whole cluster (its worker groups offer different resources, but per-group "
        f"demand failed this time: {why})"
    )


async def _recommend(
    kube: KubeApi,
    sched: SchedulerClient,
    ns: str,
    cluster: str,
    group: str,
    scheduler_uid: str,
    pod_groups: Mapping[str, str],
) -> Recommendation:
    """Per-group demand when the groups differ and the scheduler serves it; else the
    scheduler's whole-cluster adaptive target. ``pod_groups``: worker pod name -> group."""
    shapes = await _shapes(kube, ns, cluster)
    note = ""
    if dm.differ(shapes):
        known_missing = _without_preload.get(scheduler_uid)
        if known_missing is not None:
            note = _fallback_note(known_missing, permanent=True)
        else:
            try:
                snapshot = await sched.demand()
            except DemandUnavailable as exc:
                if exc.permanent:
                    _remember_without_preload(scheduler_uid, str(exc))
                note = _fallback_note(str(exc), exc.permanent)
            else:
                group_of = dm.group_of_pods(pod_groups)
                need = dm.group_demand(snapshot, shapes, group, group_of)
                return Recommendation(need.workers, "WorkerGroup", need.describe())
    workers = await sched.adaptive_target()
    return Recommendation(workers, "Cluster", f"the scheduler wants {workers} worker(s){note}")


def _now_iso(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _default_scheduler(addr: str, url: str | None, timeout: float) -> SchedulerClient:
    return SchedulerClient(addr, url, timeout=timeout)


def _validate(autoscaler: Mapping[str, Any]) -> tuple[models.DaskAutoscalerSpec | None, str]:
    invalid = validate_spec("DaskAutoscaler", autoscaler)
    if invalid:
        return None, invalid
    return models.DaskAutoscalerSpec.model_validate(autoscaler["spec"]), ""


async def reconcile_autoscaler(
    kube: KubeApi,
    settings: Settings,
    autoscaler: Obj,
    scheduler_factory: SchedulerFactory = _default_scheduler,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Size the target worker group from the scheduler's adaptive target."""
    interval = settings.scheduler_poll_interval
    out = Outcome(requeue_after=interval)
    meta = autoscaler["metadata"]
    name, ns = meta["name"], meta["namespace"]
    generation = meta.get("generation")
    old = autoscaler.get("status") or {}
    key = (ns, name, str(meta.get("uid")))
    if meta.get("deletionTimestamp"):
        _last_poll.pop(key, None)
        return Outcome()  # being deleted: the group keeps its replicas

    # A pass woken by its own write comes too soon: wait for the poll interval, unless the
    # spec changed (then act at once).
    last = _last_poll.get(key)
    since = monotonic() - last if last is not None else None
    if since is not None and since < interval * 0.8 and old.get("observedGeneration") == generation:
        out.requeue_after = interval - since
        return out
    _last_poll[key] = monotonic()
    _forget_stale_polls(_last_poll[key], interval)

    now = clock()
    now_iso = _now_iso(now)
    conds: list[d.Condition] = []
    status: dict[str, Any] = {"observedGeneration": generation}

    async def finish(cond: d.Condition | None = None) -> Outcome:
        if cond is not None:
            conds.append(cond)
            if cond.status == "False":
                out.events.append(Event("Warning", cond.reason, cond.message))
        status["conditions"] = d.merge_conditions(old.get("conditions"), conds, now_iso, generation)
        out.status = status
        await write_status(kube, "DaskAutoscaler", autoscaler, status)
        return out

    spec, invalid = _validate(autoscaler)
    if spec is None:
        return await finish(d.Condition("SpecValid", "False", "InvalidSpec", invalid))
    conds.append(d.Condition("SpecValid", "True", "SpecValid"))
    group_name = spec.target_worker_group()
    status["workerGroup"] = group_name

    cluster = await kube.get_custom("DaskCluster", ns, spec.cluster)
    if cluster is None:
        msg = f"DaskCluster {spec.cluster!r} not found in namespace {ns}"
        return await finish(d.Condition("ClusterFound", "False", "ClusterNotFound", msg))
    conds.append(d.Condition("ClusterFound", "True", "ClusterFound"))
    # The autoscaler lives as long as its cluster (garbage-collected with it).
    owners = meta.get("ownerReferences") or []
    if not any(o.get("controller") for o in owners):
        ref = b.owner_reference(cluster)
        await kube.patch_custom(
            "DaskAutoscaler", ns, name, {"metadata": {"ownerReferences": [*owners, ref]}}
        )

    group = await kube.get_custom("DaskWorkerGroup", ns, group_name)
    group_cluster = ((group or {}).get("spec") or {}).get("cluster")
    if group is None or group_cluster != spec.cluster:
        msg = (
            f"DaskWorkerGroup {group_name!r} not found in namespace {ns}"
            if group is None
            else f"DaskWorkerGroup {group_name!r} belongs to cluster {group_cluster!r}, "
            f"not {spec.cluster!r}"
        )
        reason = "WorkerGroupNotFound" if group is None else "WorkerGroupNotInCluster"
        return await finish(d.Condition("WorkerGroupFound", "False", reason, msg))
    conds.append(d.Condition("WorkerGroupFound", "True", "WorkerGroupFound"))
    current = b.desired_replicas((group.get("spec") or {}).get("worker"))

    if b.suspended(cluster):
        msg = f"DaskCluster {spec.cluster!r} is suspended; no change"
        return await finish(d.Condition("SchedulerReachable", "Unknown", "ClusterSuspended", msg))

    # Ask the scheduler; when it cannot answer, change nothing.
    sched_pod = await kube.get_pod(ns, naming.scheduler_name(spec.cluster))
    sched_view = d.pod_view(sched_pod) if sched_pod is not None else None
    if sched_view is None or sched_view.phase != "Running" or sched_view.terminating:
        why = "no scheduler pod"
        if sched_view is not None:
            state = "terminating" if sched_view.terminating else sched_view.phase
            why = f"the scheduler pod is {state}"
        return await finish(
            d.Condition("SchedulerReachable", "False", "SchedulerNotRunning", f"{why}; no change")
        )
    service = await kube.get_service(ns, naming.scheduler_name(spec.cluster))
    service_spec = (service or {}).get("spec") or b.service_spec(cluster)
    ctl_addr, http_url = b.controller_scheduler_endpoints(
        spec.cluster, ns, service_spec, settings.cluster_domain
    )
    sched_uid = str((sched_pod or {}).get("metadata", {}).get("uid"))
    # The cluster's worker pods, once: who belongs to which group, and which are starting.
    pods = await kube.list_pods(ns, {c.LABEL_CLUSTER: spec.cluster, c.LABEL_COMPONENT: "worker"})
    pod_groups = {
        p["metadata"]["name"]: (p["metadata"].get("labels") or {}).get(c.LABEL_WORKER_GROUP, "")
        for p in pods
    }
    try:
        async with scheduler_factory(ctl_addr, http_url, settings.scheduler_timeout) as sched:
            rec = await _recommend(kube, sched, ns, spec.cluster, group_name, sched_uid, pod_groups)
    except SchedulerUnavailable as exc:
        return await finish(
            d.Condition("SchedulerReachable", "False", "SchedulerUnreachable", f"{exc}; no change")
        )
    conds.append(d.Condition("SchedulerReachable", "True", "SchedulerReachable"))

    # Stabilise and decide.
    ann = meta.get("annotations") or {}
    raw_history = ann.get(HISTORY_ANNOTATION)
    keep = max(spec.scale_up_window(), spec.scale_down_window())
    history = parse_history(raw_history)
    if not history:
        # A new autoscaler starts from the group's present size, so its first scale-down also
        # waits for the window (like the HPA).
        history = [(now, current)]
    recommended = rec.workers
    history = record(history, now, spec.clamp(recommended), keep)
    starting = starting_workers(
        [d.pod_view(p) for p in pods if pod_groups[p["metadata"]["name"]] == group_name]
    )
    decision = decide(
        current,
        recommended,
        spec.minimum,
        spec.maximum,
        history,
        now,
        spec.scale_up_window(),
        spec.scale_down_window(),
        starting,
        rec.wanted,
    )

    if decision.replicas != current:
        patched = await kube.patch_custom(
            "DaskWorkerGroup",
            ns,
            group_name,
            {"spec": {"worker": {"replicas": decision.replicas}}},
        )
        if patched:
            out.events.append(
                Event(
                    "Normal",
                    decision.decision,
                    f"{group_name}: {current} -> {decision.replicas} worker(s): {decision.reason}",
                )
            )
    new_history = dump_history(history)
    if new_history != raw_history:
        await kube.patch_custom(
            "DaskAutoscaler",
            ns,
            name,
            {"metadata": {"annotations": {HISTORY_ANNOTATION: new_history}}},
        )

    same = (old.get("lastDecision"), old.get("lastDecisionReason")) == (
        decision.decision,
        decision.reason,
    )
    status.update(
        {
            "desiredReplicas": decision.replicas,
            "recommendedReplicas": recommended,
            "demand": rec.demand,
            "lastDecision": decision.decision,
            "lastDecisionReason": decision.reason,
            "lastDecisionTime": (old.get("lastDecisionTime") if same else None) or now_iso,
        }
    )
    return await finish()
