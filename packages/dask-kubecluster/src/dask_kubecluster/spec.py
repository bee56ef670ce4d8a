"""Pure builders of DaskCluster, DaskWorkerGroup and DaskAutoscaler objects.

Every function here returns plain dicts in the shape of the Kubernetes API (camelCase keys), does
no I/O and is unit-tested as data. Arguments are checked before anything is sent to the cluster:
a typo such as ``resources={"limit": ...}`` is a :class:`ValueError` naming the key, not a
cluster that silently ignores the limit.

All generated or user-supplied objects pass through :func:`validate`: quick checks with messages
about the keyword arguments first, then the ``dask_crds`` models (the CRDs' own rules).
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from dask_crds import constants as c
from dask_crds import naming
from dask_crds import validation as crd_validation

logger = logging.getLogger(__name__)

DEFAULT_IMAGE: Final = "ghcr.io/dask/dask:latest"
DEFAULT_WORKER_COMMAND: Final = "dask-worker"
WORKER_DASHBOARD_PORT: Final = 8788
SERVICE_TYPES: Final = ("ClusterIP", "NodePort", "LoadBalancer")
RESOURCE_KEYS: Final = ("claims", "limits", "requests")
#: A Kubernetes resource quantity: ``2``, ``0.5``, ``500m``, ``2Gi``, ``1e3``, ``64M``.
_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")

EnvLike = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
Resources = Mapping[str, Any] | None


# --------------------------------------------------------------------------------------------
# argument normalisation and checks


def normalize_env(env: EnvLike) -> list[dict[str, Any]]:
    """Environment variables as a Kubernetes ``env`` list.

    Accepts a mapping (``{"FOO": "bar"}``; values are converted to strings) or a list of
    Kubernetes ``EnvVar`` dicts (``[{"name": "FOO", "value": "bar"}]``, ``valueFrom`` allowed),
    which is copied unchanged.
    """
    if env is None:
        return []
    if isinstance(env, Mapping):
        out: list[dict[str, Any]] = []
        for key, value in env.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"env: variable names must be non-empty strings, got {key!r}")
            out.append({"name": key, "value": "" if value is None else str(value)})
        return out
    if isinstance(env, str | bytes) or not isinstance(env, Sequence):  # type: ignore[unreachable]
        raise TypeError(
            f"env must be a dict of name to value or a list of {{'name', 'value'}} dicts, "
            f"got {type(env).__name__}"
        )
    items: list[dict[str, Any]] = []
    for i, item in enumerate(env):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f"env[{i}] must be a dict with a 'name' key, got {item!r}")
        items.append(copy.deepcopy(dict(item)))
    return items


def normalize_command(command: str | Sequence[str] | None) -> list[str]:
    """A command as a list of words: ``"dask worker"`` → ``["dask", "worker"]``."""
    if command is None:
        command = DEFAULT_WORKER_COMMAND
    words = command.split() if isinstance(command, str) else [str(w) for w in command]
    if not words:
        raise ValueError("worker_command must not be empty")
    return words


def check_resources(resources: Resources, *, argument: str = "resources") -> dict[str, Any]:
    """Check a container ``resources`` mapping and return a copy.

    Unknown top-level keys are errors with a suggestion (``'limit'`` → did you mean
    ``'limits'``?), and quantities must parse as Kubernetes quantities.
    """
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise TypeError(
            f"{argument} must be a dict like {{'requests': {{'memory': '2Gi'}}, "
            f"'limits': {{'memory': '4Gi'}}}}, got {type(resources).__name__}"
        )
    for key, value in resources.items():
        if key not in RESOURCE_KEYS:
            close = difflib.get_close_matches(str(key), RESOURCE_KEYS, n=1, cutoff=0.5)
            hint = f" did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{argument} has an unknown key {key!r}:{hint} "
                f"allowed keys are {', '.join(repr(k) for k in RESOURCE_KEYS)}"
            )
        if key == "claims":
            continue
        if not isinstance(value, Mapping):
            raise ValueError(
                f"{argument}[{key!r}] must be a dict of resource name to quantity "
                f"(e.g. {{'memory': '2Gi', 'cpu': '1'}}), got {value!r}"
            )
        for resource, quantity in value.items():
            if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
                raise ValueError(
                    f"{argument}[{key!r}][{resource!r}] must be a quantity such as '2Gi' "
                    f"or 1, got {quantity!r}"
                )
            if not _QUANTITY.match(str(quantity).strip()):
                raise ValueError(
                    f"{argument}[{key!r}][{resource!r}] = {quantity!r} is not a Kubernetes "
                    "quantity (examples: '500m', '2', '2Gi', '512Mi', '1e9')"
                )
    return copy.deepcopy(dict(resources))


def check_cluster_name(name: str) -> str:
    """``name`` if it is a usable DaskCluster name, else a ValueError naming the fix."""
    if not isinstance(name, str) or not name:
        raise ValueError("a cluster name is required (name='my-cluster')")
    problems = naming.check_cluster_name(name)
    if problems:
        raise ValueError("; ".join(problems))
    return name


def check_worker_group_name(cluster_name: str, name: str) -> str:
    """The full DaskWorkerGroup name for ``name`` within ``cluster_name``, checked."""
    if not isinstance(name, str) or not name:
        raise ValueError("a worker group name is required")
    full = name if name.startswith(f"{cluster_name}-") else f"{cluster_name}-{name}"
    if not naming.is_dns_label(full) or len(full) > naming.max_worker_group_name_length():
        raise ValueError(
            f"worker group name {full!r} must be lower-case letters, digits and '-', and at most "
            f"{naming.max_worker_group_name_length()} characters so its worker pod names fit"
        )
    return full


def check_service_type(service_type: str) -> str:
    if service_type not in SERVICE_TYPES:
        raise ValueError(
            f"scheduler_service_type={service_type!r} is not one of {', '.join(SERVICE_TYPES)}"
        )
    return service_type


def _check_replicas(n: Any, argument: str = "n_workers") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{argument} must be a non-negative integer, got {n!r}")
    return n


# --------------------------------------------------------------------------------------------
# builders


def _container_extras(env: EnvLike, resources: Resources) -> dict[str, Any]:
    return {"env": normalize_env(env), "resources": check_resources(resources)}


def _pod_settings(
    node_selector: Mapping[str, str] | None,
    tolerations: Sequence[Mapping[str, Any]] | None,
    image_pull_secrets: Sequence[str | Mapping[str, str]] | None,
) -> dict[str, Any]:
    """PodSpec fields for the common placement and registry settings (only those given)."""
    settings: dict[str, Any] = {}
    if node_selector:
        if not isinstance(node_selector, Mapping):
            raise TypeError("node_selector must be a dict of label to value")
        settings["nodeSelector"] = {str(k): str(v) for k, v in node_selector.items()}
    if tolerations:
        if isinstance(tolerations, Mapping) or not all(isinstance(t, Mapping) for t in tolerations):
            raise TypeError(
                "tolerations must be a list of dicts like "
                "{'key': 'gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}"
            )
        settings["tolerations"] = [copy.deepcopy(dict(t)) for t in tolerations]
    if image_pull_secrets:
        if isinstance(image_pull_secrets, str):
            image_pull_secrets = [image_pull_secrets]
        settings["imagePullSecrets"] = [
            {"name": s} if isinstance(s, str) else dict(s) for s in image_pull_secrets
        ]
    return settings


def make_worker_spec(
    image: str = DEFAULT_IMAGE,
    n_workers: int = 3,
    resources: Resources = None,
    env: EnvLike = None,
    worker_command: str | Sequence[str] | None = DEFAULT_WORKER_COMMAND,
    cluster_name: str | None = None,
    *,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    image_pull_secrets: Sequence[str | Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The ``worker`` section of a DaskCluster or DaskWorkerGroup: ``{"replicas", "spec"}``.

    ``spec`` is a Kubernetes PodSpec, so ``worker_spec["spec"]["nodeSelector"] = {...}`` works as
    in the reference documentation; ``node_selector``, ``tolerations`` and
    ``image_pull_secrets`` (Secret names) set the same fields without dict surgery.
    ``cluster_name`` is accepted for compatibility and unused: the worker group is tied to its
    cluster by :meth:`KubeCluster.add_worker_group`.
    """
    del cluster_name
    args = [
        *normalize_command(worker_command),
        "--name",
        f"$({c.ENV_WORKER_NAME})",
        "--dashboard",
        "--dashboard-address",
        str(WORKER_DASHBOARD_PORT),
    ]
    return {
        "replicas": _check_replicas(n_workers),
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "args": args,
                    **_container_extras(env, resources),
                    "ports": [
                        {
                            "name": "http-dashboard",
                            "containerPort": WORKER_DASHBOARD_PORT,
                            "protocol": "TCP",
                        }
                    ],
                }
            ],
            **_pod_settings(node_selector, tolerations, image_pull_secrets),
        },
    }


def make_scheduler_spec(
    cluster_name: str,
    image: str = DEFAULT_IMAGE,
    resources: Resources = None,
    env: EnvLike = None,
    scheduler_service_type: str = "ClusterIP",
    jupyter: bool = False,
    *,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    image_pull_secrets: Sequence[str | Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The ``scheduler`` section of a DaskCluster: ``{"spec": PodSpec, "service": ServiceSpec}``."""
    args = ["dask-scheduler"]
    if jupyter:
        args.append("--jupyter")
    probe = {"httpGet": {"port": "http-dashboard", "path": "/health"}}
    return {
        "spec": {
            "containers": [
                {
                    "name": "scheduler",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "args": args,
                    **_container_extras(env, resources),
                    "ports": [
                        {
                            "name": "tcp-comm",
                            "containerPort": c.DEFAULT_SCHEDULER_PORT,
                            "protocol": "TCP",
                        },
                        {
                            "name": "http-dashboard",
                            "containerPort": c.DEFAULT_DASHBOARD_PORT,
                            "protocol": "TCP",
                        },
                    ],
                    "readinessProbe": {**probe, "initialDelaySeconds": 5, "periodSeconds": 10},
                    "livenessProbe": {**probe, "initialDelaySeconds": 15, "periodSeconds": 20},
                }
            ],
            **_pod_settings(node_selector, tolerations, image_pull_secrets),
        },
        "service": {
            "type": check_service_type(scheduler_service_type),
            "selector": {
                c.LABEL_CLUSTER: cluster_name,
                c.LABEL_COMPONENT: "scheduler",
            },
            "ports": [
                {
                    "name": "tcp-comm",
                    "protocol": "TCP",
                    "port": c.DEFAULT_SCHEDULER_PORT,
                    "targetPort": "tcp-comm",
                },
                {
                    "name": "http-dashboard",
                    "protocol": "TCP",
                    "port": c.DEFAULT_DASHBOARD_PORT,
                    "targetPort": "http-dashboard",
                },
            ],
        },
    }


def make_cluster_spec(
    name: str,
    image: str = DEFAULT_IMAGE,
    n_workers: int | None = None,
    resources: Resources = None,
    env: EnvLike = None,
    worker_command: str | Sequence[str] | None = DEFAULT_WORKER_COMMAND,
    scheduler_service_type: str = "ClusterIP",
    idle_timeout: int | None = 0,
    jupyter: bool = False,
    *,
    scheduler_resources: Resources = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    image_pull_secrets: Sequence[str | Mapping[str, str]] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    idle_action: str | None = None,
) -> dict[str, Any]:
    """A DaskCluster object: scheduler Pod and Service, a default worker group of ``n_workers``.

    The result is a plain dict you may edit before passing it to
    ``KubeCluster(custom_cluster_spec=...)``; ``KubeCluster(**kw)`` is the same as
    ``KubeCluster(custom_cluster_spec=make_cluster_spec(**kw))``.

    Beyond the reference's arguments (keyword-only): ``scheduler_resources`` (the scheduler's
    own, instead of ``resources``), ``node_selector``, ``tolerations`` and
    ``image_pull_secrets`` (for scheduler and workers), ``labels`` / ``annotations`` on the
    DaskCluster, which the operator propagates to everything it creates, and ``idle_action``
    (``"Delete"``, the default, or ``"Suspend"``: what ``idle_timeout`` does).
    """
    check_cluster_name(name)
    idle = 0 if idle_timeout is None else idle_timeout
    if isinstance(idle, bool) or not isinstance(idle, int) or idle < 0:
        raise ValueError(f"idle_timeout must be a non-negative number of seconds, got {idle!r}")
    placement: dict[str, Any] = {
        "node_selector": node_selector,
        "tolerations": tolerations,
        "image_pull_secrets": image_pull_secrets,
    }
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = {str(k): str(v) for k, v in labels.items()}
    if annotations:
        metadata["annotations"] = {str(k): str(v) for k, v in annotations.items()}
    if idle_action is not None and idle_action not in ("Delete", "Suspend"):
        raise ValueError(f"idle_action must be 'Delete' or 'Suspend', got {idle_action!r}")
    actions = {"idleAction": idle_action} if idle_action is not None else {}
    obj = {
        "apiVersion": c.API_VERSION,
        "kind": "DaskCluster",
        "metadata": metadata,
        "spec": {
            "idleTimeout": idle,
            **actions,
            "worker": make_worker_spec(
                image=image,
                n_workers=3 if n_workers is None else n_workers,
                resources=resources,
                env=env,
                worker_command=worker_command,
                **placement,
            ),
            "scheduler": make_scheduler_spec(
                cluster_name=name,
                image=image,
                resources=resources if scheduler_resources is None else scheduler_resources,
                env=env,
                scheduler_service_type=scheduler_service_type,
                jupyter=jupyter,
                **placement,
            ),
        },
    }
    return validate(obj)


def make_worker_group_spec(
    cluster_name: str,
    name: str,
    worker: Mapping[str, Any],
    namespace: str | None = None,
) -> dict[str, Any]:
    """A DaskWorkerGroup object named ``<cluster>-<name>`` wrapping a ``worker`` section.

    ``worker`` is what :func:`make_worker_spec` returns. A full DaskWorkerGroup (with ``kind``) is
    accepted too: its ``spec.worker`` is used.
    """
    if worker.get("kind") == "DaskWorkerGroup":
        worker = worker.get("spec", {}).get("worker", {})
    if "spec" not in worker:
        raise ValueError("a worker spec needs a 'spec' (PodSpec); build one with make_worker_spec")
    metadata: dict[str, Any] = {"name": check_worker_group_name(cluster_name, name)}
    if namespace:
        metadata["namespace"] = namespace
    obj = {
        "apiVersion": c.API_VERSION,
        "kind": "DaskWorkerGroup",
        "metadata": metadata,
        "spec": {"cluster": cluster_name, "worker": copy.deepcopy(dict(worker))},
    }
    return validate(obj)


def make_autoscaler_spec(
    cluster_name: str,
    minimum: int,
    maximum: int,
    namespace: str | None = None,
    *,
    scale_up_window: int | None = None,
    scale_down_window: int | None = None,
    worker_group: str | None = None,
) -> dict[str, Any]:
    """A DaskAutoscaler clamping one worker group to min/max: the default group (the
    autoscaler is named after the cluster) or ``worker_group`` (a DaskWorkerGroup's full name,
    which the autoscaler is then named after).

    ``scale_up_window``/``scale_down_window``: stabilisation windows in seconds (the
    operator's defaults when ``None``).
    """
    _check_replicas(minimum, "minimum")
    _check_replicas(maximum, "maximum")
    if minimum > maximum:
        raise ValueError(f"adapt: minimum={minimum} is larger than maximum={maximum}")
    metadata: dict[str, Any] = {"name": worker_group or cluster_name}
    if namespace:
        metadata["namespace"] = namespace
    auto_spec: dict[str, Any] = {"cluster": cluster_name, "minimum": minimum, "maximum": maximum}
    if worker_group:
        auto_spec["workerGroup"] = worker_group
    for key, window in (("scaleUp", scale_up_window), ("scaleDown", scale_down_window)):
        if window is not None:
            _check_replicas(window, f"{key} stabilisation window")
            auto_spec[key] = {"stabilizationWindowSeconds": window}
    obj = {
        "apiVersion": c.API_VERSION,
        "kind": "DaskAutoscaler",
        "metadata": metadata,
        "spec": auto_spec,
    }
    return validate(obj)


# --------------------------------------------------------------------------------------------
# user-supplied specs


def load_cluster_spec(spec: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A DaskCluster object from a dict or the path of a YAML file, checked and copied."""
    if isinstance(spec, str | Path):
        path = Path(spec).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"custom_cluster_spec: cannot read {str(path)!r}: {exc}") from exc
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        clusters = [d for d in docs if isinstance(d, dict) and d.get("kind") == "DaskCluster"]
        if len(clusters) != 1:
            raise ValueError(
                f"custom_cluster_spec: {str(path)!r} must hold exactly one DaskCluster, "
                f"found {len(clusters)}"
            )
        obj = clusters[0]
    elif isinstance(spec, Mapping):
        obj = copy.deepcopy(dict(spec))
    else:
        raise TypeError(
            f"custom_cluster_spec must be a dict or a YAML path, got {type(spec).__name__}"
        )
    return validate(obj)


def cluster_name_of(obj: Mapping[str, Any]) -> str:
    name = obj.get("metadata", {}).get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("the DaskCluster spec has no metadata.name")
    return name


def scheduler_service_type_of(obj: Mapping[str, Any]) -> str:
    service = obj.get("spec", {}).get("scheduler", {}).get("service", {}) or {}
    return str(service.get("type") or "ClusterIP")


def service_port(obj: Mapping[str, Any], name: str, default: int) -> int:
    """The port named ``name`` of a ServiceSpec-like or Service object, else ``default``."""
    spec = obj.get("spec", obj)
    for port in spec.get("ports") or ():
        if port.get("name") == name and isinstance(port.get("port"), int):
            return int(port["port"])
    return default


# --------------------------------------------------------------------------------------------
# validation: the one place the dask_crds models plug in


def _pod_spec_problems(pod_spec: Any, where: str) -> list[str]:
    if not isinstance(pod_spec, Mapping):
        return [f"{where} must be a PodSpec (a dict with 'containers')"]
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [f"{where}.containers must be a non-empty list"]
    problems: list[str] = []
    for i, container in enumerate(containers):
        cwhere = f"{where}.containers[{i}]"
        if not isinstance(container, Mapping) or not container.get("name"):
            problems.append(f"{cwhere} needs a 'name'")
            continue
        try:
            check_resources(container.get("resources"), argument=f"{cwhere}.resources")
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
        try:
            normalize_env(container.get("env"))
        except (TypeError, ValueError) as exc:
            problems.append(f"{cwhere}.{exc}")
    return problems


def _structural_problems(obj: Mapping[str, Any]) -> list[str]:
    kind = obj.get("kind")
    if kind not in c.KINDS:
        return [f"kind must be one of {', '.join(c.KINDS)}, got {kind!r}"]
    problems: list[str] = []
    if obj.get("apiVersion") != c.API_VERSION:
        problems.append(f"apiVersion must be {c.API_VERSION!r}, got {obj.get('apiVersion')!r}")
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        problems.append("metadata.name is required")
    elif kind == "DaskCluster":
        problems += naming.check_cluster_name(str(metadata["name"]))
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return [*problems, "spec is required"]
    if kind in ("DaskCluster", "DaskWorkerGroup"):
        worker = spec.get("worker")
        if not isinstance(worker, Mapping):
            problems.append("spec.worker is required")
        else:
            replicas = worker.get("replicas", 0)
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                problems.append(f"spec.worker.replicas must be >= 0, got {replicas!r}")
            problems += _pod_spec_problems(worker.get("spec"), "spec.worker.spec")
    if kind == "DaskCluster":
        scheduler = spec.get("scheduler")
        if not isinstance(scheduler, Mapping):
            problems.append("spec.scheduler is required")
        else:
            problems += _pod_spec_problems(scheduler.get("spec"), "spec.scheduler.spec")
            service = scheduler.get("service")
            if not isinstance(service, Mapping) or not service.get("ports"):
                problems.append("spec.scheduler.service with ports is required")
    if kind in ("DaskWorkerGroup", "DaskAutoscaler") and not spec.get("cluster"):
        problems.append("spec.cluster (the DaskCluster name) is required")
    return problems


def _model_validate(obj: Mapping[str, Any]) -> None:
    """Check ``obj`` with the ``dask_crds`` model of its kind (the CRDs' own rules)."""
    _, problems = crd_validation.check(obj)
    errors = [p for p in problems if p.severity == "error"]
    for warning in (p for p in problems if p.severity != "error"):
        logger.warning("%s %s: %s", obj.get("kind"), obj.get("metadata", {}).get("name"), warning)
    if errors:
        raise ValueError(f"invalid {obj.get('kind')}: " + "; ".join(str(p) for p in errors))


def validate(obj: dict[str, Any]) -> dict[str, Any]:
    """Check a custom resource object before it is sent; return it unchanged.

    Raises :class:`ValueError` listing every problem found.
    """
    problems = _structural_problems(obj)
    if problems:
        raise ValueError(f"invalid {obj.get('kind', 'object')}: " + "; ".join(problems))
    _model_validate(obj)
    return obj
