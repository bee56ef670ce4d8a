"""KubeCluster's whole life against the in-memory API (fakekube) and a real local scheduler."""

# distributed's Client and LocalCluster constructors are not annotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import dask.config
import pytest
from distributed import Client, LocalCluster, Scheduler, Worker
from fakekube import FakeKube, World

from dask_kubecluster import (
    ClusterExistsError,
    ClusterNotFoundError,
    CrashLoopError,
    CRDNotInstalledError,
    CreateMode,
    ImagePullError,
    KubeCluster,
    OperatorNotRunningError,
    make_cluster_spec,
)
from dask_kubecluster import (
    cluster as cluster_module,
)
from dask_kubecluster.kube import Kube

pytestmark = pytest.mark.filterwarnings(
    # distributed's comms may report a connection closed by our teardown
    "ignore:.*unclosed.*:ResourceWarning",
)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    world = World()

    async def connect(
        namespace: str, context: str | None = None, config_file: str | None = None
    ) -> FakeKube:
        world.connections += 1
        return FakeKube(world, namespace)

    monkeypatch.setattr(Kube, "connect", connect)
    monkeypatch.setattr(cluster_module, "POLL_INTERVAL", 0.01)
    return world


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    async with Scheduler(host="127.0.0.1", port=0, dashboard_address=":0") as s:
        yield s


def _tcp(scheduler: Scheduler) -> tuple[str, int]:
    host, port = scheduler.address.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


# ------------------------------------------------------------------ before anything is created


def test_invalid_resources_fail_before_any_api_call(world: World) -> None:
    with pytest.raises(ValueError, match="did you mean 'limits'"):
        KubeCluster(name="foo", resources={"limit": {"memory": "2Gi"}}, quiet=True)
    assert world.connections == 0


def test_invalid_name_fails_before_any_api_call(world: World) -> None:
    with pytest.raises(ValueError, match="lower-case"):
        KubeCluster(name="Foo_Bar", quiet=True)
    assert world.connections == 0


def test_bad_create_mode(world: World) -> None:
    with pytest.raises(ValueError, match="create_mode"):
        KubeCluster(name="foo", create_mode="sometimes", quiet=True)
    assert world.connections == 0


# ------------------------------------------------------------------ async life cycle


async def test_async_create_scale_adapt_groups_logs_close(
    world: World, scheduler: Scheduler
) -> None:
    async with KubeCluster(
        name="foo",
        namespace="ns",
        image="example.com/dask:1",
        n_workers=1,
        asynchronous=True,
        quiet=True,
        scheduler_address=scheduler.address,
    ) as cluster:
        assert world.clusters["foo"]["metadata"]["namespace"] == "ns"
        assert cluster.scheduler_address == scheduler.address
        assert cluster.shutdown_on_close is True
        assert cluster.connection_method == "explicit"
        assert cluster.worker_groups == {"foo-default": 1}
        assert "127.0.0.1" in cluster.dashboard_link

        await cluster.adapt(minimum=1, maximum=5)
        assert world.autoscalers["foo"]["spec"] == {"cluster": "foo", "minimum": 1, "maximum": 5}
        await cluster.scale(3)
        assert "foo" not in world.autoscalers  # scale turns adapt off
        assert world.groups["foo-default"]["spec"]["worker"]["replicas"] == 3
        assert world.clusters["foo"]["spec"]["worker"]["replicas"] == 3

        await cluster.add_worker_group(
            "highmem", n_workers=2, resources={"limits": {"memory": "8Gi"}}
        )
        group = world.groups["foo-highmem"]
        container = group["spec"]["worker"]["spec"]["containers"][0]
        assert container["image"] == "example.com/dask:1"  # inherited from the cluster
        assert container["resources"] == {"limits": {"memory": "8Gi"}}
        await cluster.adapt(0, 4, worker_group="highmem", scale_down_window=30)
        assert world.autoscalers["foo-highmem"]["spec"] == {
            "cluster": "foo", "workerGroup": "foo-highmem", "minimum": 0, "maximum": 4,
            "scaleDown": {"stabilizationWindowSeconds": 30},
        }  # fmt: skip
        assert "foo-highmem 0 to 4 workers" in repr(cluster._summary())
        with pytest.raises(ValueError, match="no worker group 'foo-nope'"):
            await cluster.adapt(0, 4, worker_group="nope")
        await cluster.scale(4, worker_group="highmem")
        assert "foo-highmem" not in world.autoscalers  # scale turns that group's adapt off
        assert world.groups["foo-highmem"]["spec"]["worker"]["replicas"] == 4
        assert cluster.worker_groups == {"foo-default": 3, "foo-highmem": 4}
        with pytest.raises(ValueError, match="no worker group 'foo-nope'"):
            await cluster.scale(1, worker_group="nope")
        await cluster.adapt(0, 2, worker_group="foo-highmem")  # the full name works too
        await cluster.delete_worker_group("highmem")
        assert "foo-highmem" not in world.groups
        assert "foo-highmem" not in world.autoscalers  # its autoscaler went with it
        with pytest.raises(ValueError, match="default worker group cannot be deleted"):
            await cluster.delete_worker_group("default")

        logs = await cluster.get_logs()
        assert set(logs) == {"foo-scheduler", "foo-default-worker-abc"}
        assert "Scheduler at" in logs["foo-scheduler"]

        html = cluster._repr_html_()
        assert "Namespace:</strong> ns" in html
        assert "foo-default (3)" in html
    assert "foo" not in world.clusters
    assert cluster.status.name == "closed"


async def test_add_worker_group_with_custom_spec_and_no_name(
    world: World, scheduler: Scheduler
) -> None:
    from dask_kubecluster import make_worker_group_spec, make_worker_spec

    async with KubeCluster(
        name="foo", asynchronous=True, quiet=True, scheduler_address=scheduler.address
    ) as cluster:
        worker = make_worker_spec(cluster_name="foo", n_workers=2)
        worker["spec"]["nodeSelector"] = {"pool": "gpu"}
        await cluster.add_worker_group("gpu", custom_spec=worker)
        assert world.groups["foo-gpu"]["spec"]["worker"]["spec"]["nodeSelector"] == {"pool": "gpu"}
        whole = make_worker_group_spec("foo", "extra", make_worker_spec(n_workers=1))
        await cluster.add_worker_group(custom_spec=whole)
        assert "foo-extra" in world.groups
        with pytest.raises(ValueError, match="needs a name"):
            await cluster.add_worker_group(custom_spec=make_worker_spec())


async def test_connecting_leaves_the_cluster_running(world: World, scheduler: Scheduler) -> None:
    async with KubeCluster(
        name="foo", asynchronous=True, quiet=True, scheduler_address=scheduler.address
    ):
        async with KubeCluster(
            name="foo", asynchronous=True, quiet=True, scheduler_address=scheduler.address
        ) as second:
            assert second.shutdown_on_close is False
        assert "foo" in world.clusters
    assert "foo" not in world.clusters
    assert world.calls.count("create_cluster") == 1


async def test_from_name(world: World, scheduler: Scheduler) -> None:
    world.clusters["simple"] = make_cluster_spec("simple")
    world.operate(world.clusters["simple"])
    cluster = await KubeCluster.from_name(
        "simple", asynchronous=True, quiet=True, scheduler_address=scheduler.address
    )
    assert cluster.create_mode is CreateMode.CONNECT_ONLY
    await cluster.close()
    assert "simple" in world.clusters
    assert "create_cluster" not in world.calls


async def test_from_name_missing_cluster(world: World) -> None:
    with pytest.raises(ClusterNotFoundError, match="no DaskCluster 'ghost'"):
        await KubeCluster.from_name("ghost", asynchronous=True, quiet=True)
    assert world.calls == []


async def test_create_only_refuses_an_existing_cluster(world: World) -> None:
    world.clusters["foo"] = make_cluster_spec("foo")
    with pytest.raises(ClusterExistsError, match="CREATE_ONLY"):
        await KubeCluster(
            name="foo", create_mode=CreateMode.CREATE_ONLY, asynchronous=True, quiet=True
        )
    assert "foo" in world.clusters  # not ours: left alone


async def test_custom_spec_name_and_namespace_are_used(world: World, scheduler: Scheduler) -> None:
    spec = make_cluster_spec("custom", n_workers=1)
    spec["metadata"]["namespace"] = "team"
    spec["spec"]["worker"]["spec"]["tolerations"] = [{"key": "gpu", "operator": "Exists"}]
    async with KubeCluster(
        name="ignored",
        custom_cluster_spec=spec,
        asynchronous=True,
        quiet=True,
        scheduler_address=scheduler.address,
    ) as cluster:
        assert cluster.name == "custom"
        assert cluster.namespace == "team"
        stored = world.clusters["custom"]["spec"]["worker"]["spec"]
        assert stored["tolerations"] == [{"key": "gpu", "operator": "Exists"}]


async def test_kwargs_equal_custom_spec(world: World, scheduler: Scheduler) -> None:
    kw: dict[str, Any] = {
        "name": "foo",
        "n_workers": 2,
        "env": {"FOO": "bar"},
        "node_selector": {"pool": "dask"},
        "image_pull_secrets": ["regcred"],
    }
    async with KubeCluster(
        **kw, asynchronous=True, quiet=True, scheduler_address=scheduler.address
    ) as a:
        first = a.spec
    async with KubeCluster(
        custom_cluster_spec=make_cluster_spec(**kw),
        asynchronous=True,
        quiet=True,
        scheduler_address=scheduler.address,
    ) as b:
        second = b.spec
    assert first == second


async def test_unclosed_cluster_is_deleted_by_its_finalizer(
    world: World, scheduler: Scheduler
) -> None:
    cluster = await KubeCluster(
        name="foo", asynchronous=True, quiet=True, scheduler_address=scheduler.address
    )
    finalizer = cluster._finalizer
    assert finalizer is not None
    assert finalizer.alive
    # What garbage collection or interpreter exit would run: inside a running loop it must not
    # touch this loop, so it deletes from a private loop in a helper thread.
    finalizer()
    assert "foo" not in world.clusters
    await cluster.close()


async def test_close_detaches_the_finalizer(world: World, scheduler: Scheduler) -> None:
    cluster = await KubeCluster(
        name="foo", asynchronous=True, quiet=True, scheduler_address=scheduler.address
    )
    finalizer = cluster._finalizer
    await cluster.close()
    assert finalizer is not None
    assert not finalizer.alive


def test_finalizer_without_a_running_loop(world: World) -> None:
    world.clusters["foo"] = make_cluster_spec("foo")
    cluster_module._delete_cluster_now("foo", "default", None)
    assert "foo" not in world.clusters


# ------------------------------------------------------------------ errors


async def test_crds_missing(world: World) -> None:
    world.crds = False
    with pytest.raises(CRDNotInstalledError, match="The DaskCluster CRD is not installed"):
        await KubeCluster(name="foo", asynchronous=True, quiet=True)
    assert world.clusters == {}


async def test_operator_not_running_cleans_up(world: World) -> None:
    world.operator = False
    with pytest.raises(OperatorNotRunningError, match="Is the Dask operator running"):
        await KubeCluster(name="foo", asynchronous=True, quiet=True, resource_timeout=0.2)
    assert world.clusters == {}


async def test_image_pull_backoff(world: World) -> None:
    world.scheduler_status = {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "scheduler",
                "image": "nope:1",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
            }
        ],
    }
    with pytest.raises(ImagePullError, match="nope:1"):
        await KubeCluster(name="foo", image="nope:1", asynchronous=True, quiet=True)
    assert world.clusters == {}


async def test_crash_loop_has_log_tail(world: World) -> None:
    world.scheduler_status = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "scheduler",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                "lastState": {"terminated": {"exitCode": 1}},
            }
        ],
    }
    real_operate = world.operate

    def operate(cluster: dict[str, Any]) -> None:
        real_operate(cluster)
        world.logs["foo-scheduler"] = "Traceback (most recent call last):\nImportError: boom"

    world.operate = operate  # type: ignore[method-assign]
    with pytest.raises(CrashLoopError, match="ImportError: boom"):
        await KubeCluster(name="foo", asynchronous=True, quiet=True)


async def test_wait_for_workers_fails_fast_on_a_bad_worker_image(
    world: World, scheduler: Scheduler
) -> None:
    async with KubeCluster(
        name="foo", asynchronous=True, quiet=True, scheduler_address=scheduler.address
    ) as cluster:
        world.pods["foo-default-worker-abc"]["status"] = {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "worker",
                    "image": "nope:2",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
                }
            ],
        }
        with pytest.raises(ImagePullError, match="foo-default-worker-abc"):
            await cluster.wait_for_workers(1, timeout=30)


async def test_wait_for_workers_returns_when_workers_arrive(
    world: World, scheduler: Scheduler
) -> None:
    async with (
        KubeCluster(
            name="foo", asynchronous=True, quiet=True, scheduler_address=scheduler.address
        ) as cluster,
        Worker(scheduler.address, nthreads=1),
    ):
        await cluster.wait_for_workers(1, timeout=30)


# ------------------------------------------------------------------ port-forward, compute


async def test_port_forward_and_compute(world: World, scheduler: Scheduler) -> None:
    world.scheduler_tcp = _tcp(scheduler)
    async with (
        Worker(scheduler.address, nthreads=1),
        KubeCluster(name="foo", asynchronous=True, quiet=True) as cluster,
    ):
        assert cluster.connection_method == "port-forward"
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert cluster.scheduler_address != scheduler.address
        assert cluster.dashboard_link.startswith("http://localhost:")
        async with Client(cluster, asynchronous=True) as client:
            assert await client.submit(lambda x: x + 1, 41) == 42
        # the comm forward resolves the pod and targets the named container port
        assert ("foo-scheduler", 8786) in world.forwards


async def test_two_clusters_in_one_loop(world: World, scheduler: Scheduler) -> None:
    async with (
        Scheduler(host="127.0.0.1", port=0, dashboard_address=":0") as other,
        KubeCluster(
            name="one", asynchronous=True, quiet=True, scheduler_address=scheduler.address
        ) as one,
        KubeCluster(
            name="two", asynchronous=True, quiet=True, scheduler_address=other.address
        ) as two,
    ):
        assert {one.name, two.name} == {"one", "two"}
        assert set(world.clusters) == {"one", "two"}
    assert world.clusters == {}


# ------------------------------------------------------------------ sync API


@pytest.fixture
def local_scheduler() -> Iterator[str]:
    with LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0"
    ) as lc:
        yield str(lc.scheduler_address)


def test_sync_api(world: World, local_scheduler: str) -> None:
    with dask.config.set({"kubernetes.scheduler-address": local_scheduler}):
        with KubeCluster(name="foo", quiet=True) as cluster:
            assert cluster.scheduler_address == local_scheduler
            cluster.scale(2)
            assert world.groups["foo-default"]["spec"]["worker"]["replicas"] == 2
            cluster.adapt(minimum=0, maximum=3)
            assert world.autoscalers["foo"]["spec"]["maximum"] == 3
            assert set(cluster.get_logs()) == {"foo-scheduler", "foo-default-worker-abc"}
            with cluster.get_client() as client:
                assert client.submit(lambda: 1).result() == 1
        assert "foo" not in world.clusters


def test_sync_start_failure_cleans_up(world: World) -> None:
    world.operator = False
    with pytest.raises(OperatorNotRunningError):
        KubeCluster(name="foo", quiet=True, resource_timeout=0.2)
    assert world.clusters == {}


def test_config_defaults_are_used(world: World, local_scheduler: str) -> None:
    with (
        dask.config.set(
            {
                "kubernetes.scheduler-address": local_scheduler,
                "kubernetes.image": "example.com/from-config:2",
                "kubernetes.namespace": "from-config",
                "kubernetes.count.start": 5,
            }
        ),
        KubeCluster(name="foo", quiet=True) as cluster,
    ):
        assert cluster.namespace == "from-config"
        stored = world.clusters["foo"]
        assert stored["spec"]["worker"]["replicas"] == 5
        assert stored["spec"]["worker"]["spec"]["containers"][0]["image"] == (
            "example.com/from-config:2"
        )


def test_generated_name(world: World, local_scheduler: str) -> None:
    with KubeCluster(quiet=True, scheduler_address=local_scheduler) as cluster:
        assert cluster.name.startswith("dask-")
        assert cluster.name in world.clusters
