"""Typed errors, and the pure functions that turn observed objects into them.

``classify_pod`` reads a Pod (a dict in API shape, camelCase) and names what keeps it from
running; ``assess_startup`` combines the DaskCluster, its scheduler Pod and Service, and the time
spent so far into a decision: keep waiting (with a status line), ready, or raise this error. The
shell polls the API and calls them; the unit tests feed them dicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

#: Shown with errors that the operator or CRDs are missing.
INSTALL_HINT: Final = (
    "install the operator and its CRDs with its Helm chart (helm install dask-operator "
    "charts/dask-kubernetes-operator --namespace dask-operator --create-namespace); "
    "see docs/kubecluster.md#installing-the-operator"
)
#: How to find the operator's pod.
OPERATOR_PODS: Final = "kubectl get pods -A -l app.kubernetes.io/name=dask-kubernetes-operator"


class KubeClusterError(Exception):
    """Base class of every error KubeCluster raises about the Kubernetes side."""


class CRDNotInstalledError(KubeClusterError):
    """The kubernetes.dask.org custom resources are not installed in this Kubernetes cluster."""


class OperatorNotRunningError(KubeClusterError, TimeoutError):
    """The DaskCluster was created but no operator acted on it in time."""


class ClusterExistsError(KubeClusterError):
    """CREATE_ONLY was asked for and a DaskCluster of that name exists."""


class ClusterNotFoundError(KubeClusterError):
    """CONNECT_ONLY (or from_name) was asked for and no DaskCluster of that name exists."""


class ClusterSuspendedError(KubeClusterError):
    """The DaskCluster is suspended (``spec.suspend: true``): it has no scheduler to connect to."""


class PermissionDeniedError(KubeClusterError):
    """The Kubernetes API refused an operation for lack of RBAC permissions."""


class SchedulerStartError(KubeClusterError):
    """The scheduler pod cannot start; the message names the pod and the reason."""

    def __init__(self, message: str, *, pod: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.pod = pod
        self.reason = reason


class ImagePullError(SchedulerStartError):
    """The image cannot be pulled (ImagePullBackOff, ErrImagePull, InvalidImageName)."""


class CrashLoopError(SchedulerStartError):
    """The container keeps crashing (CrashLoopBackOff); the message has the log tail."""


class UnschedulableError(SchedulerStartError):
    """No node can run the pod (resources, node selectors, taints)."""


class ContainerConfigError(SchedulerStartError):
    """The container cannot be created (missing Secret or ConfigMap, bad command...)."""


class ResourceTimeoutError(KubeClusterError, TimeoutError):
    """Something did not reach the expected state within ``resource_timeout``."""


# --------------------------------------------------------------------------------------------
# pods

ProblemKind = Literal["image-pull", "crash-loop", "unschedulable", "container-config", "failed"]

_IMAGE_PULL_REASONS: Final = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
)
#: Reasons that will not heal by waiting: raise at once instead of at the timeout.
_FATAL_REASONS: Final = frozenset(
    {"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CrashLoopBackOff"}
)
_CONFIG_REASONS: Final = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


@dataclass(frozen=True)
class PodProblem:
    """What keeps a pod from running."""

    kind: ProblemKind
    pod: str
    reason: str
    message: str
    container: str = ""
    image: str = ""
    #: True when waiting longer will not help (raise now).
    fatal: bool = False


def _name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", "<unknown pod>"))


def _container_images(pod: Mapping[str, Any]) -> dict[str, str]:
    spec = pod.get("spec") or {}
    images: dict[str, str] = {}
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or ():
            images[str(container.get("name"))] = str(container.get("image", ""))
    return images


def classify_pod(pod: Mapping[str, Any]) -> PodProblem | None:
    """The problem that keeps ``pod`` from running, or None when there is none (yet).

    A pod being deleted has none: it is going away on purpose (a scale-down's retired worker, a
    replaced or suspended pod), and how its containers end says nothing about starting.
    """
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    name = _name(pod)
    status = pod.get("status") or {}
    images = _container_images(pod)
    statuses = [
        *(status.get("initContainerStatuses") or ()),
        *(status.get("containerStatuses") or ()),
    ]
    for cs in statuses:
        container = str(cs.get("name", ""))
        image = str(cs.get("image") or images.get(container, ""))
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        message = str(waiting.get("message") or "")
        if reason in _IMAGE_PULL_REASONS:
            return PodProblem(
                "image-pull", name, reason, message, container, image, reason in _FATAL_REASONS
            )
        if reason == "CrashLoopBackOff":
            last = (cs.get("lastState") or {}).get("terminated") or {}
            detail = message or _terminated_text(last)
            return PodProblem("crash-loop", name, reason, detail, container, image, True)
        if reason in _CONFIG_REASONS:
            return PodProblem("container-config", name, reason, message, container, image)
        terminated = state.get("terminated") or {}
        restart_policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        if terminated and terminated.get("exitCode", 0) != 0 and restart_policy == "Never":
            return PodProblem(
                "failed", name, str(terminated.get("reason") or "Error"),
                _terminated_text(terminated), container, image, True,
            )  # fmt: skip
    if status.get("phase") == "Failed":
        return PodProblem(
            "failed", name, str(status.get("reason") or "Failed"),
            str(status.get("message") or ""), fatal=True,
        )  # fmt: skip
    for cond in status.get("conditions") or ():
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return PodProblem("unschedulable", name, "Unschedulable", str(cond.get("message", "")))
    return None


def _terminated_text(terminated: Mapping[str, Any]) -> str:
    if not terminated:
        return ""
    parts = [f"exit code {terminated.get('exitCode')}"]
    if terminated.get("reason"):
        parts.append(str(terminated["reason"]))
    if terminated.get("message"):
        parts.append(str(terminated["message"]))
    return ", ".join(parts)


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )


def error_for_problem(problem: PodProblem, log_tail: str = "") -> SchedulerStartError:
    """The typed error for ``problem``; ``log_tail`` is the end of the container's log."""
    where = f"pod {problem.pod!r}" + (
        f" container {problem.container!r}" if problem.container else ""
    )
    if problem.kind == "image-pull":
        return ImagePullError(
            f"{where} cannot pull image {problem.image!r} ({problem.reason}): "
            f"{problem.message or 'no message'}. Check the image name and tag, and "
            "imagePullSecrets for a private registry.",
            pod=problem.pod,
            reason=problem.reason,
        )
    if problem.kind == "crash-loop":
        text = f"{where} is crash-looping ({problem.reason}"
        text += f", {problem.message})" if problem.message else ")"
        if log_tail:
            text += f". Last lines of its log:\n{log_tail}"
        return CrashLoopError(text, pod=problem.pod, reason=problem.reason)
    if problem.kind == "unschedulable":
        return UnschedulableError(
            f"{where} cannot be scheduled: {problem.message or 'no node fits'}. Check resource "
            "requests, nodeSelector, affinity and tolerations against your nodes.",
            pod=problem.pod,
            reason=problem.reason,
        )
    if problem.kind == "container-config":
        return ContainerConfigError(
            f"{where} cannot be created ({problem.reason}): {problem.message}",
            pod=problem.pod,
            reason=problem.reason,
        )
    text = f"{where} failed ({problem.reason}): {problem.message}"
    if log_tail:
        text += f". Last lines of its log:\n{log_tail}"
    return SchedulerStartError(text, pod=problem.pod, reason=problem.reason)


# --------------------------------------------------------------------------------------------
# start-up


@dataclass(frozen=True)
class Waiting:
    """Keep polling; ``status`` is a one-line description for the progress display."""

    status: str


@dataclass(frozen=True)
class Ready:
    status: str = "scheduler running"


@dataclass(frozen=True)
class Failed:
    """Give up. When ``problem`` is set the shell fetches its log tail to build the error."""

    error: KubeClusterError
    problem: PodProblem | None = None


Decision = Waiting | Ready | Failed


def assess_startup(
    cluster: Mapping[str, Any] | None,
    scheduler_pod: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    *,
    name: str,
    namespace: str,
    elapsed: float,
    timeout: float,
) -> Decision:
    """Where a starting DaskCluster stands, from what the API shows.

    - the scheduler pod is Ready and its Service exists → :class:`Ready`;
    - the pod has a fatal problem (ImagePullBackOff, CrashLoopBackOff...) → :class:`Failed` now;
    - past ``timeout``: no status and no pod → operator not running; a pod problem → that
      problem; otherwise a :class:`ResourceTimeoutError` saying what was last seen;
    - else :class:`Waiting`.
    """
    if cluster is None:
        if elapsed >= timeout:
            return Failed(
                ResourceTimeoutError(f"DaskCluster {name!r} in namespace {namespace!r} vanished")
            )
        return Waiting("waiting for the DaskCluster to appear")

    phase = str((cluster.get("status") or {}).get("phase") or "")
    problem = classify_pod(scheduler_pod) if scheduler_pod is not None else None
    if (cluster.get("spec") or {}).get("suspend"):
        resume = json.dumps({"spec": {"suspend": False}})
        return Failed(
            ClusterSuspendedError(
                f"DaskCluster {name!r} in namespace {namespace!r} is suspended (spec.suspend is "
                "true, set by you, a queueing system or its idle timeout), so it runs no "
                f"scheduler. Resume it with `kubectl patch daskcluster {name} -n {namespace} "
                f"--type=merge -p '{resume}'`, then connect again."
            )
        )

    if scheduler_pod is not None and pod_is_ready(scheduler_pod) and service is not None:
        return Ready()
    if problem is not None and problem.fatal:
        return Failed(error_for_problem(problem), problem)

    if elapsed < timeout:
        if scheduler_pod is None:
            if not phase:
                return Waiting("waiting for the operator to pick up the DaskCluster")
            return Waiting(f"cluster {phase or 'created'}; waiting for the scheduler pod")
        if problem is not None:
            return Waiting(f"scheduler pod: {problem.reason}: {problem.message}".rstrip(": "))
        pod_phase = (scheduler_pod.get("status") or {}).get("phase") or "Pending"
        return Waiting(f"scheduler pod {pod_phase}, waiting for it to be ready")

    if scheduler_pod is None and not phase:
        return Failed(
            OperatorNotRunningError(
                f"DaskCluster {name!r} was created in namespace {namespace!r} but after "
                f"{timeout:g}s it has no status and no scheduler pod. Is the Dask operator "
                f"running? Check `{OPERATOR_PODS}`; to "
                f"{INSTALL_HINT}."
            )
        )
    if problem is not None:
        return Failed(error_for_problem(problem), problem)
    if scheduler_pod is None:
        return Failed(
            ResourceTimeoutError(
                f"DaskCluster {name!r} is {phase!r} but no scheduler pod appeared within "
                f"{timeout:g}s; see `kubectl describe daskcluster {name} -n {namespace}` and the "
                "operator's log"
            )
        )
    pod_phase = (scheduler_pod.get("status") or {}).get("phase") or "Pending"
    return Failed(
        ResourceTimeoutError(
            f"scheduler pod {_name(scheduler_pod)!r} is still {pod_phase} and not ready after "
            f"{timeout:g}s; see `kubectl describe pod {_name(scheduler_pod)} -n {namespace}`"
        )
    )


def crd_missing_error(group: str) -> CRDNotInstalledError:
    return CRDNotInstalledError(
        f"The DaskCluster CRD is not installed: the Kubernetes API has no {group} resources. "
        f"An administrator needs to {INSTALL_HINT}."
    )
