# distributed's Cluster and rpc are not annotated; calling them is the point of this module.
# mypy: disable-error-code="no-untyped-call"
"""``KubeCluster``: a Dask cluster manager backed by the Dask operator's custom resources.

The implementation is async; every public method is a thin ``self.sync`` wrapper around its
``_name`` coroutine (distributed's SyncMethodMixin), so the same object works from plain Python,
from a notebook, and with ``asynchronous=True`` inside a running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import html
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.config
from distributed.core import Status, rpc
from distributed.deploy.cluster import Cluster
from distributed.utils import Log, Logs
from rich.table import Table

from dask_crds import constants as c
from dask_crds import naming
from dask_kubecluster import config as kconfig
from dask_kubecluster import discovery, spec
from dask_kubecluster.connection import ConnectionPlan, Endpoint, format_dashboard_link
from dask_kubecluster.connection import plan_connection as _plan_connection
from dask_kubecluster.errors import (
    ClusterExistsError,
    ClusterNotFoundError,
    Failed,
    KubeClusterError,
    Ready,
    ResourceTimeoutError,
    assess_startup,
    classify_pod,
    error_for_problem,
)
from dask_kubecluster.kube import Kube
from dask_kubecluster.modes import CreateMode
from dask_kubecluster.portforward import PortForward
from dask_kubecluster.progress import StartupStatus

logger = logging.getLogger(__name__)

#: Seconds between two looks at the API while waiting for the scheduler.
POLL_INTERVAL = 1.0
#: Seconds ``scale()`` waits for a deleted DaskAutoscaler to be gone before setting replicas.
AUTOSCALER_GONE_TIMEOUT = 30.0


def _delete_cluster_now(name: str, namespace: str, config_file: str | None) -> None:
    """Delete a DaskCluster from a finalizer: never touches the caller's event loop.

    Runs a private event loop, in this thread when none is running here (interpreter exit), in a
    helper thread otherwise. Errors are logged, never raised.
    """

    async def go() -> None:
        kube = await Kube.connect(namespace, config_file=config_file)
        try:
            await kube.delete_cluster(name)
        finally:
            await kube.close()

    def run() -> None:
        try:
            asyncio.run(go())
        except Exception:
            logger.warning("could not delete DaskCluster %s/%s", namespace, name, exc_info=True)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run()
        return
    thread = threading.Thread(target=run, name=f"delete-{name}", daemon=True)
    thread.start()
    thread.join(timeout=30)


class KubeCluster(Cluster):
    """Launch a Dask cluster on Kubernetes through the Dask operator, or connect to one.

    Parameters
    ----------
    name
        Name of the DaskCluster. Ignored in favour of ``custom_cluster_spec["metadata"]["name"]``
        when a custom spec is given. Default: ``kubernetes.name`` (``dask-{user}-{uuid}``).
    namespace
        Default: the pod's namespace when running in Kubernetes, else the kubeconfig context's
        namespace, else ``"default"``.
    image, n_workers, resources, env, worker_command, scheduler_service_type, idle_timeout, jupyter
    idle_action
        Passed to :func:`~dask_kubecluster.make_cluster_spec`. ``resources`` applies to the
        scheduler and the workers; it is checked before anything is created.
    port_forward_cluster_ip
        None (default): port-forward a ClusterIP scheduler service when running outside
        Kubernetes. True: always port-forward. False: never (use the cluster DNS name).
    create_mode
        :class:`CreateMode`: create or connect (default), create only, connect only.
    shutdown_on_close
        Delete the DaskCluster on :meth:`close`. Default: True when this object created it,
        False when it connected to an existing one.
    resource_timeout
        Seconds to wait for the operator and the scheduler before raising a descriptive error
        (default 60).
    custom_cluster_spec
        A DaskCluster dict or the path of a YAML file, used instead of the keyword arguments.
    scheduler_forward_port
        Local port of the dashboard port-forward (default: any free port).
    scheduler_address
        Connect to this address instead of discovering one (you route the traffic yourself).
    scheduler_resources, node_selector, tolerations, image_pull_secrets, labels, annotations
        Common pod and metadata settings without editing a spec; see
        :func:`~dask_kubecluster.make_cluster_spec`.
    quiet
        No progress output.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        namespace: str | None = None,
        image: str | None = None,
        n_workers: int | None = None,
        resources: Mapping[str, Any] | None = None,
        env: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        worker_command: str | Sequence[str] | None = None,
        port_forward_cluster_ip: bool | None = None,
        create_mode: CreateMode | str | None = None,
        shutdown_on_close: bool | None = None,
        idle_timeout: int | None = None,
        idle_action: str | None = None,
        resource_timeout: float | None = None,
        scheduler_service_type: str | None = None,
        custom_cluster_spec: str | Path | Mapping[str, Any] | None = None,
        scheduler_forward_port: int | None = None,
        jupyter: bool | None = None,
        loop: Any = None,
        asynchronous: bool = False,
        quiet: bool = False,
        scheduler_address: str | None = None,
        scheduler_resources: Mapping[str, Any] | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Mapping[str, Any]] | None = None,
        image_pull_secrets: Sequence[str | Mapping[str, str]] | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        custom = kconfig.get("custom-cluster-spec", custom_cluster_spec)
        if custom is not None:
            self._spec = spec.load_cluster_spec(custom)
            name = spec.cluster_name_of(self._spec)
        else:
            name = name or kconfig.default_name()
            self._spec = spec.make_cluster_spec(
                name=name,
                image=kconfig.get("image", image),
                n_workers=kconfig.get("count.start", n_workers),
                resources=kconfig.get("resources", resources) or None,
                env=kconfig.get("env", env) or None,
                worker_command=kconfig.get("worker-command", worker_command),
                scheduler_service_type=kconfig.get(
                    "scheduler-service-type", scheduler_service_type
                ),
                idle_timeout=kconfig.get("idle-timeout", idle_timeout),
                idle_action=kconfig.get("idle-action", idle_action),
                jupyter=bool(kconfig.get("scheduler-jupyter", jupyter)),
                scheduler_resources=scheduler_resources,
                node_selector=node_selector,
                tolerations=tolerations,
                image_pull_secrets=image_pull_secrets,
                labels=labels,
                annotations=annotations,
            )
        spec_namespace = self._spec.get("metadata", {}).get("namespace")
        self.namespace: str = (
            namespace
            or spec_namespace
            or kconfig.get("namespace")
            or discovery.discover_namespace()
        )
        self._spec.setdefault("metadata", {})["namespace"] = self.namespace
        self.create_mode = CreateMode.parse(kconfig.get("create-mode", create_mode))
        self.shutdown_on_close = kconfig.get("shutdown-on-close", shutdown_on_close)
        self.resource_timeout = float(kconfig.get("resource-timeout", resource_timeout))
        self.port_forward_cluster_ip: bool | None = kconfig.get(
            "port-forward-cluster-ip", port_forward_cluster_ip
        )
        self.scheduler_forward_port: int = int(
            kconfig.get("scheduler-forward-port", scheduler_forward_port) or 0
        )
        self._explicit_address: str | None = kconfig.get("scheduler-address", scheduler_address)
        self._explicit_dashboard: str | None = kconfig.get("dashboard-address")
        self._config_file = os.environ.get("KUBECONFIG")
        self._kube: Kube | None = None
        self._forwards: list[PortForward] = []
        self._plan: ConnectionPlan | None = None
        self._created = False
        self._worker_groups: dict[str, int] = {}
        #: Worker group -> (minimum, maximum) of the DaskAutoscalers this object created.
        self._adapt_ranges: dict[str, tuple[int, int]] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = asyncio.Lock()

        super().__init__(name=name, loop=loop, asynchronous=asynchronous, quiet=quiet, **kwargs)
        if not self.called_from_running_loop:
            self._loop_runner.start()
            try:
                self.sync(self._start)
            except BaseException:
                self._loop_runner.stop()
                raise

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_name(cls, name: str, **kwargs: Any) -> KubeCluster:
        """Connect to the existing DaskCluster ``name``; fail if there is none.

        Closing the returned object leaves the cluster running unless ``shutdown_on_close=True``.
        """
        kwargs.setdefault("shutdown_on_close", False)
        kwargs["create_mode"] = CreateMode.CONNECT_ONLY
        return cls(name=name, **kwargs)

    def __await__(self) -> Any:
        async def _() -> KubeCluster:
            if self.status == Status.created:
                await self._start()
            return self

        return _().__await__()

    @property
    def spec(self) -> dict[str, Any]:
        """The DaskCluster object this cluster was created from (a copy)."""
        return copy.deepcopy(self._spec)

    async def _start(self) -> None:
        if self.status != Status.created:
            return
        self.status = Status.starting
        status = StartupStatus(f"KubeCluster {self.name}", self.quiet)
        try:
            with status:
                await self._start_inner(status)
        except BaseException:
            self._cluster_manager_logs.extend(status.history)
            await self._abort_start()
            raise
        self._cluster_manager_logs.extend(status.history)

    async def _start_inner(self, status: StartupStatus) -> None:
        status.update("connecting to the Kubernetes API")
        self._kube = kube = await Kube.connect(self.namespace, config_file=self._config_file)
        await kube.check_crds()
        existing = await kube.get_cluster(self.name)
        if existing is not None:
            if not self.create_mode.may_connect():
                raise ClusterExistsError(
                    f"a DaskCluster {self.name!r} exists in namespace {self.namespace!r} and "
                    "create_mode is CREATE_ONLY; choose another name or connect to it with "
                    f"KubeCluster.from_name({self.name!r})"
                )
            status.update(f"connecting to existing DaskCluster in namespace {self.namespace}")
        else:
            if not self.create_mode.may_create():
                raise ClusterNotFoundError(
                    f"no DaskCluster {self.name!r} in namespace {self.namespace!r} "
                    "(create_mode is CONNECT_ONLY)"
                )
            status.update(f"creating DaskCluster in namespace {self.namespace}")
            await kube.create_cluster(self._spec)
            self._created = True
        if self.shutdown_on_close is None:
            self.shutdown_on_close = self._created
        if self.shutdown_on_close:
            self._finalizer = weakref.finalize(
                self, _delete_cluster_now, self.name, self.namespace, self._config_file
            )

        await self._wait_for_scheduler(status)
        status.update("connecting to the scheduler")
        self._plan = await self._connect()
        self.scheduler_comm = rpc(self._plan.scheduler_address)
        name = self.name
        await Cluster._start(self)
        # Cluster._start adopts the name stored on the scheduler; ours addresses the API objects.
        self.name = name
        await self._refresh_worker_groups()
        status.done(f"ready ({self._plan.method}); dashboard at {self.dashboard_link}")

    async def _wait_for_scheduler(self, status: StartupStatus) -> None:
        kube = self._require_kube()
        started = time.monotonic()
        while True:
            cluster = await kube.get_cluster(self.name)
            pod = await kube.scheduler_pod(self.name)
            service = await kube.scheduler_service(self.name)
            decision = assess_startup(
                cluster,
                pod,
                service,
                name=self.name,
                namespace=self.namespace,
                elapsed=time.monotonic() - started,
                timeout=self.resource_timeout,
            )
            if isinstance(decision, Ready):
                return
            if isinstance(decision, Failed):
                problem = decision.problem
                if problem is not None and problem.kind in ("crash-loop", "failed"):
                    tail = await kube.previous_log_tail(problem.pod, problem.container)
                    raise error_for_problem(problem, tail)
                raise decision.error
            status.update(decision.status)
            await asyncio.sleep(POLL_INTERVAL)

    async def _connect(self) -> ConnectionPlan:
        """Decide how to reach the scheduler and set up port-forwards when needed."""
        kube = self._require_kube()
        deadline = time.monotonic() + self.resource_timeout
        while True:
            service = await kube.scheduler_service(self.name) or {}
            pod = await kube.scheduler_pod(self.name) or {}
            plan = _plan_connection(
                service,
                cluster=self.name,
                namespace=self.namespace,
                in_cluster=kube.in_cluster,
                port_forward_cluster_ip=self.port_forward_cluster_ip,
                scheduler_address=self._explicit_address,
                dashboard_address=self._explicit_dashboard,
                host_ip=(pod.get("status") or {}).get("hostIP"),
                cluster_domain=str(dask.config.get("kubernetes.cluster-domain")),
            )
            waiting_for_lb = (
                (service.get("spec") or {}).get("type") == "LoadBalancer"
                and plan.method not in ("load-balancer", "explicit", "in-cluster-dns")
                and time.monotonic() < deadline
            )
            if not waiting_for_lb:
                break
            await asyncio.sleep(POLL_INTERVAL)
        if plan.method != "port-forward":
            return plan
        comm = await self._forward(plan.comm.port, 0)
        dash = await self._forward(plan.dashboard.port, self.scheduler_forward_port)
        return ConnectionPlan(
            "port-forward", Endpoint("127.0.0.1", comm), Endpoint("localhost", dash)
        )

    async def _forward(self, service_port: int, local_port: int) -> int:
        kube = self._require_kube()
        service = await kube.scheduler_service(self.name) or {}
        target = _target_port(service, service_port)

        async def resolve() -> str:
            pod = await kube.scheduler_pod(self.name)
            if pod is None:
                raise ConnectionError(f"no scheduler pod for cluster {self.name}")
            return str(pod["metadata"]["name"])

        async def open_stream(pod: str) -> Any:
            port = target
            if isinstance(port, str):  # a named container port
                found = await kube.scheduler_pod(self.name) or {}
                port = _container_port(found, port) or service_port
            return await kube.open_port_forward(pod, int(port))

        forward = PortForward(open_stream, resolve, service_port, local_port)
        await forward.start()
        self._forwards.append(forward)
        return forward.port

    async def _abort_start(self) -> None:
        """Clean up after a failed start: delete what we created, close connections."""
        with contextlib.suppress(Exception):
            await Cluster._close(self)
        if self._created and self._kube is not None:
            with contextlib.suppress(Exception):
                await self._kube.delete_cluster(self.name)
        if self._finalizer is not None:
            self._finalizer.detach()
        await self._close_connections()
        self.status = Status.closed

    async def _close_connections(self) -> None:
        for forward in self._forwards:
            await forward.stop()
        self._forwards.clear()
        if self._kube is not None:
            with contextlib.suppress(Exception):
                await self._kube.close()
            self._kube = None

    def _require_kube(self) -> Kube:
        if self._kube is None:
            raise KubeClusterError(f"KubeCluster {self.name} is not started or already closed")
        return self._kube

    # ------------------------------------------------------------------ scaling

    def _group_name(self, worker_group: str | None) -> str:
        group = worker_group or naming.DEFAULT_GROUP
        if group.startswith(f"{self.name}-"):
            return group
        return f"{self.name}-{group}"

    def _autoscaler_name(self, group: str) -> str:
        """The DaskAutoscaler ``adapt()`` creates for ``group``: named after the cluster for
        the default group (as in the reference), after the group otherwise."""
        return self.name if group == naming.default_worker_group_name(self.name) else group

    async def _stop_adapting(self, group: str) -> None:
        """Delete the group's DaskAutoscaler and wait (bounded) until the operator let it go."""
        kube = self._require_kube()
        name = self._autoscaler_name(group)
        self._adapt_ranges.pop(group, None)
        if not await kube.delete_autoscaler(name):
            return
        self._log(f"adaptive scaling of {group} turned off (DaskAutoscaler {name} deleted)")
        # The operator finalizes it; until it is gone a pass already under way could still
        # write the group's replicas.
        deadline = time.monotonic() + AUTOSCALER_GONE_TIMEOUT
        while await kube.get_autoscaler(name) is not None:
            if time.monotonic() > deadline:
                logger.warning(
                    "DaskAutoscaler %s still exists %.0fs after its deletion (is the operator "
                    "running?); scaling anyway",
                    name, AUTOSCALER_GONE_TIMEOUT,
                )  # fmt: skip
                break
            await asyncio.sleep(0.2)  # poll interval of a deadline loop

    def scale(self, n: int, worker_group: str | None = None) -> Any:
        """Scale ``worker_group`` (default: the default group) to ``n`` workers.

        This turns adaptive scaling of that group off (deletes its DaskAutoscaler).
        """
        return self.sync(self._scale, n, worker_group)

    async def _scale(self, n: int, worker_group: str | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"scale: n must be a non-negative integer, got {n!r}")
        kube = self._require_kube()
        group = self._group_name(worker_group)
        is_default = group == naming.default_worker_group_name(self.name)
        if not is_default and await kube.get_worker_group(group) is None:
            raise ValueError(f"no worker group {group!r} in cluster {self.name!r}")
        await self._stop_adapting(group)
        if is_default:
            # The DaskCluster's worker.replicas is the source of the default group.
            await kube.patch_cluster(self.name, {"spec": {"worker": {"replicas": n}}})
        await kube.scale_worker_group(group, n)
        self._worker_groups[group] = n

    def adapt(  # type: ignore[override]
        self,
        minimum: int | None = None,
        maximum: int | None = None,
        *,
        scale_up_window: int | None = None,
        scale_down_window: int | None = None,
        worker_group: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Let the operator scale a worker group between ``minimum`` and ``maximum``.

        Creates (or updates) a DaskAutoscaler: for the default group one named after the
        cluster, for ``worker_group`` one named after that group. ``scale()`` of the same group
        turns it off. ``scale_up_window``/``scale_down_window`` set its stabilisation windows in
        seconds. When the cluster's groups offer different Dask resources (a ``GPU=1`` group
        next to the default one), each autoscaled group grows only for the work it can serve.
        """
        return self.sync(
            self._adapt,
            minimum,
            maximum,
            scale_up_window=scale_up_window,
            scale_down_window=scale_down_window,
            worker_group=worker_group,
        )

    async def _adapt(
        self,
        minimum: int | None = None,
        maximum: int | None = None,
        *,
        scale_up_window: int | None = None,
        scale_down_window: int | None = None,
        worker_group: str | None = None,
    ) -> None:
        low = 0 if minimum is None else minimum
        high = int(dask.config.get("kubernetes.adapt-maximum")) if maximum is None else maximum
        kube = self._require_kube()
        group = self._group_name(worker_group)
        is_default = group == naming.default_worker_group_name(self.name)
        body = spec.make_autoscaler_spec(
            self.name,
            low,
            high,
            namespace=self.namespace,
            scale_up_window=scale_up_window,
            scale_down_window=scale_down_window,
            worker_group=None if is_default else group,
        )
        if not is_default and await kube.get_worker_group(group) is None:
            raise ValueError(f"no worker group {group!r} in cluster {self.name!r}")
        await kube.apply_autoscaler(body)
        self._adapt_ranges[group] = (low, high)

    # ------------------------------------------------------------------ worker groups

    def add_worker_group(
        self,
        name: str | None = None,
        n_workers: int = 3,
        image: str | None = None,
        resources: Mapping[str, Any] | None = None,
        worker_command: str | Sequence[str] | None = None,
        env: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        custom_spec: Mapping[str, Any] | None = None,
    ) -> Any:
        """Create a DaskWorkerGroup ``<cluster>-<name>``.

        Options left out are taken from the cluster's default worker spec (image, resources,
        env, command, node selectors...). ``custom_spec`` (from :func:`make_worker_spec`, or a
        whole DaskWorkerGroup) is used as is.
        """
        return self.sync(
            self._add_worker_group, name, n_workers, image, resources, worker_command, env,
            custom_spec,
        )  # fmt: skip

    def _worker_section(
        self,
        n_workers: int,
        image: str | None,
        resources: Mapping[str, Any] | None,
        worker_command: str | Sequence[str] | None,
        env: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        base: Mapping[str, Any],
    ) -> dict[str, Any]:
        worker = copy.deepcopy(dict(base))
        worker["replicas"] = n_workers
        containers = worker.setdefault("spec", {}).setdefault("containers", [{}])
        container = containers[0]
        if image is not None:
            container["image"] = image
        if resources is not None:
            container["resources"] = spec.check_resources(resources)
        if env is not None:
            container["env"] = spec.normalize_env(env)
        if worker_command is not None:
            fresh = spec.make_worker_spec(worker_command=worker_command)
            container["args"] = fresh["spec"]["containers"][0]["args"]
        return worker

    async def _add_worker_group(
        self,
        name: str | None,
        n_workers: int,
        image: str | None,
        resources: Mapping[str, Any] | None,
        worker_command: str | Sequence[str] | None,
        env: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        custom_spec: Mapping[str, Any] | None,
    ) -> None:
        kube = self._require_kube()
        if custom_spec is not None:
            if name is None and custom_spec.get("kind") == "DaskWorkerGroup":
                name = str(custom_spec.get("metadata", {}).get("name", ""))
            worker: Mapping[str, Any] = custom_spec
        else:
            live = await kube.get_cluster(self.name) or self._spec
            base = live.get("spec", {}).get("worker") or self._spec["spec"]["worker"]
            worker = self._worker_section(n_workers, image, resources, worker_command, env, base)
        if not name:
            raise ValueError("add_worker_group needs a name, e.g. add_worker_group('highmem')")
        body = spec.make_worker_group_spec(self.name, name, worker, namespace=self.namespace)
        await kube.create_worker_group(body)
        self._worker_groups[body["metadata"]["name"]] = int(body["spec"]["worker"]["replicas"])

    def delete_worker_group(self, name: str) -> Any:
        """Delete the DaskWorkerGroup ``<cluster>-<name>`` and its workers."""
        return self.sync(self._delete_worker_group, name)

    async def _delete_worker_group(self, name: str) -> None:
        group = self._group_name(name)
        if group == naming.default_worker_group_name(self.name):
            raise ValueError("the default worker group cannot be deleted; scale it to 0 instead")
        kube = self._require_kube()
        if not await kube.delete_worker_group(group):
            raise ValueError(f"no worker group {group!r} in cluster {self.name!r}")
        self._worker_groups.pop(group, None)
        # Its autoscaler (if adapt() made one) would only report the group missing.
        await kube.delete_autoscaler(self._autoscaler_name(group))
        self._adapt_ranges.pop(group, None)

    async def _refresh_worker_groups(self) -> None:
        groups = await self._require_kube().list_worker_groups(self.name)
        self._worker_groups = {
            g["metadata"]["name"]: int(g.get("spec", {}).get("worker", {}).get("replicas", 0))
            for g in groups
        }

    @property
    def worker_groups(self) -> dict[str, int]:
        """Worker groups of this cluster and their requested replicas, as last seen."""
        return dict(self._worker_groups)

    # ------------------------------------------------------------------ waiting for workers

    async def _wait_for_workers(self, n_workers: int = 0, timeout: float | None = None) -> None:
        """Wait like distributed does, but fail fast when worker pods cannot start."""
        waiter = asyncio.ensure_future(Cluster._wait_for_workers(self, n_workers, timeout))
        watchdog = asyncio.ensure_future(self._watch_worker_pods())
        try:
            done, _ = await asyncio.wait({waiter, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            if watchdog in done:
                error = watchdog.exception()
                if error is not None:
                    raise error
            await waiter
        finally:
            for task in (waiter, watchdog):
                task.cancel()
            await asyncio.gather(waiter, watchdog, return_exceptions=True)

    async def _watch_worker_pods(self) -> None:
        """Raise the typed error of the first worker pod with a fatal problem."""
        kube = self._require_kube()
        while True:
            for pod in await kube.list_pods(self.name, component="worker"):
                problem = classify_pod(pod)
                if problem is not None and problem.fatal:
                    tail = ""
                    if problem.kind in ("crash-loop", "failed"):
                        tail = await kube.previous_log_tail(problem.pod, problem.container)
                    raise error_for_problem(problem, tail)
            await asyncio.sleep(POLL_INTERVAL)

    # ------------------------------------------------------------------ logs

    def get_logs(self, cluster: bool = True, scheduler: bool = True, workers: bool = True) -> Any:
        """Logs of the scheduler and worker pods: ``{pod name: log text}``."""
        return self.sync(self._get_logs, cluster, scheduler, workers)

    async def _get_logs(
        self, cluster: bool = True, scheduler: bool = True, workers: bool = True
    ) -> Logs:
        kube = self._require_kube()
        names: list[str] = []
        for pod in await kube.list_pods(self.name):
            component = pod.get("metadata", {}).get("labels", {}).get(c.LABEL_COMPONENT)
            if component == "scheduler" and not scheduler:
                continue
            if component == "worker" and not workers:
                continue
            names.append(pod["metadata"]["name"])
        texts = await asyncio.gather(*(kube.pod_log(name) for name in names))
        logs = Logs()
        for name, text in sorted(zip(names, texts, strict=True)):
            logs[name] = Log(text)
        return logs

    # ------------------------------------------------------------------ links and display

    @property
    def dashboard_link(self) -> str:
        if self._plan is None:
            return ""
        scheme = "https" if dask.config.get("distributed.scheduler.dashboard.tls.cert") else "http"
        return format_dashboard_link(
            str(dask.config.get("distributed.dashboard.link")),
            host=self._plan.dashboard.host,
            port=self._plan.dashboard.port,
            name=self.name,
            namespace=self.namespace,
            scheme=scheme,
        )

    @property
    def jupyter_link(self) -> str:
        """The Jupyter server on the scheduler (``jupyter=True``), else ``""``."""
        if self._plan is None:
            return ""
        containers = self._spec["spec"]["scheduler"]["spec"].get("containers") or [{}]
        if "--jupyter" not in (containers[0].get("args") or []):
            return ""
        link = self.dashboard_link
        base = link[: -len("/status")] if link.endswith("/status") else link.rstrip("/")
        return f"{base}/jupyter/lab"

    @property
    def connection_method(self) -> str:
        """How the scheduler is reached: port-forward, in-cluster-dns, load-balancer..."""
        return self._plan.method if self._plan else ""

    def _summary(self) -> list[tuple[str, str]]:
        groups = ", ".join(f"{g} ({n})" for g, n in sorted(self._worker_groups.items()))
        if self._adapt_ranges:
            ranges = sorted(self._adapt_ranges.items())
            scaling = "adaptive: " + ", ".join(
                f"{g} {lo} to {hi} workers" for g, (lo, hi) in ranges
            )
        else:
            scaling = "manual"
        return [
            ("Name", self.name),
            ("Namespace", self.namespace),
            ("Connection", self.connection_method or "not connected"),
            ("Worker groups", groups or "—"),
            ("Scaling", scaling),
            ("Shutdown on close", str(bool(self.shutdown_on_close))),
        ]

    def _repr_html_(self, cluster_status: str | None = None) -> str:
        rows = "".join(
            f'<tr><td style="text-align: left;"><strong>{html.escape(k)}:</strong> '
            f"{html.escape(v)}</td></tr>"
            for k, v in self._summary()
        )
        extra = f"<table>{rows}</table>" + (cluster_status or "")
        return str(Cluster._repr_html_(self, cluster_status=extra))

    def __rich__(self) -> Table:
        table = Table(title=f"KubeCluster {self.name}", show_header=False)
        for key, value in self._summary():
            table.add_row(key, value)
        table.add_row("Dashboard", self.dashboard_link or "—")
        table.add_row("Workers", str(len(self.scheduler_info.get("workers", {}))))
        return table

    # ------------------------------------------------------------------ closing

    def close(self, timeout: float | None = 3600) -> Any:
        """Disconnect; delete the DaskCluster when ``shutdown_on_close``."""
        return super().close(timeout=timeout)

    async def _close(self) -> None:
        async with self._lock:
            if self.status == Status.closed:
                return
            await Cluster._close(self)
            try:
                if self.shutdown_on_close and self._kube is not None:
                    await self._delete_and_wait()
            finally:
                if self._finalizer is not None:
                    self._finalizer.detach()
                await self._close_connections()
                self.status = Status.closed

    async def _delete_and_wait(self) -> None:
        kube = self._require_kube()
        if not await kube.delete_cluster(self.name):
            return
        deadline = time.monotonic() + self.resource_timeout
        while time.monotonic() < deadline:
            if await kube.get_cluster(self.name) is None:
                self._log(f"DaskCluster {self.name} deleted")
                return
            await asyncio.sleep(POLL_INTERVAL)
        raise ResourceTimeoutError(
            f"DaskCluster {self.name!r} still exists {self.resource_timeout:g}s after deletion; "
            "is the operator removing its finalizer?"
        )

    def _log(self, log: str) -> None:
        self._cluster_manager_logs.append((datetime.datetime.now(), log))
        logger.info("%s: %s", self.name, log)


def _target_port(service: Mapping[str, Any], port: int) -> int | str:
    """The targetPort of the service port ``port`` (a number or a container port name)."""
    for entry in (service.get("spec") or {}).get("ports") or ():
        if entry.get("port") == port:
            target = entry.get("targetPort", port)
            return int(target) if isinstance(target, int) else str(target)
    return port


def _container_port(pod: Mapping[str, Any], name: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or ():
        for entry in container.get("ports") or ():
            if entry.get("name") == name:
                return int(entry["containerPort"])
    return None
