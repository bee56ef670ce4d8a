"""Pydantic v2 models of the four Dask custom resources (``kubernetes.dask.org/v1``).

Attributes are snake_case, the wire format is camelCase (serialise with ``by_alias=True``); both
names are accepted on input. Every Dask-owned object rejects unknown fields, and so do the
embedded Kubernetes types (:mod:`dask_crds.k8s`), so a typo is an error that names its path.

Defaults that the controller applies (``replicas``, autoscaler windows, ...) live on these models
only: the CRD schema carries no defaults, so what a user sends is what the API server stores.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dask_crds import constants as c
from dask_crds import naming
from dask_crds.k8s import ObjectMeta, PodSpec, ServiceSpec
from dask_crds.kubetypes import Time

#: Whether CEL rules in the CRD and :func:`check_name` use these limits.
NAME_LIMITS: Final[dict[c.Kind, int]] = {
    "DaskCluster": naming.max_cluster_name_length(),
    # A DaskJob creates a DaskCluster of the same name.
    "DaskJob": naming.max_cluster_name_length(),
    "DaskWorkerGroup": naming.max_worker_group_name_length(),
    "DaskAutoscaler": naming.DNS_LABEL_MAX,
}

DEFAULT_REPLICAS: Final = 1
DEFAULT_BACKOFF_LIMIT: Final = 6
DEFAULT_SCALE_UP_WINDOW_SECONDS: Final = 0
DEFAULT_SCALE_DOWN_WINDOW_SECONDS: Final = 60

#: Values of ``DaskCluster.status.phase`` (a summary; conditions carry the detail).
ClusterPhase = Literal["Created", "Pending", "Running", "Idle", "Suspended", "Closing", "Failed"]
CLUSTER_PHASES: Final[tuple[ClusterPhase, ...]] = typing.get_args(ClusterPhase)
#: Values of ``DaskJob.status.jobStatus``, compatible with the reference documents.
JobStatus = Literal["JobCreated", "ClusterCreated", "Running", "Successful", "Failed", "Suspended"]
JOB_STATUSES: Final[tuple[JobStatus, ...]] = typing.get_args(JobStatus)
#: Values of ``DaskAutoscaler.status.lastDecision``.
AutoscalerDecision = Literal["ScaleUp", "ScaleDown", "NoChange"]
AUTOSCALER_DECISIONS: Final[tuple[AutoscalerDecision, ...]] = typing.get_args(AutoscalerDecision)
#: Whose work an autoscaler's recommendation counts: the whole cluster's (the scheduler's
#: adaptive target) or only the target group's (per-group demand, when groups offer different
#: resources).
AutoscalerDemand = Literal["Cluster", "WorkerGroup"]
#: What a DaskCluster's idle timeout does.
IdleAction = Literal["Delete", "Suspend"]
AUTOSCALER_DEMANDS: Final[tuple[AutoscalerDemand, ...]] = typing.get_args(AutoscalerDemand)

NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
ClusterRef = Annotated[StrictStr, Field(min_length=1, max_length=naming.DNS_LABEL_MAX)]


class DaskModel(BaseModel):
    """Base of every Dask-owned object: camelCase aliases, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- shared parts


class EmbeddedMetadata(DaskModel):
    """Labels and annotations for the objects the operator creates from this part of the spec.

    Merged over the parent's own labels and annotations; the operator's reserved labels
    (``dask.org/*``, ``app.kubernetes.io/*`` it sets) always win.
    """

    labels: dict[str, StrictStr] | None = Field(
        None, description="Labels added to the created objects."
    )
    annotations: dict[str, StrictStr] | None = Field(
        None, description="Annotations added to the created objects."
    )


class Condition(DaskModel):
    """One aspect of the resource's state, as in ``metav1.Condition``."""

    type: StrictStr = Field(description="Type of the condition, in CamelCase (e.g. Ready).")
    status: Literal["True", "False", "Unknown"] = Field(
        description="Status of the condition: True, False or Unknown."
    )
    reason: StrictStr | None = Field(
        None, description="Machine-readable CamelCase reason for the last transition."
    )
    message: StrictStr | None = Field(None, description="Human-readable details.")
    last_transition_time: Time | None = Field(
        None,
        alias="lastTransitionTime",
        description="When the condition last changed status (RFC 3339).",
    )
    observed_generation: NonNegativeInt | None = Field(
        None,
        alias="observedGeneration",
        description="metadata.generation the condition was computed from.",
    )


class CommonStatus(DaskModel):
    """Fields every Dask resource status has."""

    observed_generation: NonNegativeInt | None = Field(
        None,
        alias="observedGeneration",
        description="The metadata.generation the controller last reconciled.",
    )
    conditions: list[Condition] | None = Field(
        None, description="Current state, one entry per condition type (Ready, ...)."
    )


class ReplicaStatus(CommonStatus):
    """Status of something that owns worker pods (for the scale subresource)."""

    replicas: NonNegativeInt | None = Field(
        None, description="Number of worker pods that exist (scale subresource)."
    )
    ready_replicas: NonNegativeInt | None = Field(
        None, alias="readyReplicas", description="Number of worker pods that are Ready."
    )
    selector: StrictStr | None = Field(
        None,
        description="Label selector of the worker pods, as a string (scale subresource, HPA).",
    )


# --------------------------------------------------------------------------- DaskCluster


class WorkerSpec(DaskModel):
    """The workers of a group: how many, and the Pod they run in."""

    replicas: NonNegativeInt = Field(
        DEFAULT_REPLICAS,
        description=f"Number of worker pods (default {DEFAULT_REPLICAS}). "
        "This is the field `kubectl scale` and autoscalers write.",
    )
    spec: PodSpec = Field(
        description="PodSpec of every worker pod (a standard Kubernetes PodSpec)."
    )
    metadata: EmbeddedMetadata | None = Field(
        None,
        description="Labels and annotations for the worker group and its worker pods, "
        "merged over the parent's.",
    )


class SchedulerSpec(DaskModel):
    """The scheduler: its Pod and the Service in front of it."""

    spec: PodSpec = Field(
        description="PodSpec of the scheduler pod (a standard Kubernetes PodSpec)."
    )
    service: ServiceSpec | None = Field(
        None,
        description="ServiceSpec of the scheduler Service `<cluster>-scheduler`. Default: "
        "type ClusterIP, ports tcp-comm 8786 and http-dashboard 8787, selecting the scheduler.",
    )
    metadata: EmbeddedMetadata | None = Field(
        None,
        description="Labels and annotations for the scheduler Pod and Service, "
        "merged over the cluster's.",
    )


class DaskClusterSpec(DaskModel):
    """A Dask cluster: one scheduler and a default worker group."""

    worker: WorkerSpec = Field(description="The default worker group `<cluster>-default`.")
    scheduler: SchedulerSpec = Field(description="The scheduler Pod and Service.")
    idle_timeout: NonNegativeInt | None = Field(
        None,
        alias="idleTimeout",
        description="Act (see `idleAction`) after the scheduler has been idle this many "
        "seconds; 0 or unset never does.",
    )
    idle_action: IdleAction | None = Field(
        None,
        alias="idleAction",
        description="What `idleTimeout` does: `Delete` (default) deletes the cluster; "
        "`Suspend` sets `suspend: true`, so its pods go and the resources stay for later.",
    )
    suspend: StrictBool | None = Field(
        None,
        description="When true, the operator keeps no scheduler or worker pods (for queueing "
        "systems such as Kueue); setting it back to false recreates them.",
    )


class DaskClusterStatus(ReplicaStatus):
    """Observed state of a DaskCluster; replicas count the default worker group."""

    phase: StrictStr | None = Field(
        None,
        description=f"Summary: {', '.join(CLUSTER_PHASES)}.",
    )
    idle_since: Time | None = Field(
        None,
        alias="idleSince",
        description="Since when the scheduler has had no work (RFC 3339); unset when busy.",
    )


# --------------------------------------------------------------------------- DaskWorkerGroup


class DaskWorkerGroupSpec(DaskModel):
    """An additional group of workers joining an existing DaskCluster."""

    cluster: ClusterRef = Field(description="Name of the DaskCluster the workers join.")
    worker: WorkerSpec = Field(description="The workers of this group.")


class DaskWorkerGroupStatus(ReplicaStatus):
    """Observed state of a DaskWorkerGroup."""

    phase: StrictStr | None = Field(
        None, description="Summary: Pending, Running, Scaling, Suspended or Failed."
    )


# --------------------------------------------------------------------------- DaskJob


class RunnerPodSpec(PodSpec):
    """A PodSpec for a pod that runs to completion."""

    restart_policy: Literal["OnFailure", "Never"] | None = Field(
        None,
        alias="restartPolicy",
        description="OnFailure (the default: the kubelet restarts a failing runner in place) or "
        "Never (each retry is a new pod). Always is not allowed: the runner would never finish.",
    )


class JobRunnerSpec(DaskModel):
    """The runner Pod `<job>-runner` that executes the job against the cluster."""

    spec: RunnerPodSpec = Field(
        description="PodSpec of the runner pod (a standard Kubernetes PodSpec; restartPolicy "
        "OnFailure or Never)."
    )
    metadata: EmbeddedMetadata | None = Field(
        None, description="Labels and annotations for the runner pod, merged over the job's."
    )


class DaskClusterTemplate(DaskModel):
    """The DaskCluster a DaskJob creates for its runner (named like the job)."""

    spec: DaskClusterSpec = Field(description="Spec of the DaskCluster (as in a DaskCluster).")
    metadata: EmbeddedMetadata | None = Field(
        None, description="Labels and annotations for the DaskCluster, merged over the job's."
    )


class DaskJobSpec(DaskModel):
    """A batch job: a runner pod plus a DaskCluster it uses, cleaned up at the end."""

    job: JobRunnerSpec = Field(description="The runner pod.")
    cluster: DaskClusterTemplate = Field(description="The DaskCluster created for the job.")
    backoff_limit: NonNegativeInt | None = Field(
        None,
        alias="backoffLimit",
        description="Runner pods that may fail (restartPolicy Never, evictions) before the job is "
        f"Failed (default {DEFAULT_BACKOFF_LIMIT}, as for a Kubernetes Job). With the runner's "
        "default restartPolicy OnFailure, the kubelet restarts a failing runner in place and "
        "each restart counts against this limit too.",
    )
    active_deadline_seconds: Annotated[StrictInt, Field(ge=1)] | None = Field(
        None,
        alias="activeDeadlineSeconds",
        description="Seconds from start after which the job is stopped and marked Failed.",
    )
    ttl_seconds_after_finished: NonNegativeInt | None = Field(
        None,
        alias="ttlSecondsAfterFinished",
        description="Delete the DaskJob this many seconds after it finished; unset keeps it.",
    )
    suspend: StrictBool | None = Field(
        None,
        description="When true, nothing is created (or what runs is stopped) until set to false.",
    )

    def effective_backoff_limit(self) -> int:
        """``backoffLimit`` with the default applied."""
        return DEFAULT_BACKOFF_LIMIT if self.backoff_limit is None else self.backoff_limit


class DaskJobStatus(CommonStatus):
    """Observed state of a DaskJob."""

    job_status: StrictStr | None = Field(
        None,
        alias="jobStatus",
        description=f"Summary: {', '.join(JOB_STATUSES)}.",
    )
    cluster_name: StrictStr | None = Field(
        None, alias="clusterName", description="Name of the DaskCluster of this job."
    )
    job_runner_pod_name: StrictStr | None = Field(
        None,
        alias="jobRunnerPodName",
        description="Name of the current (or last) runner pod: <job>-runner, then "
        "<job>-runner-1, ... for retries.",
    )
    start_time: Time | None = Field(
        None,
        alias="startTime",
        description="When the job started: its DaskCluster was created (RFC 3339); "
        "activeDeadlineSeconds counts from here.",
    )
    end_time: Time | None = Field(
        None, alias="endTime", description="When the job finished (RFC 3339)."
    )
    failed: NonNegativeInt | None = Field(
        None,
        description="Failed runs of the runner: failed runner pods plus container restarts "
        "(what backoffLimit is compared with).",
    )


# --------------------------------------------------------------------------- DaskAutoscaler


class ScalingWindow(DaskModel):
    """How long a recommendation must persist before it is acted on."""

    stabilization_window_seconds: NonNegativeInt | None = Field(
        None,
        alias="stabilizationWindowSeconds",
        description="Act on the most conservative recommendation seen in this many seconds.",
    )


class DaskAutoscalerSpec(DaskModel):
    """Adaptive scaling of one worker group between minimum and maximum."""

    cluster: ClusterRef = Field(description="Name of the DaskCluster to autoscale.")
    minimum: NonNegativeInt = Field(description="Fewest workers (inclusive).")
    maximum: NonNegativeInt = Field(description="Most workers (inclusive), at least minimum.")
    worker_group: ClusterRef | None = Field(
        None,
        alias="workerGroup",
        description="Name of the DaskWorkerGroup to scale; default: the cluster's default "
        "group `<cluster>-default`.",
    )
    scale_up: ScalingWindow | None = Field(
        None,
        alias="scaleUp",
        description="Scale-up behaviour; default stabilizationWindowSeconds "
        f"{DEFAULT_SCALE_UP_WINDOW_SECONDS}.",
    )
    scale_down: ScalingWindow | None = Field(
        None,
        alias="scaleDown",
        description="Scale-down behaviour; default stabilizationWindowSeconds "
        f"{DEFAULT_SCALE_DOWN_WINDOW_SECONDS}.",
    )

    @field_validator("maximum")
    @classmethod
    def _maximum_not_below_minimum(cls, maximum: int, info: ValidationInfo) -> int:
        minimum = info.data.get("minimum")
        if minimum is not None and maximum < minimum:
            raise ValueError(
                f"maximum ({maximum}) must be greater than or equal to minimum ({minimum})"
            )
        return maximum

    def target_worker_group(self) -> str:
        """The DaskWorkerGroup this autoscaler scales."""
        return self.worker_group or naming.default_worker_group_name(self.cluster)

    def scale_up_window(self) -> int:
        """Scale-up stabilisation window in seconds, default applied."""
        w = self.scale_up.stabilization_window_seconds if self.scale_up else None
        return DEFAULT_SCALE_UP_WINDOW_SECONDS if w is None else w

    def scale_down_window(self) -> int:
        """Scale-down stabilisation window in seconds, default applied."""
        w = self.scale_down.stabilization_window_seconds if self.scale_down else None
        return DEFAULT_SCALE_DOWN_WINDOW_SECONDS if w is None else w

    def clamp(self, replicas: int) -> int:
        """``replicas`` forced into ``[minimum, maximum]``."""
        return max(self.minimum, min(self.maximum, replicas))


class DaskAutoscalerStatus(CommonStatus):
    """Observed state of a DaskAutoscaler: the last decision and why."""

    worker_group: StrictStr | None = Field(
        None, alias="workerGroup", description="The DaskWorkerGroup being scaled."
    )
    desired_replicas: NonNegativeInt | None = Field(
        None, alias="desiredReplicas", description="Replicas the autoscaler last asked for."
    )
    recommended_replicas: NonNegativeInt | None = Field(
        None,
        alias="recommendedReplicas",
        description="Workers recommended before clamping and stabilisation (see `demand`).",
    )
    demand: AutoscalerDemand | None = Field(
        None,
        description="Whose work the recommendation counts: `Cluster` (the scheduler's "
        "whole-cluster adaptive target) or `WorkerGroup` (only the work this group should "
        "serve; used when the cluster's worker groups offer different Dask resources).",
    )
    last_decision: StrictStr | None = Field(
        None, alias="lastDecision", description=f"One of {', '.join(AUTOSCALER_DECISIONS)}."
    )
    last_decision_reason: StrictStr | None = Field(
        None, alias="lastDecisionReason", description="Why, in words."
    )
    last_decision_time: Time | None = Field(
        None, alias="lastDecisionTime", description="When (RFC 3339)."
    )


# --------------------------------------------------------------------------- resources


class DaskResource(DaskModel):
    """Common envelope of the four kinds."""

    KIND: ClassVar[c.Kind]

    api_version: Literal["kubernetes.dask.org/v1"] = Field(
        "kubernetes.dask.org/v1", alias="apiVersion"
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="before")
    @classmethod
    def _kind_matches(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" in data and data["kind"] != cls.KIND:
            raise ValueError(f"kind must be {cls.KIND!r}, got {data['kind']!r}")
        return data

    @field_validator("metadata")
    @classmethod
    def _name_fits(cls, metadata: ObjectMeta) -> ObjectMeta:
        if metadata.name is not None:
            problems = check_name(cls.KIND, metadata.name)
            if problems:
                raise ValueError("; ".join(problems))
        return metadata

    def to_dict(self) -> dict[str, Any]:
        """The wire format (camelCase, unset fields left out), ready for the API server."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json") | {
            "apiVersion": c.API_VERSION,
            "kind": self.KIND,
        }


class DaskCluster(DaskResource):
    """A Dask cluster: scheduler Pod and Service plus the default DaskWorkerGroup."""

    KIND: ClassVar[c.Kind] = "DaskCluster"
    kind: Literal["DaskCluster"] = "DaskCluster"
    spec: DaskClusterSpec
    status: DaskClusterStatus | None = None


class DaskWorkerGroup(DaskResource):
    """A scalable group of Dask workers belonging to a DaskCluster."""

    KIND: ClassVar[c.Kind] = "DaskWorkerGroup"
    kind: Literal["DaskWorkerGroup"] = "DaskWorkerGroup"
    spec: DaskWorkerGroupSpec
    status: DaskWorkerGroupStatus | None = None


class DaskJob(DaskResource):
    """A runner Pod executed to completion next to a DaskCluster created for it."""

    KIND: ClassVar[c.Kind] = "DaskJob"
    kind: Literal["DaskJob"] = "DaskJob"
    spec: DaskJobSpec
    status: DaskJobStatus | None = None


class DaskAutoscaler(DaskResource):
    """Adaptive scaling of a DaskCluster's worker group between minimum and maximum."""

    KIND: ClassVar[c.Kind] = "DaskAutoscaler"
    kind: Literal["DaskAutoscaler"] = "DaskAutoscaler"
    spec: DaskAutoscalerSpec
    status: DaskAutoscalerStatus | None = None


AnyResource = DaskCluster | DaskWorkerGroup | DaskJob | DaskAutoscaler

MODELS: Final[dict[c.Kind, type[DaskCluster | DaskWorkerGroup | DaskJob | DaskAutoscaler]]] = {
    "DaskCluster": DaskCluster,
    "DaskWorkerGroup": DaskWorkerGroup,
    "DaskJob": DaskJob,
    "DaskAutoscaler": DaskAutoscaler,
}


def check_name(kind: c.Kind, name: str) -> list[str]:
    """Problems with ``name`` as the metadata.name of a ``kind``, each naming the fix."""
    if kind in ("DaskCluster", "DaskJob"):
        problems = naming.check_cluster_name(name)
        if kind == "DaskJob":
            problems = [p.replace("a DaskCluster name", "a DaskJob name") for p in problems]
        return problems
    limit = NAME_LIMITS[kind]
    problems = []
    if not naming.is_dns_label(name[: naming.DNS_LABEL_MAX]):
        problems.append(
            f"metadata.name {name!r} must consist of lower-case letters, digits and '-', "
            "and start and end with a letter or digit"
        )
    if len(name) > limit:
        problems.append(
            f"metadata.name {name!r} is {len(name)} characters; a {kind} name can be at most "
            f"{limit} so that the names derived from it stay within {naming.DNS_LABEL_MAX}: "
            "choose a shorter name"
        )
    return problems
