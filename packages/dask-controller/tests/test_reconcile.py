"""Reconcile passes against an in-memory API, and scale-down against a real scheduler."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from distributed import Client as _Client
from distributed import Scheduler, Worker
from fake_kube import FakeKube

from dask_controller import builders as b
from dask_controller import reconcile as r
from dask_controller.scheduler import SchedulerClient
from dask_controller.settings import Settings
from dask_crds import constants as c

Client: Any = _Client  # untyped in distributed
MANIFESTS = Path(__file__).parent / "manifests"
SETTINGS = Settings(scheduler_timeout=2.0, worker_allocation_size=3)

pytestmark = pytest.mark.timeout(60)


def _manifest(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return obj


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add("DaskCluster", _manifest("simple-cluster.yaml"))
    return k


async def _cluster(kube: FakeKube) -> dict[str, Any]:
    obj = await kube.get_custom("DaskCluster", "ns1", "simple")
    assert obj is not None
    return obj


async def _group(kube: FakeKube, name: str = "simple-default") -> dict[str, Any]:
    obj = await kube.get_custom("DaskWorkerGroup", "ns1", name)
    assert obj is not None
    return obj


def _unreachable(addr: str, url: str | None, timeout: float) -> SchedulerClient:
    return SchedulerClient("tcp://127.0.0.1:1", "http://127.0.0.1:1", timeout=0.3)


async def test_cluster_pass_creates_children_then_is_idempotent(kube: FakeKube) -> None:
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert kube.names("Pod") == ["simple-scheduler"]
    assert kube.names("Service") == ["simple-scheduler"]
    assert kube.names("DaskWorkerGroup") == ["simple-default"]
    assert {e.reason for e in out.events} >= {"SchedulerPodCreated", "SchedulerServiceCreated"}
    status = (await _cluster(kube))["status"]
    assert status["phase"] == "Created"
    assert status["selector"] == (
        "dask.org/cluster-name=simple,dask.org/component=worker,"
        "dask.org/workergroup-name=simple-default"
    )
    before = copy.deepcopy(kube.objects)
    calls = len(kube.calls)
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert not [e for e in out.events if e.type == "Normal"]
    assert (await _cluster(kube))["status"]["phase"] == "Pending"  # scheduler pod not ready yet
    assert kube.calls[calls:] == [("status", "DaskCluster/simple")]
    calls = len(kube.calls)
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    # nothing created, deleted or patched; the status is not rewritten
    assert kube.calls[calls:] == []
    assert {k: v for k, v in kube.objects.items() if k[0] != "DaskCluster"} == {
        k: v for k, v in before.items() if k[0] != "DaskCluster"
    }


async def test_lost_scheduler_pod_and_service_come_back(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    await kube.delete_pod("ns1", "simple-scheduler")
    del kube.objects[("Service", "ns1", "simple-scheduler")]
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert kube.names("Pod") == ["simple-scheduler"]
    assert kube.names("Service") == ["simple-scheduler"]


async def test_scheduler_template_change_recreates_pod(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    uid = (await kube.get_pod("ns1", "simple-scheduler") or {})["metadata"]["uid"]
    cluster = kube.objects[("DaskCluster", "ns1", "simple")]
    cluster["spec"]["scheduler"]["spec"]["containers"][0]["image"] = "ghcr.io/dask/dask:2026.8.0"
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert "SchedulerPodReplaced" in {e.reason for e in out.events}
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    pod = await kube.get_pod("ns1", "simple-scheduler")
    assert pod is not None
    assert pod["metadata"]["uid"] != uid
    assert pod["spec"]["containers"][0]["image"] == "ghcr.io/dask/dask:2026.8.0"


async def test_label_updates_propagate(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    kube.objects[("DaskCluster", "ns1", "simple")]["metadata"]["labels"] = {"team": "ml"}
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    for kind in ("Pod", "Service", "DaskWorkerGroup"):
        [obj] = kube.of_kind(kind)
        assert obj["metadata"]["labels"]["team"] == "ml", kind


async def test_invalid_cluster_name_is_refused_with_a_condition() -> None:
    kube = FakeKube()
    body = _manifest("simple-cluster.yaml")
    body["metadata"]["name"] = "x" * 60
    kube.add("DaskCluster", body)
    out = await r.reconcile_cluster(kube, SETTINGS, kube.of_kind("DaskCluster")[0])
    assert kube.names("Pod") == []
    assert kube.names("DaskWorkerGroup") == []
    status = kube.of_kind("DaskCluster")[0]["status"]
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["reason"] == "InvalidName"
    assert out.events[0].type == "Warning"


async def test_cluster_replicas_push_to_default_group_but_direct_scaling_sticks(
    kube: FakeKube,
) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    group = kube.objects[("DaskWorkerGroup", "ns1", "simple-default")]
    # kubectl scale daskcluster simple --replicas=5
    kube.objects[("DaskCluster", "ns1", "simple")]["spec"]["worker"]["replicas"] = 5
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert group["spec"]["worker"]["replicas"] == 5
    # kubectl scale daskworkergroup simple-default --replicas=3: not reverted by the cluster
    group["spec"]["worker"]["replicas"] = 3
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert group["spec"]["worker"]["replicas"] == 3


async def test_worker_group_scale_up_in_batches_and_idempotent(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    kube.objects[("DaskWorkerGroup", "ns1", "simple-default")]["spec"]["worker"]["replicas"] = 7
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    workers = [n for n in kube.names("Pod") if n.startswith("simple-default-worker-")]
    assert len(workers) == 7
    pod = await kube.get_pod("ns1", workers[0])
    assert pod is not None
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env[c.ENV_WORKER_NAME] == workers[0]
    assert env[c.ENV_SCHEDULER_ADDRESS] == "tcp://simple-scheduler.ns1.svc.cluster.local:8786"
    status = (await _group(kube))["status"]
    assert (status["replicas"], status["readyReplicas"]) == (7, 0)
    calls = len(kube.calls)
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    assert kube.calls[calls:] == []


async def test_deleted_worker_pod_is_replaced(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    first = [n for n in kube.names("Pod") if "-worker-" in n]
    await kube.delete_pod("ns1", first[0])
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    now = [n for n in kube.names("Pod") if "-worker-" in n]
    assert len(now) == 2
    assert first[0] not in now


async def test_unreachable_scheduler_deletes_nothing_that_may_hold_data(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    workers = [n for n in kube.names("Pod") if "-worker-" in n]
    for n in [*workers, "simple-scheduler"]:
        kube.set_pod_state(n, "Running", ready=True)
    kube.objects[("DaskWorkerGroup", "ns1", "simple-default")]["spec"]["worker"]["replicas"] = 0
    out = await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    assert [n for n in kube.names("Pod") if "-worker-" in n] == workers
    conditions = {x["type"]: x for x in (await _group(kube))["status"]["conditions"]}
    assert conditions["SchedulerUnreachable"]["status"] == "True"
    assert conditions["ScalingDown"]["reason"] == "WaitingForScheduler"
    assert out.requeue_after is not None
    assert "SchedulerUnreachable" in {e.reason for e in out.events}


async def test_unknown_cluster_sets_condition() -> None:
    kube = FakeKube()
    kube.add("DaskWorkerGroup", _manifest("simple-highmem.yaml"))
    await r.reconcile_worker_group(kube, SETTINGS, kube.of_kind("DaskWorkerGroup")[0], _unreachable)
    status = kube.of_kind("DaskWorkerGroup")[0]["status"]
    assert status["conditions"][0]["reason"] == "ClusterNotFound"
    assert kube.names("Pod") == []


async def test_user_group_is_adopted_by_its_cluster(kube: FakeKube) -> None:
    kube.add("DaskWorkerGroup", _manifest("simple-highmem.yaml"))
    await r.reconcile_worker_group(
        kube, SETTINGS, await _group(kube, "simple-highmem"), _unreachable
    )
    group = await _group(kube, "simple-highmem")
    [ref] = group["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("DaskCluster", "simple", True)
    assert len([n for n in kube.names("Pod") if n.startswith("simple-highmem-worker-")]) == 2


# -- scale-down through a real scheduler ------------------------------------------------------


@pytest.fixture
async def real_scheduler() -> AsyncIterator[Scheduler]:
    with dask.config.set({"distributed.scheduler.http.routes": b.SCHEDULER_HTTP_ROUTES}):
        s = await Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0")
    yield s
    await s.close()


async def test_scale_down_retires_through_scheduler_and_keeps_data(
    kube: FakeKube, real_scheduler: Scheduler
) -> None:
    """Workers named like their pods join a real scheduler; scaling the group down retires the
    workers the scheduler picks (moving their data), deletes exactly those pods, and never
    touches the other group's worker."""
    s = real_scheduler
    server: Any = s.http_server
    http_url = f"http://127.0.0.1:{server.port}"

    def factory(addr: str, url: str | None, timeout: float) -> SchedulerClient:
        return SchedulerClient(s.address, http_url, timeout=5)

    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    kube.objects[("DaskWorkerGroup", "ns1", "simple-default")]["spec"]["worker"]["replicas"] = 3
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), factory)
    pods = [n for n in kube.names("Pod") if n.startswith("simple-default-worker-")]
    assert len(pods) == 3
    workers = []
    for name in [*pods, "simple-highmem-worker-0000000000"]:
        workers.append(
            await Worker(s.address, name=name, host="127.0.0.1", nthreads=1, dashboard=False)
        )
    for n in [*pods, "simple-scheduler"]:
        kube.set_pod_state(n, "Running", ready=True)
    try:
        async with Client(s.address, asynchronous=True) as client:
            futures = []
            for w in workers:
                [f] = await client.scatter([w.name * 100], workers=[w.address])
                futures.append(f)
            kube.objects[("DaskWorkerGroup", "ns1", "simple-default")]["spec"]["worker"][
                "replicas"
            ] = 1
            out = await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), factory)
            left = [n for n in kube.names("Pod") if n.startswith("simple-default-worker-")]
            assert len(left) == 1
            retired = set(pods) - set(left)
            assert "WorkersRetired" in {e.reason for e in out.events}
            connected = {str(ws.name) for ws in s.workers.values()}
            assert connected == {*left, "simple-highmem-worker-0000000000"}
            assert not retired & connected
            # every piece of data is still there, including what lived on retired workers
            values = await client.gather(futures)
            assert values == [w.name * 100 for w in workers]
    finally:
        for w in workers:
            await w.close()


async def test_invalid_spec_is_refused_and_existing_children_kept(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    before = sorted(kube.objects)
    cluster = kube.objects[("DaskCluster", "ns1", "simple")]
    cluster["spec"]["worker"]["spec"]["containers"][0]["imagee"] = "typo"
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert sorted(kube.objects) == before
    status = (await _cluster(kube))["status"]
    assert status["phase"] == "Failed"
    [cond] = status["conditions"]
    assert (cond["type"], cond["reason"]) == ("SpecValid", "InvalidSpec")
    assert "spec.worker.spec.containers.0.imagee" in cond["message"]
    assert out.events[0].type == "Warning"


async def test_invalid_worker_group_spec_creates_nothing() -> None:
    kube = FakeKube()
    kube.add("DaskCluster", _manifest("simple-cluster.yaml"))
    group = _manifest("simple-highmem.yaml")
    group["spec"]["worker"]["replicas"] = -1
    kube.add("DaskWorkerGroup", group)
    await r.reconcile_worker_group(
        kube, SETTINGS, await _group(kube, "simple-highmem"), _unreachable
    )
    assert kube.names("Pod") == []
    status = (await _group(kube, "simple-highmem"))["status"]
    assert status["conditions"][0]["reason"] == "InvalidSpec"
    assert "spec.worker.replicas" in status["conditions"][0]["message"]


async def test_without_a_running_scheduler_no_worker_is_connected(kube: FakeKube) -> None:
    """Scale-down while the scheduler pod is not running: nothing to ask, nothing to lose."""
    asked: list[str] = []

    def factory(addr: str, url: str | None, timeout: float) -> SchedulerClient:
        asked.append(addr)
        return _unreachable(addr, url, timeout)

    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), factory)
    kube.objects[("DaskWorkerGroup", "ns1", "simple-default")]["spec"]["worker"]["replicas"] = 0
    out = await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), factory)
    assert [n for n in kube.names("Pod") if "-worker-" in n] == []
    assert "SchedulerUnreachable" not in {e.reason for e in out.events}


async def test_objects_being_deleted_get_no_new_children(kube: FakeKube) -> None:
    kube.objects[("DaskCluster", "ns1", "simple")]["metadata"]["deletionTimestamp"] = "t"
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert kube.names("Pod") == []
    kube.add("DaskWorkerGroup", _manifest("simple-highmem.yaml"))
    kube.objects[("DaskWorkerGroup", "ns1", "simple-highmem")]["metadata"]["deletionTimestamp"] = (
        "t"
    )
    await r.reconcile_worker_group(
        kube, SETTINGS, await _group(kube, "simple-highmem"), _unreachable
    )
    assert kube.names("Pod") == []


async def test_service_spec_edit_is_applied_and_workers_follow_the_port(kube: FakeKube) -> None:
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    cluster = kube.objects[("DaskCluster", "ns1", "simple")]
    cluster["spec"]["scheduler"]["service"]["ports"][0]["port"] = 9786
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert "SchedulerServiceUpdated" in {e.reason for e in out.events}
    svc = await kube.get_service("ns1", "simple-scheduler")
    assert svc is not None
    assert svc["spec"]["ports"][0]["port"] == 9786
    # the workers' DASK_SCHEDULER_ADDRESS changes, so (not yet running) workers are replaced
    old = {n for n in kube.names("Pod") if "-worker-" in n}
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    new = {n for n in kube.names("Pod") if "-worker-" in n}
    assert len(new) == 2
    assert not old & new
    pod = await kube.get_pod("ns1", sorted(new)[0])
    assert pod is not None
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env[c.ENV_SCHEDULER_ADDRESS].endswith(":9786")


async def test_worker_without_pod_name_is_matched_by_ip_and_retired(
    kube: FakeKube, real_scheduler: Scheduler
) -> None:
    """A worker started without ``--name`` still counts as connected (matched by pod IP): it
    is retired through the scheduler, never deleted as if it held no data."""
    s = real_scheduler

    def factory(addr: str, url: str | None, timeout: float) -> SchedulerClient:
        return SchedulerClient(s.address, None, timeout=5)

    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), factory)
    a, b_ = sorted(n for n in kube.names("Pod") if "-worker-" in n)
    kube.set_pod_state("simple-scheduler", "Running", ready=True)
    kube.set_pod_state(a, "Running", ready=True)
    kube.objects[("Pod", "ns1", a)]["status"]["podIP"] = "127.0.0.1"
    anon = await Worker(s.address, host="127.0.0.1", nthreads=1, dashboard=False)
    keeper = await Worker(s.address, name="keeper", host="127.0.0.2", nthreads=1, dashboard=False)
    try:
        async with Client(s.address, asynchronous=True) as client:
            [fut] = await client.scatter(["precious"], workers=[anon.address])
            kube.objects[("DaskWorkerGroup", "ns1", "simple-default")]["spec"]["worker"][
                "replicas"
            ] = 0
            out = await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), factory)
            assert [n for n in kube.names("Pod") if "-worker-" in n] == []
            reasons = {e.reason for e in out.events}
            assert {"WorkersRemoved", "WorkersRetired"} <= reasons  # b_ deleted, a retired
            assert {str(ws.name) for ws in s.workers.values()} == {"keeper"}
            assert await fut.result() == "precious"
    finally:
        await anon.close()
        await keeper.close()
    del b_


def _workers(kube: FakeKube) -> list[str]:
    return [n for n in kube.names("Pod") if "-worker-" in n]


async def test_suspend_stops_every_pod_and_resume_brings_them_back(kube: FakeKube) -> None:
    kube.add("DaskWorkerGroup", _manifest("simple-highmem.yaml"))
    groups = ("simple-default", "simple-highmem")
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    for g in groups:
        await r.reconcile_worker_group(kube, SETTINGS, await _group(kube, g), _unreachable)
    assert len(_workers(kube)) == 4

    kube.objects[("DaskCluster", "ns1", "simple")]["spec"]["suspend"] = True
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert "simple-scheduler" not in kube.names("Pod")
    assert sorted(out.kick) == [("DaskWorkerGroup", g) for g in groups]  # stop them now
    status = (await _cluster(kube))["status"]
    conds = {cd["type"]: (cd["status"], cd["reason"]) for cd in status["conditions"]}
    assert status["phase"] == "Suspended"
    assert conds["Suspended"] == ("True", "Suspended")
    assert conds["SchedulerReady"] == ("False", "Suspended")
    for g in groups:
        out = await r.reconcile_worker_group(kube, SETTINGS, await _group(kube, g), _unreachable)
        assert [e.reason for e in out.events] == ["Suspended"]
        assert (await _group(kube, g))["status"]["phase"] == "Suspended"
    assert _workers(kube) == []
    # the sizes are kept for the resume, and a suspended cluster stays quiet
    assert (await _group(kube, "simple-highmem"))["spec"]["worker"]["replicas"] == 2
    calls = len(kube.calls)
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    for g in groups:
        await r.reconcile_worker_group(kube, SETTINGS, await _group(kube, g), _unreachable)
    assert [call for call in kube.calls[calls:] if call[0] in ("create", "delete")] == []
    assert out.kick == []

    del kube.objects[("DaskCluster", "ns1", "simple")]["spec"]["suspend"]
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    assert "simple-scheduler" in kube.names("Pod")
    assert "Resumed" in [e.reason for e in out.events]
    assert len(out.kick) == 2
    conds = {
        cd["type"]: (cd["status"], cd["reason"])
        for cd in (await _cluster(kube))["status"]["conditions"]
    }
    assert conds["Suspended"] == ("False", "Resumed")
    out = await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))  # and stays
    assert out.kick == []
    status = (await _cluster(kube))["status"]
    assert [cd["reason"] for cd in status["conditions"] if cd["type"] == "Suspended"] == ["Resumed"]
    for g in groups:
        await r.reconcile_worker_group(kube, SETTINGS, await _group(kube, g), _unreachable)
    assert len(_workers(kube)) == 4


async def test_a_cluster_created_suspended_starts_no_pod(kube: FakeKube) -> None:
    kube.objects[("DaskCluster", "ns1", "simple")]["spec"]["suspend"] = True
    await r.reconcile_cluster(kube, SETTINGS, await _cluster(kube))
    await r.reconcile_worker_group(kube, SETTINGS, await _group(kube), _unreachable)
    assert kube.names("Pod") == []
    assert kube.names("Service") == ["simple-scheduler"]  # kept: its address stays the same
    assert (await _group(kube))["spec"]["worker"]["replicas"] == 2
