"""Thin kopf wiring: who calls the reconcile functions, and when.

One reconcile loop per object (a kopf daemon) is the only writer of that object's children, so
passes never overlap. It runs a pass when kicked — by any change to the object itself or to a pod
or Service it owns — and at least every ``RESYNC_SECONDS`` (level-triggered resync). Kicks that
arrive during a pass coalesce into one more pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from dask_controller import autoscaling, health, jobs, k8s, metrics, reconcile
from dask_controller.settings import Settings
from dask_crds import constants as c
from dask_crds import naming

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 10.0

Reconciler = Callable[[k8s.KubeApi, Settings, k8s.Obj], Awaitable[reconcile.Outcome]]
#: The reconcile function of each kind.
RECONCILERS: dict[str, Reconciler] = {
    "DaskCluster": reconcile.reconcile_cluster,
    "DaskWorkerGroup": reconcile.reconcile_worker_group,
    "DaskJob": jobs.reconcile_job,
    "DaskAutoscaler": autoscaling.reconcile_autoscaler,
}

_state: dict[str, Any] = {
    "settings": Settings(),
    "kube": None,
    "kubeconfig": None,
    "peering": None,
}
_kicks: dict[tuple[str, str, str], asyncio.Event] = {}
_heartbeats = health.Heartbeats()
#: Seconds the liveness probe allows for an API round trip.
LIVENESS_API_TIMEOUT = 10.0


@dataclass(frozen=True)
class Peering:
    """The kopf peering the operator joins: its name and where its object lives."""

    name: str
    clusterwide: bool
    namespaces: tuple[str, ...] = ()

    def object_namespaces(self) -> list[str | None]:
        """``None`` for the one ClusterKopfPeering, else each named (non-glob) namespace."""
        if self.clusterwide:
            return [None]
        return [ns for ns in self.namespaces if not any(ch in ns for ch in "*?[!")]


def configure(
    settings: Settings, kubeconfig: str | None = None, peering: Peering | None = None
) -> None:
    """Set what the handlers use; call before the operator starts."""
    _state["settings"] = settings
    _state["kubeconfig"] = kubeconfig
    _state["peering"] = peering


def _kick(kind: str, namespace: str | None, name: str | None) -> None:
    # Only loops that exist are kicked; a loop that starts later runs a pass first anyway.
    event = _kicks.get((kind, namespace or "", name or ""))
    if event is not None:
        event.set()


def _kube() -> k8s.Kube:
    kube = _state["kube"]
    assert isinstance(kube, k8s.Kube), "operator not started"
    return kube


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Watches that never go quiet: the server ends each watch, the client notices a dead one.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    # Only warnings of kopf's own log become Events; ours are posted explicitly (`_post`).
    settings.posting.level = logging.WARNING
    await k8s.load_config(_state["kubeconfig"])
    _state["kube"] = k8s.Kube()
    peering = _state["peering"]
    if isinstance(peering, Peering):
        # kopf waits, paused, until its peering object exists: make sure it does. Startup
        # handlers finish before kopf starts any watch, so no replica acts before this.
        try:
            for ns in peering.object_namespaces():
                await _kube().ensure_kopf_peering(peering.name, ns)
        except k8s.PeeringUnavailable as exc:
            raise kopf.PermanentError(str(exc)) from exc


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    kube = _state.get("kube")
    if isinstance(kube, k8s.Kube):
        await kube.__aexit__(None, None, None)
        _state["kube"] = None


@kopf.on.probe(id="reconcile_loops")
def _probe(**_: Any) -> int:
    """Fail (HTTP 500 on the liveness endpoint) when a reconcile loop stopped making passes."""
    max_age = _state["settings"].liveness_max_age
    stalled = _heartbeats.stalled(max_age)
    if stalled:
        raise health.Stalled(
            f"{len(stalled)} reconcile loop(s) made no pass for over {max_age:.0f}s, "
            f"oldest: {stalled[0]}"
        )
    return len(_heartbeats)


@kopf.on.probe(id="api_server")
async def _probe_api(**_: Any) -> str:
    """Fail when the Kubernetes API cannot be reached: the watches would be dead too."""
    namespace = os.environ.get("POD_NAMESPACE", "default")
    try:
        await asyncio.wait_for(
            _kube().get_custom("DaskCluster", namespace, "liveness-probe"),
            LIVENESS_API_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 403:  # reachable; RBAC may not cover this namespace
            return "reachable"
        raise
    return "reachable"


#: The same Warning on the same object is posted at most once per this many seconds (a pass that
#: keeps finding the scheduler unreachable must not flood the namespace with events). Normal
#: events report actions and are always posted.
EVENT_REPEAT_SECONDS = 300.0
_posted: dict[tuple[str, str, str, str], float] = {}


def _post(obj: dict[str, Any], outcome: reconcile.Outcome) -> None:
    kind = str(obj.get("kind", ""))
    for ev in outcome.events:
        metrics.ACTIONS.labels(kind, ev.type, ev.reason).inc()
    if not _state["settings"].post_events:
        return
    now = time.monotonic()
    uid = str((obj.get("metadata") or {}).get("uid"))
    for key in [k for k, t in _posted.items() if now - t > EVENT_REPEAT_SECONDS]:
        del _posted[key]
    for ev in outcome.events:
        key = (uid, ev.type, ev.reason, ev.message)
        if ev.type == "Warning":
            if key in _posted:
                continue
            _posted[key] = now
        kopf.event(cast(kopf.Body, obj), type=ev.type, reason=ev.reason, message=ev.message)


async def _wait_kick_or_stop(
    kick: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float
) -> None:
    """Until the loop is kicked, told to stop (so it exits promptly), or ``timeout`` passes."""
    waiters = {asyncio.ensure_future(kick.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _loop(kind: str, namespace: str, name: str, stopped: kopf.DaemonStopped) -> None:
    key = (kind, namespace, name)
    kick = _kicks.setdefault(key, asyncio.Event())
    _heartbeats.beat(key)
    metrics.LOOPS.set(len(_kicks))
    try:
        while not stopped:
            kick.clear()
            delay = RESYNC_SECONDS
            started = time.monotonic()
            result = "ok"
            try:
                obj = await _kube().get_custom(kind, namespace, name)
                if obj is None:
                    return
                outcome = await RECONCILERS[kind](_kube(), _state["settings"], obj)
                if kind == "DaskCluster":
                    _kick("DaskWorkerGroup", namespace, naming.default_worker_group_name(name))
                for other_kind, other in outcome.kick:
                    _kick(other_kind, namespace, other)
                _post(obj, outcome)
                if outcome.requeue_after is not None:
                    delay = min(delay, outcome.requeue_after)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the loop alive; the next pass retries
                logger.exception("reconcile of %s %s/%s failed", kind, namespace, name)
                result = "error"
                if isinstance(exc, ApiException):
                    metrics.API_ERRORS.labels(str(exc.status)).inc()
                delay = 5.0
            metrics.RECONCILES.labels(kind, result).inc()
            metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
            _heartbeats.beat(key)
            await _wait_kick_or_stop(kick, stopped, delay)
    finally:
        _kicks.pop(key, None)
        _heartbeats.forget(key)
        metrics.LOOPS.set(len(_kicks))


@kopf.daemon(c.GROUP, c.VERSION, "daskclusters", cancellation_timeout=5.0)
async def cluster_loop(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await _loop("DaskCluster", namespace or "", name, stopped)


@kopf.daemon(c.GROUP, c.VERSION, "daskworkergroups", cancellation_timeout=5.0)
async def worker_group_loop(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await _loop("DaskWorkerGroup", namespace or "", name, stopped)


@kopf.daemon(c.GROUP, c.VERSION, "daskjobs", cancellation_timeout=5.0)
async def job_loop(name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any) -> None:
    await _loop("DaskJob", namespace or "", name, stopped)


@kopf.daemon(c.GROUP, c.VERSION, "daskautoscalers", cancellation_timeout=5.0)
async def autoscaler_loop(
    name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await _loop("DaskAutoscaler", namespace or "", name, stopped)


@kopf.on.event(c.GROUP, c.VERSION, "daskclusters")
def cluster_changed(name: str, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    _kick("DaskCluster", namespace, name)
    job = labels.get(c.LABEL_JOB)
    if job:  # a job's cluster: its readiness moves the job on
        _kick("DaskJob", namespace, job)


@kopf.on.event(c.GROUP, c.VERSION, "daskjobs")
def job_changed(name: str, namespace: str | None, **_: Any) -> None:
    _kick("DaskJob", namespace, name)


@kopf.on.event(c.GROUP, c.VERSION, "daskautoscalers")
def autoscaler_changed(name: str, namespace: str | None, **_: Any) -> None:
    _kick("DaskAutoscaler", namespace, name)


@kopf.on.event(c.GROUP, c.VERSION, "daskworkergroups")
def worker_group_changed(name: str, namespace: str | None, spec: kopf.Spec, **_: Any) -> None:
    _kick("DaskWorkerGroup", namespace, name)
    cluster = spec.get("cluster")
    if isinstance(cluster, str):
        _kick("DaskCluster", namespace, cluster)


@kopf.on.event("pods", labels={c.LABEL_CLUSTER: kopf.PRESENT, c.LABEL_COMPONENT: kopf.PRESENT})
def pod_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    cluster = labels.get(c.LABEL_CLUSTER)
    group = labels.get(c.LABEL_WORKER_GROUP)
    if group:
        _kick("DaskWorkerGroup", namespace, group)
    _kick("DaskCluster", namespace, cluster)
    job = labels.get(c.LABEL_JOB)
    if job:
        _kick("DaskJob", namespace, job)


@kopf.on.event("services", labels={c.LABEL_CLUSTER: kopf.PRESENT, c.LABEL_COMPONENT: "scheduler"})
def service_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    _kick("DaskCluster", namespace, labels.get(c.LABEL_CLUSTER))
