"""Level-triggered reconciliation of DaskJob: its DaskCluster and runner pod(s).

Every pass derives what should exist from the spec, the job's status and the objects that exist
(found by labels and checked by owner uid, never remembered). In order:

1. Being deleted: do nothing (garbage collection removes what the job owns).
2. Finished (``jobStatus`` Successful/Failed with an ``endTime``): make sure the cluster is gone
   (and, after a failure, any runner still running); delete the job ``ttlSecondsAfterFinished``
   after ``endTime``. A finished job never runs again.
3. An invalid spec: report it (condition SpecValid=False naming the fields), create nothing.
4. ``suspend``: tear down the cluster and running runner, keep the job and failed pods.
5. Deadline (``activeDeadlineSeconds`` from ``startTime``), a Succeeded runner, or more failures
   than ``backoffLimit``: write the final status first, then tear down.
6. Otherwise: create the DaskCluster (after the previous incarnation's is gone), and once its
   scheduler is Ready a runner pod when none is active: ``<job>-runner``, then
   ``<job>-runner-1``, ... for retries, so failed attempts are kept with their logs.

A runner pod's failures are its container restarts (``restartPolicy: OnFailure`` restarts in
place) plus one if it failed or is failing now; the job fails when they exceed ``backoffLimit``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from dask_controller import builders as b
from dask_controller import decisions as d
from dask_controller.k8s import KubeApi, Obj
from dask_controller.reconcile import Event, Outcome, validate_spec, write_status
from dask_controller.settings import Settings
from dask_crds import constants as c
from dask_crds import models, naming

KIND = "DaskJob"
#: Lines of a failed runner's log quoted in the Failed condition.
LOG_TAIL_LINES = 20
#: At most this many characters of that log tail.
LOG_TAIL_CHARS = 2000
#: Seconds between passes while waiting for something that posts no event we watch.
WAIT_SECONDS = 5.0
FINISHED = ("Successful", "Failed")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _fmt(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


def validate_job(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) if the job cannot be run as written, naming each bad field."""
    meta = job.get("metadata") or {}
    problems = models.check_name("DaskJob", str(meta.get("name") or ""))
    if problems:
        return "InvalidName", "; ".join(problems)
    invalid = validate_spec(KIND, job)
    return ("InvalidSpec", invalid) if invalid else None


def _owner_uids(obj: Mapping[str, Any], kind: str | None = None) -> list[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [str(r.get("uid")) for r in refs if kind is None or r.get("kind") == kind]


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return uid in _owner_uids(obj)


def _previous_incarnation(obj: Mapping[str, Any], job_name: str) -> bool:
    """Owned by a DaskJob of this name (a deleted earlier incarnation, when the uid differs)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == KIND and r.get("name") == job_name for r in refs)


def _terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def pod_failures(pod: Mapping[str, Any]) -> int:
    """Failed runs of a runner pod: container restarts, plus one if it failed or is failing."""
    status = pod.get("status") or {}
    restarts = 0
    failing = status.get("phase") == "Failed"
    for cs in status.get("containerStatuses") or []:
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        if terminated and int(terminated.get("exitCode") or 0) != 0:
            failing = True
        if waiting.get("reason") == "CrashLoopBackOff":
            failing = True
    return restarts + (1 if failing else 0)


def _created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _conditions(
    *,
    spec: d.Condition | None = None,
    cluster: d.Condition,
    suspended: bool = False,
    complete: d.Condition | None = None,
    failed: d.Condition | None = None,
) -> list[d.Condition]:
    return [
        spec or d.Condition("SpecValid", "True", "SpecValid"),
        cluster,
        d.Condition("Suspended", "True", "Suspended", "spec.suspend is true")
        if suspended
        else d.Condition("Suspended", "False", "NotSuspended"),
        complete or d.Condition("Complete", "False", "NotComplete"),
        failed or d.Condition("Failed", "False", "NotFailed"),
    ]


_TRANSITION_EVENTS: dict[str, tuple[str, str]] = {
    "JobCreated": ("Normal", "JobCreated"),
    "ClusterCreated": ("Normal", "JobClusterCreated"),
    "Running": ("Normal", "JobRunning"),
    "Successful": ("Normal", "JobSucceeded"),
    "Failed": ("Warning", "JobFailed"),
    "Suspended": ("Normal", "JobSuspended"),
}


def _transition(out: Outcome, old: str | None, new: str, message: str) -> None:
    """An Event when ``jobStatus`` changes (resuming a suspended job says so)."""
    if old == new:
        return
    if old == "Suspended":
        out.events.append(Event("Normal", "JobResumed", "spec.suspend is false: resuming"))
    type_, reason = _TRANSITION_EVENTS.get(new, ("Normal", "JobStatusChanged"))
    out.events.append(Event(type_, reason, f"jobStatus {old or '-'} -> {new}: {message}"))


async def _log_tail(kube: KubeApi, ns: str, pod: Mapping[str, Any] | None) -> str:
    if pod is None:
        return ""
    name = str((pod.get("metadata") or {}).get("name"))
    try:
        text = await kube.read_pod_log(ns, name, tail_lines=LOG_TAIL_LINES)
    except Exception:  # the log is a courtesy; failing to read it must not block the job
        return ""
    if not text:
        return ""
    text = text.strip()[-LOG_TAIL_CHARS:]
    return f"; last lines of the log of pod {name}:\n{text}"


def _stopped_for_good(pod: Mapping[str, Any]) -> bool:
    """Finished, or every container exited and none will be restarted (the phase lags behind
    the container states for a moment): such a pod runs nothing and keeps its log."""
    if d.pod_view(pod).finished:
        return True
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    exits = [((cs.get("state") or {}).get("terminated") or {}) for cs in statuses]
    if not statuses or not all(exits):
        return False
    policy = (pod.get("spec") or {}).get("restartPolicy") or b.DEFAULT_RUNNER_RESTART_POLICY
    return policy == "Never" or all(int(e.get("exitCode") or 0) == 0 for e in exits)


async def _delete_runners(
    kube: KubeApi, ns: str, pods: Sequence[Obj], out: Outcome, why: str
) -> None:
    """Delete runner pods that are still running (finished attempts are kept for their logs)."""
    for pod in pods:
        view = d.pod_view(pod)
        if view.terminating or _stopped_for_good(pod):
            continue
        await kube.delete_pod(ns, view.name, uid=pod["metadata"].get("uid"))
        out.events.append(
            Event("Normal", "RunnerDeleted", f"deleted runner pod {view.name}: {why}")
        )


async def _delete_cluster(
    kube: KubeApi, ns: str, cluster: Obj | None, uid: str, out: Outcome, why: str
) -> None:
    if cluster is None or not _owned_by(cluster, uid) or _terminating(cluster):
        return
    name = cluster["metadata"]["name"]
    if await kube.delete_custom("DaskCluster", ns, name, uid=cluster["metadata"].get("uid")):
        out.events.append(Event("Normal", "ClusterDeleted", f"deleted DaskCluster {name}: {why}"))


def _drift(
    live: Mapping[str, Any], built: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations ``live`` lacks (or has with other values) compared to ``built``."""
    want_labels, want_ann = b.propagated_metadata(built)
    meta = live.get("metadata") or {}
    have_labels = meta.get("labels") or {}
    have_ann = meta.get("annotations") or {}
    labels = {k: v for k, v in want_labels.items() if have_labels.get(k) != v}
    ann = {k: v for k, v in want_ann.items() if have_ann.get(k) != v}
    return labels, ann


async def _propagate_metadata(
    kube: KubeApi, job: Obj, cluster: Obj | None, runners: Sequence[Obj]
) -> None:
    """Keep the job's labels/annotations (and spec.*.metadata) on its cluster and runner pods."""
    ns = job["metadata"]["namespace"]
    if cluster is not None and not _terminating(cluster):
        labels, ann = _drift(cluster, b.build_job_cluster(job))
        if labels or ann:
            patch = {"metadata": {"labels": labels, "annotations": ann}}
            await kube.patch_custom("DaskCluster", ns, cluster["metadata"]["name"], patch)
    want = b.build_job_runner_pod(job, "")
    for pod in runners:
        if _terminating(pod):
            continue
        labels, ann = _drift(pod, want)
        if labels or ann:
            await kube.patch_pod_metadata(ns, pod["metadata"]["name"], labels, ann)


async def reconcile_job(
    kube: KubeApi,
    settings: Settings,
    job: Obj,
    now: datetime.datetime | None = None,
) -> Outcome:
    """Bring a DaskJob's DaskCluster and runner pod into line with its spec and state."""
    out = Outcome()
    meta = job["metadata"]
    name, ns, uid = meta["name"], meta["namespace"], str(meta.get("uid"))
    generation = meta.get("generation")
    old = job.get("status") or {}
    old_status = old.get("jobStatus")
    old_conditions = old.get("conditions")
    t = now or _utcnow()
    stamp = _fmt(t)

    if meta.get("deletionTimestamp"):
        return out  # being deleted: garbage collection removes the cluster and runner pods

    def status(job_status: str, conds: list[d.Condition], **fields: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "jobStatus": job_status,
            "observedGeneration": generation,
            "clusterName": name,
            "conditions": d.merge_conditions(old_conditions, conds, stamp, generation),
        }
        base.update(fields)
        return base

    # -- finished: keep it so; clean up; ttl ------------------------------------------------
    if old_status in FINISHED and old.get("endTime"):
        cluster = await kube.get_custom("DaskCluster", ns, name)
        if old_status == "Failed":
            ours = [
                p
                for p in await kube.list_pods(ns, b.job_runner_selector(name))
                if _owned_by(p, uid)
            ]
            await _delete_runners(kube, ns, ours, out, "the job failed")
        await _delete_cluster(kube, ns, cluster, uid, out, f"the job is {old_status}")
        out.status = {"observedGeneration": generation}
        await write_status(kube, KIND, job, out.status)
        # Read from the raw spec: a finished job whose spec was since edited into an invalid
        # one stays finished (and is still cleaned up).
        raw_ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        ttl = raw_ttl if isinstance(raw_ttl, int) and raw_ttl >= 0 else None
        end = _parse(old.get("endTime"))
        if ttl is not None and end is not None:
            left = (end + datetime.timedelta(seconds=ttl) - t).total_seconds()
            if left <= 0:
                if await kube.delete_custom(KIND, ns, name, uid=uid):
                    out.events.append(
                        Event(
                            "Normal",
                            "TTLExpired",
                            f"deleted the job {ttl}s after it finished (ttlSecondsAfterFinished)",
                        )
                    )
            else:
                out.requeue_after = left
        return out

    invalid = validate_job(job)
    if invalid is not None:
        # Refuse safely: create nothing, touch nothing that exists, say why.
        reason, message = invalid
        spec_cond = d.Condition("SpecValid", "False", reason, message)
        cluster_cond = d.Condition("ClusterReady", "False", reason, "nothing created")
        out.status = status("Failed", _conditions(spec=spec_cond, cluster=cluster_cond))
        out.events.append(Event("Warning", reason, message))
        await write_status(kube, KIND, job, out.status)
        return out

    spec = models.DaskJobSpec.model_validate(job["spec"])
    backoff_limit = spec.effective_backoff_limit()

    cluster = await kube.get_custom("DaskCluster", ns, name)
    ours_cluster = cluster is not None and _owned_by(cluster, uid)
    pods = await kube.list_pods(ns, b.job_runner_selector(name))
    ours = sorted((p for p in pods if _owned_by(p, uid)), key=_created)
    for pod in pods:
        # A runner of an earlier job with this name (deleted and recreated): not ours. It goes
        # by garbage collection anyway; deleting it now frees its name and its resources sooner.
        if not _owned_by(pod, uid) and _previous_incarnation(pod, name) and not _terminating(pod):
            await kube.delete_pod(ns, pod["metadata"]["name"], uid=pod["metadata"].get("uid"))
    taken = {p["metadata"]["name"] for p in pods}
    failures = max(int(old.get("failed") or 0), sum(pod_failures(p) for p in ours))
    latest = ours[-1] if ours else None
    runner_name = latest["metadata"]["name"] if latest else old.get("jobRunnerPodName")
    common: dict[str, Any] = {"failed": failures, "jobRunnerPodName": runner_name}

    # -- suspended: tear down, keep the job ------------------------------------------------
    if spec.suspend:
        await _delete_runners(kube, ns, ours, out, "the job is suspended")
        await _delete_cluster(kube, ns, cluster, uid, out, "the job is suspended")
        cond = d.Condition("ClusterReady", "False", "Suspended", "the job is suspended")
        out.status = status(
            "Suspended", _conditions(cluster=cond, suspended=True), startTime=None, **common
        )
        _transition(out, old_status, "Suspended", "cluster and runner torn down")
        await write_status(kube, KIND, job, out.status)
        return out

    # -- finishing: deadline, success, too many failures ----------------------------------
    start = _parse(old.get("startTime"))
    deadline = spec.active_deadline_seconds
    succeeded = [p for p in ours if d.pod_view(p).phase == "Succeeded"]
    finish: tuple[str, d.Condition, d.Condition | None] | None = None
    if succeeded:
        pod_name = succeeded[-1]["metadata"]["name"]
        runner_name = pod_name
        finish = (
            "Successful",
            d.Condition("Complete", "True", "RunnerSucceeded", f"runner pod {pod_name} succeeded"),
            None,
        )
    elif (
        deadline is not None
        and start is not None
        and t >= start + datetime.timedelta(seconds=deadline)
    ):
        tail = await _log_tail(kube, ns, latest)
        msg = f"the job ran longer than activeDeadlineSeconds={deadline}{tail}"
        finish = ("Failed", d.Condition("Complete", "False", "DeadlineExceeded"),
                  d.Condition("Failed", "True", "DeadlineExceeded", msg))  # fmt: skip
    elif failures > backoff_limit:
        failed_pods = [p for p in ours if pod_failures(p)]
        tail = await _log_tail(kube, ns, failed_pods[-1] if failed_pods else latest)
        msg = f"{failures} failed runner attempt(s), more than backoffLimit={backoff_limit}{tail}"
        finish = ("Failed", d.Condition("Complete", "False", "BackoffLimitExceeded"),
                  d.Condition("Failed", "True", "BackoffLimitExceeded", msg))  # fmt: skip
    if finish is not None:
        job_status, complete, failed = finish
        cluster_cond = d.Condition(
            "ClusterReady", "False", "ClusterDeleted", f"the job is {job_status}"
        )
        common["jobRunnerPodName"] = runner_name
        out.status = status(
            job_status,
            _conditions(cluster=cluster_cond, complete=complete, failed=failed),
            startTime=old.get("startTime") or stamp,
            endTime=stamp,
            **common,
        )
        _transition(out, old_status, job_status, (failed or complete).message)
        # The final status first: if the pass stops half-way, the next one finishes the job
        # from it instead of starting a new attempt.
        await write_status(kube, KIND, job, out.status)
        if job_status == "Failed":
            await _delete_runners(kube, ns, ours, out, (failed or complete).reason)
        await _delete_cluster(kube, ns, cluster, uid, out, f"the job is {job_status}")
        if spec.ttl_seconds_after_finished is not None:
            out.requeue_after = float(spec.ttl_seconds_after_finished)
        return out

    # -- running: the cluster, then a runner once the scheduler is ready ------------------
    start_time = old.get("startTime")
    requeue: list[float] = []
    if cluster is not None and not ours_cluster:
        if _previous_incarnation(cluster, name):
            if not _terminating(cluster):
                await kube.delete_custom(
                    "DaskCluster", ns, name, uid=cluster["metadata"].get("uid")
                )
            cluster_cond = d.Condition(
                "ClusterReady", "False", "WaitingForPreviousCluster",
                f"the DaskCluster {name} of an earlier job of this name is being deleted",
            )  # fmt: skip
            requeue.append(2.0)
        else:
            cluster_cond = d.Condition(
                "ClusterReady", "False", "ClusterConflict",
                f"a DaskCluster named {name} exists that this job does not own: "
                "delete or rename it (the job's cluster takes the job's name)",
            )  # fmt: skip
            out.events.append(Event("Warning", "ClusterConflict", cluster_cond.message))
            requeue.append(10.0)
        out.status = status("JobCreated", _conditions(cluster=cluster_cond), **common)
        _transition(out, old_status, "JobCreated", cluster_cond.message)
        await write_status(kube, KIND, job, out.status)
        out.requeue_after = min(requeue)
        return out

    if cluster is None:
        leftovers = [
            p["metadata"]["name"]
            for p in await kube.list_pods(ns, {c.LABEL_CLUSTER: name})
            if (p["metadata"].get("labels") or {}).get(c.LABEL_COMPONENT) != "job-runner"
        ]
        if await kube.get_service(ns, naming.scheduler_name(name)) is not None:
            leftovers.append(f"Service {naming.scheduler_name(name)}")
        if leftovers:
            # An earlier cluster of this name is still being garbage-collected: a new one now
            # would adopt its scheduler pod. Wait.
            cluster_cond = d.Condition(
                "ClusterReady", "False", "WaitingForPreviousCluster",
                f"waiting for objects of an earlier cluster named {name} to go: "
                f"{', '.join(sorted(leftovers)[:5])}",
            )  # fmt: skip
            out.status = status("JobCreated", _conditions(cluster=cluster_cond), **common)
            _transition(out, old_status, "JobCreated", cluster_cond.message)
            await write_status(kube, KIND, job, out.status)
            out.requeue_after = 2.0
            return out
        body = b.build_job_cluster(job)
        if await kube.create_custom("DaskCluster", ns, body):
            out.events.append(Event("Normal", "ClusterCreated", f"created DaskCluster {name}"))
        cluster = body
        start_time = start_time or stamp
        requeue.append(2.0)
    start_time = start_time or stamp
    await _propagate_metadata(kube, job, cluster if ours_cluster else None, ours)

    # Is the scheduler of *our* cluster ready?
    sched = await kube.get_pod(ns, naming.scheduler_name(name))
    cluster_uid = (cluster.get("metadata") or {}).get("uid")
    sched_view = d.pod_view(sched) if sched is not None else None
    if sched is not None and cluster_uid and cluster_uid not in _owner_uids(sched):
        sched_view = None  # an earlier cluster's scheduler pod
    cluster_cond = d.scheduler_ready_condition(sched_view)
    cluster_cond = d.Condition(
        "ClusterReady", cluster_cond.status, cluster_cond.reason, cluster_cond.message
    )
    ready = cluster_cond.status == "True"

    active = [p for p in ours if not d.pod_view(p).terminating and not d.pod_view(p).finished]
    if not active:
        if ready:
            attempt = (
                max(
                    (b.job_runner_attempt(name, p["metadata"]["name"]) or 0 for p in ours),
                    default=-1,
                )
                + 1
            )
            while b.job_runner_pod_name(name, attempt) in taken:
                attempt += 1
            svc = await kube.get_service(ns, naming.scheduler_name(name))
            service_spec = (svc or {}).get("spec") or b.service_spec(cluster)
            addr = b.scheduler_address(name, ns, b.comm_port(service_spec), settings.cluster_domain)
            pod = b.build_job_runner_pod(job, addr, attempt)
            pod_name = pod["metadata"]["name"]
            if await kube.create_pod(ns, pod):
                retry = f" (retry after {failures} failure(s))" if failures else ""
                out.events.append(
                    Event("Normal", "RunnerCreated", f"created runner pod {pod_name}{retry}")
                )
                common["jobRunnerPodName"] = pod_name
            requeue.append(2.0)
        else:
            requeue.append(WAIT_SECONDS)

    running = old_status == "Running" or any(d.pod_view(p).phase == "Running" for p in active)
    job_status = "Running" if running else "ClusterCreated"
    message = (
        f"runner pod {common['jobRunnerPodName']} is running"
        if running
        else f"DaskCluster {name} created; {cluster_cond.message}"
    )
    out.status = status(job_status, _conditions(cluster=cluster_cond), startTime=start_time,
                        endTime=None, **common)  # fmt: skip
    _transition(out, old_status, job_status, message)
    if deadline is not None:
        start_dt = _parse(start_time) or t
        requeue.append(
            max(0.5, (start_dt + datetime.timedelta(seconds=deadline) - t).total_seconds())
        )
    await write_status(kube, KIND, job, out.status)
    out.requeue_after = min(requeue) if requeue else None
    return out
