"""Pure decisions: desired state + observed state -> actions and status.

Nothing here talks to Kubernetes or to a scheduler. The reconcile functions gather observations
(pods, the scheduler's worker names) and pass them in; what comes back is data they carry out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dask_controller.builders import TEMPLATE_HASH_ANNOTATION

#: Container waiting reasons that mean "this will not start without a fix".
FAILURE_REASONS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "Unschedulable",
)

ConditionStatus = Literal["True", "False", "Unknown"]


# -- observed pods ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PodView:
    """What the decisions need to know about one pod."""

    name: str
    phase: str = "Pending"
    ready: bool = False
    terminating: bool = False
    template_hash: str | None = None
    created: str = ""
    #: why the pod is not running/ready (container waiting reason, Unschedulable, ...).
    reason: str | None = None
    message: str | None = None
    #: the pod's IP (``status.podIP``), to recognise workers started without ``--name``.
    ip: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """Summarise a Pod in wire format (camelCase dict)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    reason: str | None = None
    message: str | None = None
    sched = conditions.get("PodScheduled") or {}
    if sched.get("status") == "False" and sched.get("reason"):
        reason, message = sched.get("reason"), sched.get("message")
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        if waiting.get("reason") and waiting.get("reason") not in (
            "ContainerCreating",
            "PodInitializing",
        ):
            reason, message = waiting["reason"], waiting.get("message")
            break
        if terminated.get("reason") and terminated.get("exitCode", 0) != 0:
            reason, message = terminated["reason"], terminated.get("message")
            break
    if reason is None and status.get("phase") == "Failed":
        reason, message = status.get("reason") or "Failed", status.get("message")
    return PodView(
        name=str(meta.get("name")),
        phase=str(status.get("phase") or "Pending"),
        ready=ready,
        terminating=meta.get("deletionTimestamp") is not None,
        template_hash=(meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION),
        created=str(meta.get("creationTimestamp") or ""),
        reason=reason,
        message=message,
        ip=status.get("podIP") or None,
    )


def _host(address: str) -> str:
    """The host of a ``tcp://host:port`` worker address (IPv6 brackets removed)."""
    rest = address.split("://", 1)[-1]
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host.strip("[]")


def match_workers(
    pods: Sequence[PodView], workers: Iterable[tuple[str, str]]
) -> dict[str, tuple[str, ...]]:
    """Pod name -> names of the scheduler's workers that run in that pod.

    A worker named like a pod (``--name $(DASK_WORKER_NAME)``) is that pod's. A worker with
    another name (started without ``--name``) is matched by its address's host against the pod
    IPs, so a name mismatch never makes a connected worker look like one that holds no data.
    """
    by_name = {p.name for p in pods}
    by_ip = {p.ip: p.name for p in pods if p.ip}
    found: dict[str, list[str]] = {}
    for name, address in workers:
        pod = name if name in by_name else by_ip.get(_host(address))
        if pod is not None:
            found.setdefault(pod, []).append(name)
    return {pod: tuple(names) for pod, names in found.items()}


# -- worker group plan -----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerGroupPlan:
    """What to do to a worker group's pods in this pass."""

    #: number of new worker pods to create.
    create: int = 0
    #: pods to delete right away: the scheduler does not know them (never connected, pending,
    #: finished/crashed), so they hold no data.
    delete: tuple[str, ...] = ()
    #: number of connected workers to retire through the scheduler, then delete.
    retire: int = 0
    #: connected workers the retirement may choose from, preferred first.
    retire_candidates: tuple[str, ...] = ()
    #: the group needs the scheduler to act but could not ask it.
    blocked_on_scheduler: bool = False
    #: a rolling replacement (changed template) is under way.
    rolling: bool = False
    #: human-readable reasons for what was decided.
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def idle(self) -> bool:
        return not (self.create or self.delete or self.retire)


def _removal_order(pods: Iterable[PodView]) -> list[PodView]:
    """Pods the scheduler never saw, cheapest first: pending, then crashed, then newest."""

    def key(p: PodView) -> tuple[int, int, str]:
        rank = 0 if p.phase == "Pending" else 1 if not p.ready else 2
        return (rank, 0, _neg(p.created))

    return sorted(pods, key=key)


def _neg(ts: str) -> str:
    # newest first when sorted ascending: invert each character of the ISO timestamp
    return "".join(chr(0x10FFFF - ord(ch)) for ch in ts)


def plan_worker_group(
    desired: int,
    pods: Sequence[PodView],
    current_hash: str,
    scheduler_workers: frozenset[str] | None,
) -> WorkerGroupPlan:
    """Decide creations, deletions and retirements for one worker group.

    ``scheduler_workers`` is the set of worker names the scheduler knows (``None``: the scheduler
    could not be asked). Invariant: a pod the scheduler knows is never in ``delete``; without a
    scheduler answer only pods that never started (``Pending``) or finished are deleted.
    """
    notes: list[str] = []
    finished = [p for p in pods if not p.terminating and p.finished]
    active = [p for p in pods if not p.terminating and not p.finished]
    delete = [p.name for p in finished]
    if finished:
        notes.append(f"removing {len(finished)} finished pod(s)")
    known = scheduler_workers

    def connected(p: PodView) -> bool | None:
        return None if known is None else p.name in known

    outdated = [p for p in active if p.template_hash != current_hash]
    current = [p for p in active if p.template_hash == current_hash]
    blocked = False

    # Rolling replacement: only when the count is (about) right, so scaling wins over rolling.
    if outdated and desired > 0 and desired <= len(active) <= desired + 1:
        rolling_delete = [p for p in outdated if connected(p) is False or (p.phase == "Pending")]
        if known is None:
            rolling_delete = [p for p in outdated if p.phase == "Pending"]
        if rolling_delete:
            names = [p.name for p in rolling_delete]
            remaining = len(active) - len(names)
            notes.append(f"replacing {len(names)} outdated pod(s) that hold no data")
            return WorkerGroupPlan(
                create=max(0, desired - remaining),
                delete=(*delete, *names),
                rolling=True,
                notes=tuple(notes),
            )
        all_current_ready = all(p.ready for p in current)
        if not all_current_ready:
            notes.append("waiting for replacement worker(s) to become ready")
            return WorkerGroupPlan(delete=tuple(delete), rolling=True, notes=tuple(notes))
        if len(active) == desired:
            notes.append("surging one replacement for an outdated worker")
            return WorkerGroupPlan(create=1, delete=tuple(delete), rolling=True, notes=tuple(notes))
        # one surplus: retire one outdated connected worker
        if known is None:
            notes.append("cannot retire an outdated worker: scheduler unreachable")
            return WorkerGroupPlan(
                delete=tuple(delete), rolling=True, blocked_on_scheduler=True, notes=tuple(notes)
            )
        outdated_connected = tuple(p.name for p in outdated if connected(p))
        notes.append("retiring one outdated worker")
        return WorkerGroupPlan(
            delete=tuple(delete),
            retire=1 if outdated_connected else 0,
            retire_candidates=outdated_connected,
            rolling=True,
            notes=tuple(notes),
        )

    if len(active) < desired:
        n = desired - len(active)
        notes.append(f"scaling up by {n}")
        return WorkerGroupPlan(create=n, delete=tuple(delete), notes=tuple(notes))

    excess = len(active) - desired
    retire = 0
    candidates: tuple[str, ...] = ()
    if excess > 0:
        notes.append(f"scaling down by {excess}")
        if known is None:
            never_started = [p for p in _removal_order(active) if p.phase == "Pending"]
            chosen = never_started[:excess]
            delete += [p.name for p in chosen]
            if len(chosen) < excess:
                blocked = True
                notes.append("scheduler unreachable: not removing workers that may hold data")
        else:
            unknown = [p for p in _removal_order(active) if not connected(p)]
            chosen = unknown[:excess]
            delete += [p.name for p in chosen]
            retire = excess - len(chosen)
            if retire:
                # outdated connected workers first, then the rest
                conn = [p for p in active if connected(p)]
                conn.sort(key=lambda p: (p.template_hash == current_hash, _neg(p.created)))
                candidates = tuple(p.name for p in conn)
    return WorkerGroupPlan(
        delete=tuple(delete),
        retire=retire,
        retire_candidates=candidates,
        blocked_on_scheduler=blocked,
        notes=tuple(notes),
    )


# -- conditions and status -------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    old: Sequence[Mapping[str, Any]] | None,
    new: Sequence[Condition],
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions in wire format; ``lastTransitionTime`` only moves when ``status`` changes."""
    previous = {c.get("type"): c for c in old or []}
    out: list[dict[str, Any]] = []
    for cond in new:
        before = previous.get(cond.type)
        changed = before is None or before.get("status") != cond.status
        item: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": (
                now if before is None or changed else before.get("lastTransitionTime", now)
            ),
        }
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


def _problems(pods: Iterable[PodView]) -> list[PodView]:
    return [p for p in pods if not p.terminating and not p.ready and p.reason]


def _problem_message(pods: Sequence[PodView]) -> tuple[str, str]:
    # The most actionable reason first.
    def rank(p: PodView) -> int:
        return (
            FAILURE_REASONS.index(p.reason) if p.reason in FAILURE_REASONS else len(FAILURE_REASONS)
        )

    worst = sorted(pods, key=rank)[0]
    reason = worst.reason or "NotReady"
    others = f" (and {len(pods) - 1} more)" if len(pods) > 1 else ""
    detail = f": {worst.message}" if worst.message else ""
    return reason, f"pod {worst.name} is {reason}{detail}{others}"


def workers_ready_condition(desired: int, pods: Sequence[PodView], current_hash: str) -> Condition:
    live = [p for p in pods if not p.terminating and not p.finished]
    ready = [p for p in live if p.ready]
    if len(ready) >= desired and len(live) == desired:
        return Condition("WorkersReady", "True", "AllWorkersReady", f"{len(ready)}/{desired} ready")
    problems = _problems(pods)
    if problems:
        reason, message = _problem_message(problems)
        return Condition(
            "WorkersReady", "False", reason, f"{len(ready)}/{desired} ready; {message}"
        )
    return Condition("WorkersReady", "False", "WorkersStarting", f"{len(ready)}/{desired} ready")


def scheduler_ready_condition(pod: PodView | None) -> Condition:
    if pod is None or pod.terminating:
        return Condition(
            "SchedulerReady", "False", "SchedulerPodMissing", "creating the scheduler pod"
        )
    if pod.ready:
        return Condition("SchedulerReady", "True", "SchedulerPodReady", f"pod {pod.name} is ready")
    if pod.reason:
        reason, message = _problem_message([pod])
        return Condition("SchedulerReady", "False", reason, message)
    return Condition(
        "SchedulerReady", "False", "SchedulerStarting", f"pod {pod.name} is {pod.phase}"
    )


def scheduler_unreachable_condition(error: str | None) -> Condition:
    if error is None:
        return Condition("SchedulerUnreachable", "False", "SchedulerReachable")
    return Condition("SchedulerUnreachable", "True", "SchedulerUnreachable", error)


def scaling_down_condition(plan: WorkerGroupPlan) -> Condition:
    if plan.retire or plan.blocked_on_scheduler:
        msg = "; ".join(plan.notes)
        reason = "WaitingForScheduler" if plan.blocked_on_scheduler else "RetiringWorkers"
        return Condition("ScalingDown", "True", reason, msg)
    return Condition("ScalingDown", "False", "Steady")


def worker_group_phase(desired: int, pods: Sequence[PodView]) -> str:
    live = [p for p in pods if not p.terminating and not p.finished]
    if not live and desired > 0:
        return "Pending"
    failing = [p for p in _problems(live) if p.reason in FAILURE_REASONS]
    if failing and not any(p.ready for p in live):
        return "Failed"
    if len(live) != desired:
        return "Scaling"
    if all(p.ready for p in live):
        return "Running"
    return "Pending"


def cluster_phase(scheduler: PodView | None, invalid: bool = False) -> str:
    if invalid:
        return "Failed"
    if scheduler is None:
        return "Created"
    if scheduler.ready:
        return "Running"
    return "Pending"


def replica_counts(pods: Sequence[PodView]) -> tuple[int, int]:
    """(replicas, readyReplicas) as ``kubectl scale``/HPA see them: pods not terminating."""
    live = [p for p in pods if not p.terminating and not p.finished]
    return len(live), sum(1 for p in live if p.ready)
