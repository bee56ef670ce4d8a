"""Per-worker-group demand: reading group shapes from specs, attributing work, sizing groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dask_controller import demand as dm
from dask_controller import scheduler_preload

MANIFESTS = Path(__file__).parent / "manifests"


def _worker(*args: str, env: dict[str, str] | None = None, cpu: str | None = None) -> Any:
    container: dict[str, Any] = {"name": "worker", "image": "img", "args": list(args)}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if cpu:
        container["resources"] = {"limits": {"cpu": cpu}}
    return {"replicas": 1, "spec": {"containers": [container]}}


# -- group shapes ------------------------------------------------------------------------------


def test_reference_highmem_group_offers_its_memory_resource() -> None:
    body = yaml.safe_load((MANIFESTS / "simple-highmem.yaml").read_text())
    shape = dm.group_shape("simple-highmem", body["spec"]["worker"])
    assert shape == dm.GroupShape("simple-highmem", (("MEMORY", 32e9),), None)


@pytest.mark.parametrize(
    ("worker", "offers", "nthreads"),
    [
        (_worker("dask", "worker", "--resources", "GPU=1,MEM=2e9"), {"GPU": 1, "MEM": 2e9}, None),
        (_worker("dask", "worker", "--resources", "GPU=2 MEM=1"), {"GPU": 2, "MEM": 1}, None),
        (_worker("dask", "worker", "--resources=GPU=2", "--nthreads", "4"), {"GPU": 2}, 4),
        (_worker("sh", "-c", "exec dask worker --nthreads=2 --resources 'GPU=1'"), {"GPU": 1}, 2),
        # dask lower-cases the names of resources set through environment variables
        (_worker(env={"DASK_DISTRIBUTED__WORKER__RESOURCES__GPU": "1"}), {"gpu": 1}, None),
        (_worker(env={"DASK_DISTRIBUTED__WORKER__RESOURCES": "{'GPU': 1}"}), {"GPU": 1}, None),
        (_worker("dask", "worker", cpu="1500m"), {}, 2),
        (_worker("dask", "worker", "--nthreads", "3", cpu="8"), {}, 3),
        (_worker("dask", "worker", "--resources", "junk GPU=x TPU=1"), {"TPU": 1}, None),
        (None, {}, None),
    ],
)
def test_group_shape_reads_resources_and_threads(
    worker: Any, offers: dict[str, float], nthreads: int | None
) -> None:
    shape = dm.group_shape("g", worker)
    assert dict(shape.offers) == offers
    assert shape.nthreads == nthreads


def test_groups_differ_only_when_their_offers_differ() -> None:
    plain, plain2 = dm.GroupShape("a"), dm.GroupShape("b", nthreads=4)
    gpu = dm.GroupShape("gpu", (("GPU", 1.0),))
    assert not dm.differ([plain])
    assert not dm.differ([plain, plain2])
    assert dm.differ([plain, gpu])


# -- whose work ------------------------------------------------------------------------------

PLAIN = dm.GroupShape("c-default", (), 4)
GPU = dm.GroupShape("c-gpu", (("GPU", 1.0),), 4)
GPU_MEM = dm.GroupShape("c-big", (("GPU", 2.0), ("MEM", 64e9)), 8)
SHAPES = [PLAIN, GPU, GPU_MEM]


def test_work_goes_to_the_groups_that_fit_it_most_closely() -> None:
    assert dm.owners((), SHAPES) == ["c-default"]
    assert dm.owners((("GPU", 1.0),), SHAPES) == ["c-gpu"]
    assert dm.owners((("GPU", 2.0),), SHAPES) == ["c-big"]  # only it has 2
    assert dm.owners((("GPU", 1.0), ("MEM", 1e9)), SHAPES) == ["c-big"]
    assert dm.owners((("TPU", 1.0),), SHAPES) == []
    # without a plain group, plain work goes to the least special one
    assert dm.owners((), [GPU, GPU_MEM]) == ["c-gpu"]
    # ties all count it
    twin = dm.GroupShape("c-gpu2", (("GPU", 4.0),), 1)
    assert dm.owners((("GPU", 1.0),), [GPU, twin]) == ["c-gpu", "c-gpu2"]


def test_slots_are_bounded_by_threads_and_resources() -> None:
    assert dm.slots(4, (), ()) == 4
    assert dm.slots(4, (("GPU", 1.0),), (("GPU", 1.0),)) == 1
    assert dm.slots(4, (("GPU", 2.0),), (("GPU", 0.5),)) == 4
    assert dm.slots(8, (("GPU", 2.0), ("MEM", 64e9)), (("GPU", 1.0), ("MEM", 40e9))) == 1


# -- sizing ------------------------------------------------------------------------------------


def _snapshot(
    waiting: list[dm.Work], workers: list[dm.WorkerLoad] | None = None, target: float = 5.0
) -> dm.Snapshot:
    return dm.Snapshot(target, tuple(waiting), tuple(workers or ()))


def _group_of(worker: str) -> str | None:
    for group in ("c-default", "c-gpu", "c-big"):
        if worker.startswith(group + "-worker-"):
            return group
    return None


def _need(snapshot: dm.Snapshot, group: str, shapes: list[dm.GroupShape] = SHAPES) -> int:
    return dm.group_demand(snapshot, shapes, group, _group_of).workers


def test_gpu_burst_grows_only_the_gpu_group() -> None:
    # 10 GPU tasks of 5s each: one at a time per GPU worker, all done within 5s with 10
    snap = _snapshot([dm.Work((("GPU", 1.0),), 10, 50.0)])
    assert _need(snap, "c-gpu") == 10
    assert _need(snap, "c-default") == 0
    assert _need(snap, "c-big") == 0
    # short tasks need fewer workers: 10 x 0.5s fit in 5s on one GPU worker
    assert _need(_snapshot([dm.Work((("GPU", 1.0),), 10, 5.0)]), "c-gpu") == 1


def test_plain_burst_follows_distributeds_adaptive_rule() -> None:
    # 80 tasks of 2s on 4 threads per worker, target 5s: ceil(160/5)=32 threads -> 8 workers
    snap = _snapshot([dm.Work((), 80, 160.0)])
    assert _need(snap, "c-default") == 8
    assert _need(snap, "c-gpu") == 0
    # never more workers than the tasks can use: 3 long tasks -> 1 worker of 4 threads
    assert _need(_snapshot([dm.Work((), 3, 3000.0)]), "c-default") == 1


def test_running_work_counts_for_the_group_it_runs_on() -> None:
    busy = dm.WorkerLoad("c-gpu-worker-a", 4, (("GPU", 1.0),), 0, 0, (dm.Work((), 2, 1.0),))
    idle = dm.WorkerLoad("c-default-worker-b", 4, (), 0, 0)
    snap = _snapshot([], [busy, idle])
    demand = dm.group_demand(snap, SHAPES, "c-gpu", _group_of)
    assert (demand.workers, demand.waiting, demand.running, demand.connected) == (1, 0, 2, 1)
    assert _need(snap, "c-default") == 0
    assert "0 task(s) waiting for this group and 2 on its 1 worker(s)" in demand.describe()


def test_memory_pressure_doubles_the_group() -> None:
    full = dm.WorkerLoad("c-default-worker-a", 4, (), 100, 70)
    roomy = dm.WorkerLoad("c-gpu-worker-b", 4, (("GPU", 1.0),), 100, 10)
    snap = _snapshot([], [full, roomy])
    assert _need(snap, "c-default") == 2
    assert _need(snap, "c-gpu") == 0


def test_connected_workers_override_the_spec() -> None:
    # the spec said nothing (resources from a config file); the workers report GPU=1
    blank = [PLAIN, dm.GroupShape("c-gpu")]
    gpu_worker = dm.WorkerLoad("c-gpu-worker-a", 1, (("GPU", 1.0),), 0, 0)
    snap = _snapshot([dm.Work((("GPU", 1.0),), 4, 40.0)], [gpu_worker])
    assert _need(snap, "c-gpu", blank) == 4
    assert _need(snap, "c-default", blank) == 0


def test_unservable_work_is_reported_not_acted_on() -> None:
    snap = _snapshot([dm.Work((("TPU", 1.0),), 3, 3.0), dm.Work((), 1, 0.5)])
    demand = dm.group_demand(snap, SHAPES, "c-default", _group_of)
    assert demand.workers == 1
    assert demand.unservable == {(("TPU", 1.0),): 3}
    assert "no worker group can run: 3 (TPU=1)" in demand.describe()


def test_worker_names_map_to_groups_by_pod_name() -> None:
    lookup = dm.group_of_pods({"c-gpu-worker-abc": "c-gpu"})
    assert lookup("c-gpu-worker-abc") == "c-gpu"
    assert lookup("c-gpu-worker-abc-1") == "c-gpu"  # `dask worker --nworkers 2`
    assert lookup("c-gpu-worker-zzz") is None
    assert lookup("tcp://10.0.0.1:1234") is None


# -- the scheduler's answer ------------------------------------------------------------------


def test_parse_snapshot_reads_the_preload_answer() -> None:
    body = {
        "version": scheduler_preload.VERSION,
        "targetDuration": 5,
        "waiting": [{"resources": {"GPU": 1}, "tasks": 2, "seconds": 1.0}],
        "workers": [
            {"name": "w", "nthreads": 2, "resources": {}, "memoryLimit": 10, "memory": 1,
             "processing": [{"resources": {}, "tasks": 1, "seconds": 0.5}]}
        ],
    }  # fmt: skip
    snap = dm.parse_snapshot(body)
    assert snap.waiting == (dm.Work((("GPU", 1.0),), 2, 1.0),)
    assert snap.workers == (dm.WorkerLoad("w", 2, (), 10, 1, (dm.Work((), 1, 0.5),)),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not an object"),
        ({"version": 99}, "version 99; this operator reads version 1"),
        ({"version": 1, "targetDuration": 5, "waiting": [{}], "workers": []}, "malformed"),
    ],
)
def test_parse_snapshot_names_what_is_wrong(body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dm.parse_snapshot(body)
