"""Pure builders: custom resource -> the Kubernetes objects the operator creates.

Every function takes plain data (a resource body as the API serves it, or its parts) and returns
plain dicts in Kubernetes wire format. No I/O, no clock, no randomness except the worker pod name
suffix, which callers may pass in. Unit-tested as data.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from dask_crds import constants as c
from dask_crds import labels as lbl
from dask_crds import naming
from dask_crds.models import DEFAULT_REPLICAS

#: Annotation holding a hash of the pod template an object was built from.
TEMPLATE_HASH_ANNOTATION = "kubernetes.dask.org/template-hash"

#: distributed's default scheduler HTTP routes plus the HTTP API (``/api/v1/...``) the operator
#: uses to list and retire workers.
SCHEDULER_HTTP_ROUTES: list[str] = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
]
ENV_SCHEDULER_HTTP_ROUTES = "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"

#: The operator's scheduler preload (``scheduler_preload.py``), as the source text distributed
#: runs: it serves the per-resource demand the autoscaler sizes worker groups by.
SCHEDULER_PRELOAD_SOURCE = (
    resources.files("dask_controller").joinpath("scheduler_preload.py").read_text("utf-8")
)
ENV_SCHEDULER_PRELOAD = "DASK_DISTRIBUTED__SCHEDULER__PRELOAD"

COMM_PORT_NAMES = ("tcp-comm", "comm")
DASHBOARD_PORT_NAMES = ("http-dashboard", "dashboard")

Obj = dict[str, Any]
Body = Mapping[str, Any]


# -- small helpers ---------------------------------------------------------------------------


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def stable_hash(data: Any) -> str:
    """A short, stable hash of JSON-able ``data`` (key order does not matter)."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def owner_reference(owner: Body) -> Obj:
    """An ownerReference making ``owner`` the controller of a child (garbage collection)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", c.API_VERSION),
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(
    name: str,
    namespace: str,
    top: Mapping[str, Any] | None,
    sub: Mapping[str, Any] | None,
    base: Mapping[str, str],
    owner: Body | None,
) -> Obj:
    """metadata with labels/annotations merged ``top-level <= subresource <= base``."""
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "labels": lbl.merge_labels(
            _str_map(_get(top, "labels")), _str_map(_get(sub, "labels")), base
        ),
        "annotations": lbl.merge_annotations(
            _str_map(_get(top, "annotations")), _str_map(_get(sub, "annotations"))
        ),
    }
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return meta


def _with_env(pod_spec: Mapping[str, Any], env: Mapping[str, str]) -> Obj:
    """A copy of ``pod_spec`` whose every container has ``env`` first (the operator's values win
    over same-named user entries; later user entries can refer to them as ``$(NAME)``)."""
    spec: Obj = copy.deepcopy(dict(pod_spec))
    ours = [{"name": k, "value": v} for k, v in env.items()]
    containers = []
    for container in spec.get("containers") or []:
        container = dict(container)
        user_env = [e for e in container.get("env") or [] if e.get("name") not in env]
        container["env"] = [*ours, *user_env]
        containers.append(container)
    spec["containers"] = containers
    return spec


def _port(ports: Iterable[Mapping[str, Any]] | None, names: tuple[str, ...], default: int) -> int:
    by_name = {p.get("name"): p for p in ports or [] if isinstance(p, Mapping)}
    for name in names:
        port = by_name.get(name)
        if port is not None and port.get("port") is not None:
            return int(port["port"])
    return default


# -- scheduler -------------------------------------------------------------------------------


def default_service_spec(cluster_name: str) -> Obj:
    """The scheduler Service spec used when a DaskCluster gives none."""
    return {
        "type": "ClusterIP",
        "selector": scheduler_selector(cluster_name),
        "ports": [
            {"name": "tcp-comm", "protocol": "TCP", "port": c.DEFAULT_SCHEDULER_PORT,
             "targetPort": "tcp-comm"},
            {"name": "http-dashboard", "protocol": "TCP", "port": c.DEFAULT_DASHBOARD_PORT,
             "targetPort": "http-dashboard"},
        ],
    }  # fmt: skip


def scheduler_selector(cluster_name: str) -> dict[str, str]:
    return {c.LABEL_CLUSTER: cluster_name, c.LABEL_COMPONENT: "scheduler"}


def service_spec(cluster: Body) -> Obj:
    """The scheduler Service spec of a DaskCluster (the user's, else the default)."""
    name = cluster["metadata"]["name"]
    spec = _get(cluster, "spec", "scheduler", "service")
    if not isinstance(spec, Mapping) or not spec:
        return default_service_spec(name)
    out: Obj = copy.deepcopy(dict(spec))
    if not out.get("selector"):
        out["selector"] = scheduler_selector(name)
    return out


def comm_port(service: Mapping[str, Any] | None) -> int:
    """The scheduler comm port of a Service spec: the port named ``tcp-comm`` (or ``comm``)."""
    return _port(_get(service, "ports"), COMM_PORT_NAMES, c.DEFAULT_SCHEDULER_PORT)


def dashboard_port(service: Mapping[str, Any] | None) -> int | None:
    """The scheduler HTTP port of a Service spec, or ``None`` if the Service exposes none."""
    port = _port(_get(service, "ports"), DASHBOARD_PORT_NAMES, -1)
    return None if port < 0 else port


def scheduler_address(cluster_name: str, namespace: str, port: int, cluster_domain: str) -> str:
    return naming.scheduler_address(cluster_name, namespace, port, cluster_domain)


def scheduler_http_url(
    cluster_name: str, namespace: str, port: int | None, cluster_domain: str
) -> str | None:
    if port is None:
        return None
    host = f"{naming.scheduler_name(cluster_name)}.{namespace}.svc.{cluster_domain}"
    return f"http://{host}:{port}"


def controller_scheduler_endpoints(
    cluster_name: str, namespace: str, service: Mapping[str, Any], cluster_domain: str
) -> tuple[str, str | None]:
    """(comm address, HTTP URL) the *controller* uses to reach a scheduler.

    The Service's ClusterIP when it has one (no DNS needed), else its DNS name.
    """
    ip = _get(service, "clusterIP")
    if isinstance(ip, str) and ip and ip != "None":
        host = f"[{ip}]" if ":" in ip else ip
    else:
        host = f"{naming.scheduler_name(cluster_name)}.{namespace}.svc.{cluster_domain}"
    dash = dashboard_port(service)
    http = f"http://{host}:{dash}" if dash is not None else None
    return f"tcp://{host}:{comm_port(service)}", http


def scheduler_pod_template_hash(cluster: Body, cluster_domain: str) -> str:
    return stable_hash(
        {"spec": _get(cluster, "spec", "scheduler", "spec"), "domain": cluster_domain,
         "port": comm_port(service_spec(cluster))}
    )  # fmt: skip


def build_scheduler_pod(cluster: Body, cluster_domain: str = c.DEFAULT_CLUSTER_DOMAIN) -> Obj:
    """The scheduler Pod ``<cluster>-scheduler`` of a DaskCluster."""
    meta_in = cluster["metadata"]
    name, namespace = meta_in["name"], meta_in.get("namespace") or "default"
    user_spec = _get(cluster, "spec", "scheduler", "spec") or {}
    address = scheduler_address(name, namespace, comm_port(service_spec(cluster)), cluster_domain)
    env = {c.ENV_SCHEDULER_ADDRESS: address}
    user_env_names = {
        e.get("name") for ctr in user_spec.get("containers") or [] for e in ctr.get("env") or []
    }
    if ENV_SCHEDULER_HTTP_ROUTES not in user_env_names:  # a user's own routes are respected
        env[ENV_SCHEDULER_HTTP_ROUTES] = repr(SCHEDULER_HTTP_ROUTES)
    if ENV_SCHEDULER_PRELOAD not in user_env_names:  # nor are a user's own preloads
        env[ENV_SCHEDULER_PRELOAD] = repr([SCHEDULER_PRELOAD_SOURCE])
    metadata = _metadata(
        naming.scheduler_name(name),
        namespace,
        meta_in,
        _get(cluster, "spec", "scheduler", "metadata"),
        lbl.base_labels(name, "scheduler"),
        cluster,
    )
    metadata["annotations"][TEMPLATE_HASH_ANNOTATION] = scheduler_pod_template_hash(
        cluster, cluster_domain
    )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": _with_env(user_spec, env)}  # fmt: skip


def build_scheduler_service(cluster: Body) -> Obj:
    """The scheduler Service ``<cluster>-scheduler`` of a DaskCluster."""
    meta_in = cluster["metadata"]
    name, namespace = meta_in["name"], meta_in.get("namespace") or "default"
    metadata = _metadata(
        naming.scheduler_name(name),
        namespace,
        meta_in,
        _get(cluster, "spec", "scheduler", "metadata"),
        lbl.base_labels(name, "scheduler"),
        cluster,
    )
    spec = service_spec(cluster)
    metadata["annotations"][TEMPLATE_HASH_ANNOTATION] = stable_hash(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


# -- worker groups and workers ---------------------------------------------------------------


def suspended(cluster: Body) -> bool:
    """Whether a DaskCluster is suspended (``spec.suspend``): it keeps no pods."""
    return bool(_get(cluster, "spec", "suspend"))


def desired_replicas(worker: Mapping[str, Any] | None, default: int = DEFAULT_REPLICAS) -> int:
    value = _get(worker, "replicas")
    return max(0, int(value)) if value is not None else default


def build_default_worker_group(cluster: Body) -> Obj:
    """The DaskWorkerGroup ``<cluster>-default`` every DaskCluster owns.

    The cluster's labels/annotations and ``spec.worker.metadata`` go on the group's metadata
    (from there they reach the worker pods); ``spec.worker.replicas``/``spec`` become the group's.
    """
    meta_in = cluster["metadata"]
    name, namespace = meta_in["name"], meta_in.get("namespace") or "default"
    group_name = naming.default_worker_group_name(name)
    worker = _get(cluster, "spec", "worker") or {}
    metadata = _metadata(
        group_name,
        namespace,
        meta_in,
        _get(worker, "metadata"),
        lbl.base_labels(name, worker_group=group_name),
        cluster,
    )
    spec_worker: Obj = {
        "replicas": desired_replicas(worker),
        "spec": copy.deepcopy(_get(worker, "spec") or {}),
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": "DaskWorkerGroup",
        "metadata": metadata,
        "spec": {"cluster": name, "worker": spec_worker},
    }


def worker_pod_template_hash(group: Body, scheduler_addr: str) -> str:
    return stable_hash({"spec": _get(group, "spec", "worker", "spec"), "scheduler": scheduler_addr})


def worker_selector(cluster_name: str, group_name: str) -> dict[str, str]:
    """Labels that select exactly the worker pods of one group."""
    return {
        c.LABEL_CLUSTER: cluster_name,
        c.LABEL_COMPONENT: "worker",
        c.LABEL_WORKER_GROUP: group_name,
    }


def build_worker_pod(
    group: Body,
    scheduler_addr: str,
    name: str | None = None,
) -> Obj:
    """One worker Pod ``<group>-worker-<suffix>`` of a DaskWorkerGroup.

    ``DASK_WORKER_NAME`` is the pod name (so the scheduler's worker name *is* the pod name) and
    ``DASK_SCHEDULER_ADDRESS`` the scheduler Service's comm address.
    """
    meta_in = group["metadata"]
    group_name, namespace = meta_in["name"], meta_in.get("namespace") or "default"
    cluster_name = str(_get(group, "spec", "cluster"))
    pod_name = name or naming.worker_pod_name(group_name)
    worker = _get(group, "spec", "worker") or {}
    metadata = _metadata(
        pod_name,
        namespace,
        meta_in,
        _get(worker, "metadata"),
        lbl.base_labels(cluster_name, "worker", worker_group=group_name),
        group,
    )
    metadata["annotations"][TEMPLATE_HASH_ANNOTATION] = worker_pod_template_hash(
        group, scheduler_addr
    )
    env = {c.ENV_WORKER_NAME: pod_name, c.ENV_SCHEDULER_ADDRESS: scheduler_addr}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": _with_env(_get(worker, "spec") or {}, env)}  # fmt: skip


def propagated_metadata(built: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations of a built object that must be kept up to date on the live one."""
    meta = built.get("metadata") or {}
    return dict(meta.get("labels") or {}), dict(meta.get("annotations") or {})


# -- DaskJob ---------------------------------------------------------------------------------

#: The runner pod's restartPolicy when the DaskJob gives none (as in the reference operator).
DEFAULT_RUNNER_RESTART_POLICY = "OnFailure"


def job_runner_pod_name(job_name: str, attempt: int = 0) -> str:
    """Name of attempt ``attempt`` of a DaskJob's runner pod: ``<job>-runner``, then
    ``<job>-runner-1``, ``<job>-runner-2``, ..."""
    base = naming.job_runner_name(job_name)
    return base if attempt == 0 else f"{base}-{attempt}"


def job_runner_attempt(job_name: str, pod_name: str) -> int | None:
    """The attempt number of a runner pod name (inverse of :func:`job_runner_pod_name`)."""
    base = naming.job_runner_name(job_name)
    if pod_name == base:
        return 0
    tail = pod_name[len(base) + 1 :] if pod_name.startswith(f"{base}-") else ""
    return int(tail) if tail.isdigit() else None


def job_runner_selector(job_name: str) -> dict[str, str]:
    """Labels that select the runner pods of a DaskJob (every attempt)."""
    return {c.LABEL_JOB: job_name, c.LABEL_COMPONENT: "job-runner"}


def build_job_cluster(job: Body) -> Obj:
    """The DaskCluster of a DaskJob: named like the job, owned by it, labelled
    ``dask.org/job-name``. The job's labels/annotations, then ``spec.cluster.metadata``, then the
    job label (``top-level <= subresource <= base``); tooling annotations are dropped."""
    meta_in = job["metadata"]
    name, namespace = meta_in["name"], meta_in.get("namespace") or "default"
    metadata = _metadata(
        name,
        namespace,
        meta_in,
        _get(job, "spec", "cluster", "metadata"),
        {c.LABEL_JOB: name},
        job,
    )
    return {
        "apiVersion": c.API_VERSION,
        "kind": "DaskCluster",
        "metadata": metadata,
        "spec": copy.deepcopy(_get(job, "spec", "cluster", "spec") or {}),
    }


def build_job_runner_pod(
    job: Body,
    scheduler_addr: str,
    attempt: int = 0,
) -> Obj:
    """Runner pod attempt ``attempt`` of a DaskJob, owned by the job.

    Every container gets ``DASK_SCHEDULER_ADDRESS`` (so a bare ``distributed.Client()``
    connects); ``restartPolicy`` defaults to ``OnFailure``.
    """
    meta_in = job["metadata"]
    name, namespace = meta_in["name"], meta_in.get("namespace") or "default"
    metadata = _metadata(
        job_runner_pod_name(name, attempt),
        namespace,
        meta_in,
        _get(job, "spec", "job", "metadata"),
        lbl.base_labels(name, "job-runner", job=name),
        job,
    )
    spec = _with_env(
        _get(job, "spec", "job", "spec") or {}, {c.ENV_SCHEDULER_ADDRESS: scheduler_addr}
    )
    spec.setdefault("restartPolicy", DEFAULT_RUNNER_RESTART_POLICY)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
