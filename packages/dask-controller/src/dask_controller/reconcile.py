"""Level-triggered reconciliation of DaskCluster and DaskWorkerGroup.

Each function reads the resource and everything it owns (found by labels, never from memory),
compares it with what the builders say should exist, carries out what :mod:`decisions` says and
writes the status. Running one twice, or after a restart half-way, converges to the same state.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from dask_controller import builders as b
from dask_controller import decisions as d
from dask_controller import idle
from dask_controller.k8s import KubeApi, Obj
from dask_controller.scheduler import SchedulerClient, SchedulerUnavailable
from dask_controller.settings import Settings
from dask_crds import constants as c
from dask_crds import labels as lbl
from dask_crds import models, naming

logger = logging.getLogger(__name__)

#: Annotations on the default DaskWorkerGroup recording what the cluster last pushed to it, so a
#: group scaled directly (``kubectl scale daskworkergroup``) is not scaled back on every pass.
PUSHED_REPLICAS_ANNOTATION = "kubernetes.dask.org/cluster-replicas"
PUSHED_SPEC_ANNOTATION = "kubernetes.dask.org/cluster-worker-spec-hash"


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What a reconcile pass did: the status it wrote and the events to post."""

    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: seconds until the next pass is useful (sooner than the resync period), if any.
    requeue_after: float | None = None
    #: (kind, name) of objects in the same namespace whose loops should run a pass now.
    kick: list[tuple[str, str]] = field(default_factory=list)


EventSink = Callable[[Obj, Event], None]
SchedulerFactory = Callable[[str, str | None, float], SchedulerClient]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_scheduler(addr: str, url: str | None, timeout: float) -> SchedulerClient:
    return SchedulerClient(addr, url, timeout=timeout)


def _meta_drift(
    live: Mapping[str, Any], built: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]] | None:
    """Labels/annotations to patch onto ``live`` so it carries everything ``built`` has."""
    want_labels, want_ann = b.propagated_metadata(built)
    meta = live.get("metadata") or {}
    have_labels = meta.get("labels") or {}
    have_ann = meta.get("annotations") or {}
    labels = {k: v for k, v in want_labels.items() if have_labels.get(k) != v}
    ann = {
        k: v
        for k, v in want_ann.items()
        if have_ann.get(k) != v and k != b.TEMPLATE_HASH_ANNOTATION
    }
    return (labels, ann) if labels or ann else None


async def write_status(kube: KubeApi, kind: str, obj: Obj, status: dict[str, Any]) -> None:
    """Patch the status subresource, unless it already says exactly this (no write, no event)."""
    old = obj.get("status") or {}
    if all(old.get(k) == v for k, v in status.items()):
        return
    meta = obj["metadata"]
    await kube.patch_custom_status(kind, meta["namespace"], meta["name"], status)


_MODELS: dict[str, type[models.DaskResource]] = {
    "DaskCluster": models.DaskCluster,
    "DaskWorkerGroup": models.DaskWorkerGroup,
    "DaskJob": models.DaskJob,
    "DaskAutoscaler": models.DaskAutoscaler,
}


def validate_spec(kind: str, obj: Mapping[str, Any]) -> str | None:
    """Problems with a resource's spec according to the dask_crds models, or ``None``.

    Only what users write is checked (name and spec); the API server owns the rest of metadata.
    """
    meta = obj.get("metadata") or {}
    envelope = {
        "apiVersion": obj.get("apiVersion", c.API_VERSION),
        "kind": kind,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": obj.get("spec"),
    }
    try:
        _MODELS[kind].model_validate(envelope)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return "; ".join(parts) + more
    return None


# -- DaskCluster -----------------------------------------------------------------------------


async def reconcile_cluster(kube: KubeApi, settings: Settings, cluster: Obj) -> Outcome:
    """Bring a DaskCluster's scheduler Pod, Service and default DaskWorkerGroup into line."""
    out = Outcome()
    meta = cluster["metadata"]
    name, ns = meta["name"], meta["namespace"]
    generation = meta.get("generation")
    old_conditions = (cluster.get("status") or {}).get("conditions")
    now = _now()

    if meta.get("deletionTimestamp"):
        return out  # being deleted: garbage collection removes the children; recreate nothing

    problems = naming.check_cluster_name(name)
    invalid = validate_spec("DaskCluster", cluster)
    if problems or invalid:
        # Refuse safely: create nothing new, touch nothing that exists, say why.
        if problems:
            cond = d.Condition("NameValid", "False", "InvalidName", "; ".join(problems))
        else:
            cond = d.Condition("SpecValid", "False", "InvalidSpec", invalid or "")
        out.status = {
            "phase": "Failed",
            "observedGeneration": generation,
            "conditions": d.merge_conditions(old_conditions, [cond], now, generation),
        }
        out.events.append(Event("Warning", cond.reason, cond.message))
        await write_status(kube, "DaskCluster", cluster, out.status)
        return out

    # Service first: its comm port goes into the pods' DASK_SCHEDULER_ADDRESS.
    want_svc = b.build_scheduler_service(cluster)
    svc = await kube.get_service(ns, want_svc["metadata"]["name"])
    if svc is None:
        if await kube.create_service(ns, want_svc):
            out.events.append(
                Event(
                    "Normal",
                    "SchedulerServiceCreated",
                    f"created Service {want_svc['metadata']['name']}",
                )
            )
    else:
        want_hash = want_svc["metadata"]["annotations"][b.TEMPLATE_HASH_ANNOTATION]
        have_hash = ((svc.get("metadata") or {}).get("annotations") or {}).get(
            b.TEMPLATE_HASH_ANNOTATION
        )
        if have_hash != want_hash:  # the service spec was edited: apply it in place
            await kube.patch_service(
                ns,
                want_svc["metadata"]["name"],
                {
                    "spec": want_svc["spec"],
                    "metadata": {"annotations": {b.TEMPLATE_HASH_ANNOTATION: want_hash}},
                },
            )
            out.events.append(
                Event("Normal", "SchedulerServiceUpdated", "applied the edited service spec")
            )
        if (drift := _meta_drift(svc, want_svc)) is not None:
            await kube.patch_service_metadata(ns, want_svc["metadata"]["name"], *drift)

    want_pod = b.build_scheduler_pod(cluster, settings.cluster_domain)
    pod_name = want_pod["metadata"]["name"]
    pod = await kube.get_pod(ns, pod_name)
    view = d.pod_view(pod) if pod is not None else None
    suspended = b.suspended(cluster)
    if suspended:
        # No pods while suspended (the worker groups stop theirs); everything else stays.
        if pod is not None and view is not None and not view.terminating:
            await kube.delete_pod(ns, pod_name, uid=(pod.get("metadata") or {}).get("uid"))
            out.events.append(
                Event("Normal", "Suspended", f"deleted Pod {pod_name}: the cluster is suspended")
            )
    elif pod is None:
        if await kube.create_pod(ns, want_pod):
            out.events.append(Event("Normal", "SchedulerPodCreated", f"created Pod {pod_name}"))
        out.requeue_after = 2.0
    elif view is not None and not view.terminating:
        want_hash = want_pod["metadata"]["annotations"][b.TEMPLATE_HASH_ANNOTATION]
        if view.template_hash != want_hash or view.finished:
            why = (
                "its template changed" if view.template_hash != want_hash else f"it is {view.phase}"
            )
            await kube.delete_pod(ns, pod_name, uid=(pod.get("metadata") or {}).get("uid"))
            out.events.append(
                Event("Normal", "SchedulerPodReplaced", f"recreating Pod {pod_name}: {why}")
            )
            out.requeue_after = 2.0
        elif (drift := _meta_drift(pod, want_pod)) is not None:
            await kube.patch_pod_metadata(ns, pod_name, *drift)
    else:
        out.requeue_after = 2.0  # terminating: recreate once it is gone

    # Default worker group: created once; afterwards the cluster pushes replicas/spec to it only
    # when the cluster's own values change (recorded in annotations on the group).
    want_group = b.build_default_worker_group(cluster)
    group_name = want_group["metadata"]["name"]
    worker = (cluster.get("spec") or {}).get("worker") or {}
    replicas = b.desired_replicas(worker)
    spec_hash = b.stable_hash(worker.get("spec"))
    group = await kube.get_custom("DaskWorkerGroup", ns, group_name)
    if group is None:
        want_group["metadata"]["annotations"].update(
            {PUSHED_REPLICAS_ANNOTATION: str(replicas), PUSHED_SPEC_ANNOTATION: spec_hash}
        )
        if await kube.create_custom("DaskWorkerGroup", ns, want_group):
            out.events.append(
                Event("Normal", "WorkerGroupCreated", f"created DaskWorkerGroup {group_name}")
            )
    else:
        ann = (group.get("metadata") or {}).get("annotations") or {}
        patch: dict[str, Any] = {}
        if ann.get(PUSHED_REPLICAS_ANNOTATION) != str(replicas):
            patch.setdefault("spec", {}).setdefault("worker", {})["replicas"] = replicas
            patch.setdefault("metadata", {}).setdefault("annotations", {})[
                PUSHED_REPLICAS_ANNOTATION
            ] = str(replicas)
            out.events.append(
                Event("Normal", "Scaling", f"scaling {group_name} to {replicas} worker(s)")
            )
        if ann.get(PUSHED_SPEC_ANNOTATION) != spec_hash:
            patch.setdefault("spec", {}).setdefault("worker", {})["spec"] = want_group["spec"][
                "worker"
            ]["spec"]
            patch.setdefault("metadata", {}).setdefault("annotations", {})[
                PUSHED_SPEC_ANNOTATION
            ] = spec_hash
            out.events.append(
                Event(
                    "Normal", "WorkerSpecUpdated", f"updating the worker template of {group_name}"
                )
            )
        if (drift := _meta_drift(group, want_group)) is not None:
            md = patch.setdefault("metadata", {})
            md.setdefault("labels", {}).update(drift[0])
            md.setdefault("annotations", {}).update(drift[1])
        if patch:
            await kube.patch_custom("DaskWorkerGroup", ns, group_name, patch)

    # Status, from what is observed.
    default_pods = await kube.list_pods(ns, b.worker_selector(name, group_name))
    views = [d.pod_view(p) for p in default_pods]
    all_workers = await kube.list_pods(ns, {c.LABEL_CLUSTER: name, c.LABEL_COMPONENT: "worker"})
    all_views = [d.pod_view(p) for p in all_workers]
    groups = [
        g
        for g in await kube.list_custom("DaskWorkerGroup", ns, {})
        if (g.get("spec") or {}).get("cluster") == name
    ]
    total_desired = sum(b.desired_replicas((g.get("spec") or {}).get("worker")) for g in groups)
    if group is None:
        total_desired += replicas
    n, ready = d.replica_counts(views)
    sched_cond = d.scheduler_ready_condition(view if pod is not None else None)
    workers_cond = d.workers_ready_condition(total_desired, all_views, "")
    if suspended:
        why = "the cluster is suspended (spec.suspend)"
        sched_cond = d.Condition("SchedulerReady", "False", "Suspended", why)
        workers_cond = d.Condition("WorkersReady", "False", "Suspended", why)
    conds = [
        d.Condition("NameValid", "True", "NameValid"),
        d.Condition("SpecValid", "True", "SpecValid"),
        sched_cond,
        workers_cond,
    ]
    old_suspended = [cd for cd in old_conditions or [] if cd.get("type") == "Suspended"]
    was_suspended = any(cd.get("status") == "True" for cd in old_suspended)
    if suspended or old_suspended:  # once suspended, the condition stays
        conds.append(
            d.Condition("Suspended", "True", "Suspended", "spec.suspend is true")
            if suspended
            else d.Condition("Suspended", "False", "Resumed", "spec.suspend is false")
        )
    if suspended != was_suspended:
        # Every group of the cluster stops (or restarts) its pods now, not at its next resync.
        out.kick = [("DaskWorkerGroup", g["metadata"]["name"]) for g in groups]
        if not suspended:
            out.events.append(Event("Normal", "Resumed", "spec.suspend is false: resuming"))
    idle_timeout = int((cluster.get("spec") or {}).get("idleTimeout") or 0)
    idle_action = str((cluster.get("spec") or {}).get("idleAction") or "Delete")
    idle_decision: idle.IdleDecision | None = None
    if idle_timeout > 0 and not suspended:
        if view is not None and view.phase == "Running" and not view.terminating:
            reachable, idle_since, error = await idle.ask_scheduler(
                cluster, (svc or want_svc)["spec"], settings.cluster_domain,
                settings.scheduler_timeout,
            )  # fmt: skip
        else:
            reachable, idle_since, error = False, None, "the scheduler pod is not running"
        idle_decision = idle.decide(
            idle_timeout, idle_since, reachable, time.time(), cluster.get("status") or {}, error,
            idle_action,
        )  # fmt: skip
        conds.append(idle_decision.condition)
    out.status = {
        "phase": "Suspended" if suspended else d.cluster_phase(view if pod is not None else None),
        "observedGeneration": generation,
        "replicas": n,
        "readyReplicas": ready,
        "selector": lbl.selector(b.worker_selector(name, group_name)),
        "conditions": d.merge_conditions(old_conditions, conds, now, generation),
        "idleSince": idle_decision.idle_since if idle_decision else None,
    }
    if sched_cond.status == "False" and sched_cond.reason in d.FAILURE_REASONS:
        out.events.append(Event("Warning", sched_cond.reason, sched_cond.message))
    if out.status["phase"] not in ("Running", "Suspended"):
        out.requeue_after = out.requeue_after or 5.0
    if idle_decision is not None:  # poll the scheduler while the timeout is set
        out.requeue_after = min(out.requeue_after or 1e9, settings.scheduler_poll_interval)
        if idle_decision.action == "warn":
            out.events.append(Event("Warning", "IdleTimeout", idle_decision.condition.message))
            out.requeue_after = 1.0
    await write_status(kube, "DaskCluster", cluster, out.status)
    action = idle_decision.action if idle_decision is not None else "none"
    if action == "delete" and await kube.delete_custom(
        "DaskCluster", ns, name, uid=meta.get("uid")
    ):
        out.events.append(
            Event("Normal", "IdleShutdown", f"deleted DaskCluster {name}: idle timeout")
        )
    elif action == "suspend" and await kube.patch_custom(
        "DaskCluster", ns, name, {"spec": {"suspend": True}}
    ):
        out.events.append(
            Event("Normal", "IdleShutdown", f"suspended DaskCluster {name}: idle timeout")
        )
    return out


# -- DaskWorkerGroup -------------------------------------------------------------------------


async def _suspend_worker_group(
    kube: KubeApi, group: Obj, selector: Mapping[str, str], out: Outcome
) -> Outcome:
    """The group's cluster is suspended: no worker pods (deleted at once, as its scheduler is
    going too); ``spec.worker.replicas`` is kept, so resuming brings them back."""
    meta = group["metadata"]
    ns, generation = meta["namespace"], meta.get("generation")
    pods = await kube.list_pods(ns, selector)
    stopping = [p for p in pods if not d.pod_view(p).terminating]
    for pod in stopping:
        await kube.delete_pod(ns, pod["metadata"]["name"], uid=pod["metadata"].get("uid"))
    if stopping:
        names = ", ".join(p["metadata"]["name"] for p in stopping)
        out.events.append(
            Event("Normal", "Suspended", f"the cluster is suspended: deleted {names}")
        )
    why = "the cluster is suspended (spec.suspend)"
    conds = [
        d.Condition("SpecValid", "True", "SpecValid"),
        d.Condition("ClusterFound", "True", "ClusterFound"),
        d.Condition("WorkersReady", "False", "Suspended", why),
    ]
    out.status = {
        "phase": "Suspended",
        "observedGeneration": generation,
        "replicas": 0,  # every pod is deleted or terminating, and those do not count
        "readyReplicas": 0,
        "selector": lbl.selector(selector),
        "conditions": d.merge_conditions(
            (group.get("status") or {}).get("conditions"), conds, _now(), generation
        ),
    }
    if pods:
        out.requeue_after = 2.0  # until the pods are gone
    await write_status(kube, "DaskWorkerGroup", group, out.status)
    return out


async def reconcile_worker_group(
    kube: KubeApi,
    settings: Settings,
    group: Obj,
    scheduler_factory: SchedulerFactory = _default_scheduler,
) -> Outcome:
    """Create, delete and retire a DaskWorkerGroup's worker pods until they match its spec."""
    out = Outcome()
    meta = group["metadata"]
    name, ns = meta["name"], meta["namespace"]
    generation = meta.get("generation")
    old_status = group.get("status") or {}
    now = _now()
    spec = group.get("spec") or {}
    cluster_name = str(spec.get("cluster") or "")
    desired = b.desired_replicas(spec.get("worker"))
    selector = b.worker_selector(cluster_name, name)

    if meta.get("deletionTimestamp"):
        return out  # being deleted: garbage collection removes the pods; recreate nothing

    invalid = validate_spec("DaskWorkerGroup", group)
    if invalid:
        cond = d.Condition("SpecValid", "False", "InvalidSpec", invalid)
        out.status = {
            "phase": "Failed",
            "observedGeneration": generation,
            "selector": lbl.selector(selector),
            "conditions": d.merge_conditions(old_status.get("conditions"), [cond], now, generation),
        }
        out.events.append(Event("Warning", cond.reason, cond.message))
        await write_status(kube, "DaskWorkerGroup", group, out.status)
        return out

    cluster = await kube.get_custom("DaskCluster", ns, cluster_name) if cluster_name else None
    if cluster is None:
        message = f"DaskCluster {cluster_name!r} not found in namespace {ns}"
        conds = [d.Condition("ClusterFound", "False", "ClusterNotFound", message)]
        out.status = {
            "phase": "Pending",
            "observedGeneration": generation,
            "selector": lbl.selector(selector),
            "conditions": d.merge_conditions(old_status.get("conditions"), conds, now, generation),
        }
        out.events.append(Event("Warning", "ClusterNotFound", message))
        out.requeue_after = 10.0
        await write_status(kube, "DaskWorkerGroup", group, out.status)
        return out

    # A user-made group joins the cluster's lifetime: the cluster becomes its owner.
    owners = meta.get("ownerReferences") or []
    if not any(o.get("controller") for o in owners):
        ref = b.owner_reference(cluster)
        await kube.patch_custom(
            "DaskWorkerGroup", ns, name, {"metadata": {"ownerReferences": [*owners, ref]}}
        )

    if b.suspended(cluster):
        return await _suspend_worker_group(kube, group, selector, out)

    service = await kube.get_service(ns, naming.scheduler_name(cluster_name))
    service_spec = (service or {}).get("spec") or b.service_spec(cluster)
    comm = b.comm_port(service_spec)
    addr = b.scheduler_address(cluster_name, ns, comm, settings.cluster_domain)
    # The controller itself connects through the Service's ClusterIP when it has one: that needs
    # no cluster DNS (a controller outside the cluster still reaches it through kube-proxy).
    ctl_addr, http_url = b.controller_scheduler_endpoints(
        cluster_name, ns, service_spec, settings.cluster_domain
    )
    current_hash = b.worker_pod_template_hash(group, addr)

    pods = await kube.list_pods(ns, selector)
    by_name = {p["metadata"]["name"]: p for p in pods}
    views = [d.pod_view(p) for p in pods]
    active = [v for v in views if not v.terminating and not v.finished]
    needs_scheduler = len(active) > desired or any(v.template_hash != current_hash for v in active)

    # A scheduler pod that is not running has no workers connected (and a new incarnation knows
    # none of the old one's data): asking it is pointless, and its Service has no endpoint.
    sched_pod = await kube.get_pod(ns, naming.scheduler_name(cluster_name))
    sched_view = d.pod_view(sched_pod) if sched_pod is not None else None
    scheduler_running = sched_view is not None and sched_view.phase == "Running"

    scheduler_error: str | None = None
    known: frozenset[str] | None = frozenset()  # names of pods with a connected worker
    matches: dict[str, tuple[str, ...]] = {}  # pod name -> its workers' names at the scheduler
    async with scheduler_factory(ctl_addr, http_url, settings.scheduler_timeout) as sched:
        if needs_scheduler and scheduler_running:
            try:
                workers = await sched.get_workers()
            except SchedulerUnavailable as exc:
                known, scheduler_error = None, str(exc)
            else:
                matches = d.match_workers(views, [(w.name, w.address) for w in workers])
                known = frozenset(matches)
        plan = d.plan_worker_group(desired, views, current_hash, known)

        for pod_name in plan.delete:
            uid = (by_name.get(pod_name, {}).get("metadata") or {}).get("uid")
            await kube.delete_pod(ns, pod_name, uid=uid)
        if plan.delete:
            out.events.append(
                Event(
                    "Normal",
                    "WorkersRemoved",
                    f"deleted pod(s) the scheduler does not know: {', '.join(plan.delete)}",
                )
            )

        if plan.retire:
            retired: list[str] = []
            try:
                chosen = await _choose_pods(sched, plan, matches)
                result = await sched.retire_workers([w for p in chosen for w in matches[p]])
                # a pod goes only when every worker in it was retired (its data moved)
                retired = [p for p in chosen if set(matches[p]) <= set(result.retired)]
            except SchedulerUnavailable as exc:
                scheduler_error = str(exc)
            for pod_name in retired:
                uid = (by_name.get(pod_name, {}).get("metadata") or {}).get("uid")
                await kube.delete_pod(ns, pod_name, uid=uid)
            if retired:
                out.events.append(
                    Event("Normal", "WorkersRetired", f"retired and deleted: {', '.join(retired)}")
                )
            out.requeue_after = 2.0

    if plan.create:
        await _create_workers(kube, settings, group, addr, plan.create)
        out.events.append(Event("Normal", "WorkersCreated", f"created {plan.create} worker pod(s)"))
    if scheduler_error is not None:
        out.events.append(Event("Warning", "SchedulerUnreachable", scheduler_error))
        out.requeue_after = 5.0

    # Keep labels/annotations of surviving pods up to date.
    template = b.build_worker_pod(group, addr, name="probe")
    for v in active:
        if v.name in plan.delete:
            continue
        drift = _meta_drift(by_name[v.name], template)
        if drift is not None:
            await kube.patch_pod_metadata(ns, v.name, *drift)

    if not plan.idle:
        pods = await kube.list_pods(ns, selector)
        views = [d.pod_view(p) for p in pods]
        out.requeue_after = out.requeue_after or 2.0
    n, ready = d.replica_counts(views)
    conds = [
        d.Condition("SpecValid", "True", "SpecValid"),
        d.Condition("ClusterFound", "True", "ClusterFound"),
        d.workers_ready_condition(desired, views, current_hash),
        d.scaling_down_condition(plan),
        d.scheduler_unreachable_condition(scheduler_error),
    ]
    out.status = {
        "phase": d.worker_group_phase(desired, views),
        "observedGeneration": generation,
        "replicas": n,
        "readyReplicas": ready,
        "selector": lbl.selector(selector),
        "conditions": d.merge_conditions(old_status.get("conditions"), conds, now, generation),
    }
    if ready != desired:
        out.requeue_after = out.requeue_after or 5.0
    await write_status(kube, "DaskWorkerGroup", group, out.status)
    return out


async def _choose_pods(
    sched: SchedulerClient, plan: d.WorkerGroupPlan, matches: Mapping[str, tuple[str, ...]]
) -> list[str]:
    """``plan.retire`` pods out of the candidates, in the scheduler's order of preference."""
    candidates = [p for p in plan.retire_candidates if p in matches]
    owner = {w: p for p in candidates for w in matches[p]}
    ranked = await sched.workers_to_close(len(owner), list(owner))
    if ranked is None:  # the scheduler cannot rank: keep the plan's order
        return candidates[: plan.retire]
    chosen: list[str] = []
    for worker in ranked:
        pod = owner[worker]
        if pod not in chosen:
            chosen.append(pod)
    # Workers the scheduler would rather keep (running long tasks) still go when the replica
    # count says so, after the ones it prefers; retirement still moves their data first.
    chosen += [p for p in candidates if p not in chosen]
    return chosen[: plan.retire]


async def _create_workers(
    kube: KubeApi, settings: Settings, group: Obj, addr: str, count: int
) -> None:
    """Create ``count`` worker pods, ``worker_allocation_size`` at a time, concurrently."""
    ns = group["metadata"]["namespace"]
    batch = settings.worker_allocation_size
    for start in range(0, count, batch):
        size = min(batch, count - start)
        pods = [b.build_worker_pod(group, addr) for _ in range(size)]
        await asyncio.gather(*(kube.create_pod(ns, p) for p in pods))
        if settings.worker_allocation_delay and start + size < count:
            await asyncio.sleep(settings.worker_allocation_delay)
