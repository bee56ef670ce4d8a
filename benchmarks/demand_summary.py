"""Cost of the operator's per-resource demand summary, against distributed's adaptive_target.

Every autoscaler poll of a cluster whose groups offer different resources runs the scheduler
preload's ``demand()`` (``dask_controller.scheduler_preload``) inside the scheduler's event
loop, where it competes with scheduling. The reference is what every other poll runs there,
``Scheduler.adaptive_target()``, on the same scheduler in the same process. Reported: the
milliseconds of each and their ratio, for growing numbers of tasks waiting for a worker (half
of them requesting ``GPU=1``, half plain; the scheduler has no workers).

Run: ``nox -s bench`` (or ``python benchmarks/demand_summary.py`` with dask-controller installed).
Nothing leaves the machine: the scheduler listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from distributed import Client as _Client
from distributed import Scheduler

from dask_controller import scheduler_preload

Client: Any = _Client  # untyped in distributed

SIZES = (1_000, 10_000, 50_000)
REPEAT = 20


def _inc(x: int) -> int:
    return x + 1


def _timed(fn: Callable[[], Any]) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    samples = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def _measure(n: int) -> tuple[float, float]:
    scheduler = await Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0")
    client: Any = await Client(scheduler.address, asynchronous=True)
    try:
        futures = client.map(_inc, range(n // 2), resources={"GPU": 1}, pure=False)
        futures += client.map(_inc, range(n // 2, n), pure=False)
        for _ in range(6000):  # up to 5 minutes for the graph to arrive
            if len(scheduler.unrunnable) + len(scheduler.queued) >= n:
                break
            await asyncio.sleep(0.05)
        summary = scheduler_preload.demand(scheduler)
        assert sum(w["tasks"] for w in summary["waiting"]) == n, summary["waiting"]
        reference = _timed(scheduler.adaptive_target)
        candidate = _timed(lambda: scheduler_preload.demand(scheduler))
        await client.cancel(futures)
        return reference, candidate
    finally:
        await client.close()
        await scheduler.close()


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # start/stop chatter
    print(f"{'tasks':>8} {'adaptive_target ms':>19} {'demand ms':>10} {'ratio':>6}")
    for n in SIZES:
        reference, candidate = asyncio.run(_measure(n))
        print(f"{n:>8} {reference:>19.2f} {candidate:>10.2f} {candidate / reference:>6.1f}")


if __name__ == "__main__":
    main()
