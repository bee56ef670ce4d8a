"""Per-worker-group demand: how many workers a group needs for the work that belongs to it.

Used by the autoscaler when a cluster's worker groups advertise different Dask resources (a
``gpu`` group started with ``--resources GPU=1`` next to a plain default group). The scheduler's
own ``adaptive_target`` counts the whole cluster's work, so every group would grow for any
burst; here each group is sized by the work only it should take:

* a task waiting for a worker belongs to the groups that can run it (they advertise at least
  the resources it requests) *and* advertise the fewest resources it does not need: a plain task
  goes to the plain group, a ``GPU`` task to the ``GPU`` group, not to a ``GPU`` + ``MEM`` group;
  groups that tie all count it;
* a task already on a worker belongs to that worker's group.

From that work the group's worker count follows distributed's ``adaptive_target`` rule (enough
workers to finish the work within ``distributed.adaptive.target-duration``, never more than the
tasks can use, twice the workers when their memory is more than 60% full), with one refinement:
a worker runs at once only as many tasks of a kind as its threads *and* resources allow (one
``GPU=1`` task at a time on a ``GPU=1`` worker, however many threads it has).

The scheduler's side is :mod:`dask_controller.scheduler_preload`; everything here is pure.
"""

from __future__ import annotations

import ast
import math
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dask_controller import scheduler_preload

#: A resource request or offer in a hashable, ordered form: ``(("GPU", 1.0), ...)``.
Resources = tuple[tuple[str, float], ...]

#: distributed's memory rule: above this fraction of the workers' memory, ask for twice as many.
MEMORY_FRACTION = 0.6
ENV_RESOURCES = "DASK_DISTRIBUTED__WORKER__RESOURCES"


def resources(value: Mapping[str, Any] | None) -> Resources:
    """``{"GPU": 1}`` as :data:`Resources`."""
    return tuple(sorted((str(k), float(v)) for k, v in (value or {}).items()))


def describe_request(request: Resources) -> str:
    """``GPU=1,MEM=1e+10``; ``no resources`` for a plain task."""
    return ",".join(f"{k}={v:g}" for k, v in request) or "no resources"


# -- the scheduler's answer ------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """Tasks requesting the same resources, and their expected run time in seconds."""

    request: Resources
    tasks: int
    seconds: float


@dataclass(frozen=True)
class WorkerLoad:
    """One connected worker: what it offers and what it is running or about to run."""

    name: str
    nthreads: int
    offers: Resources
    memory_limit: int
    memory: int
    processing: tuple[Work, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """The scheduler's demand answer (see :mod:`dask_controller.scheduler_preload`)."""

    target_duration: float
    waiting: tuple[Work, ...]
    workers: tuple[WorkerLoad, ...]


def _works(items: Any) -> tuple[Work, ...]:
    return tuple(
        Work(resources(w.get("resources")), int(w["tasks"]), float(w["seconds"])) for w in items
    )


def parse_snapshot(body: Any) -> Snapshot:
    """The preload's JSON answer; ``ValueError`` naming the problem when it is not one."""
    if not isinstance(body, Mapping):
        raise ValueError(f"demand answer is not an object: {str(body)[:100]}")
    version = body.get("version")
    if version != scheduler_preload.VERSION:
        raise ValueError(
            f"demand answer has version {version!r}; this operator reads version "
            f"{scheduler_preload.VERSION} (the scheduler was started by another operator release)"
        )
    if "error" in body:
        raise ValueError(f"the scheduler could not summarise its work: {body['error']}")
    try:
        return Snapshot(
            target_duration=float(body["targetDuration"]),
            waiting=_works(body["waiting"]),
            workers=tuple(
                WorkerLoad(
                    name=str(w["name"]),
                    nthreads=max(1, int(w["nthreads"])),
                    offers=resources(w.get("resources")),
                    memory_limit=int(w.get("memoryLimit") or 0),
                    memory=int(w.get("memory") or 0),
                    processing=_works(w.get("processing") or ()),
                )
                for w in body["workers"]
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed demand answer: {type(exc).__name__}: {exc}") from exc


# -- what a worker group offers, read from its spec -------------------------------------------


@dataclass(frozen=True)
class GroupShape:
    """A worker group as far as demand goes: its name, the resources each of its workers
    offers, and its threads per worker (``None`` when the spec does not tell)."""

    name: str
    offers: Resources = ()
    nthreads: int | None = None


def _options(container: Mapping[str, Any], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in the container's command and args
    (the last one wins, as with click), also inside a shell string (``sh -c "dask worker
    --resources 'GPU=1 MEM=2e9'"``)."""
    raw = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    found = _option(raw, name)
    for arg in raw:
        if found is not None:
            break
        if any(ch.isspace() for ch in arg):
            try:
                found = _option(shlex.split(arg), name)
            except ValueError:  # unbalanced quotes: not a shell command we can read
                continue
    return found


def _option(tokens: Sequence[str], name: str) -> str | None:
    value = None
    for i, tok in enumerate(tokens):
        if tok == name and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif tok.startswith(name + "="):
            value = tok[len(name) + 1 :]
    return value


def parse_resources_option(text: str) -> dict[str, float]:
    """``dask worker --resources``'s value: ``"GPU=2 MEM=10e9"`` or ``"GPU=2,MEM=10e9"``.
    Items that are not ``NAME=number`` are ignored (the worker would refuse to start)."""
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, sep, amount = item.partition("=")
        try:
            if sep and name:
                out[name] = float(amount)
        except ValueError:
            continue
    return out


def _env_resources(container: Mapping[str, Any]) -> dict[str, float]:
    """Resources set through dask config environment variables. Like dask, the names of
    ``DASK_DISTRIBUTED__WORKER__RESOURCES__<NAME>`` come out lower-case."""
    out: dict[str, float] = {}
    for env in container.get("env") or []:
        name, value = str(env.get("name", "")), env.get("value")
        if value is None:
            continue
        if name == ENV_RESOURCES:
            try:
                parsed = ast.literal_eval(str(value))
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, Mapping):
                for k, v in parsed.items():
                    if isinstance(v, (int, float)):
                        out[str(k)] = float(v)
        elif name.startswith(ENV_RESOURCES + "__"):
            try:
                out[name[len(ENV_RESOURCES) + 2 :].lower()] = float(str(value))
            except ValueError:
                continue
    return out


def _cpu_quantity(value: Any) -> float | None:
    text = str(value).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None


def group_shape(name: str, worker: Mapping[str, Any] | None) -> GroupShape:
    """A group's shape from its ``spec.worker`` (``{"replicas": .., "spec": <pod spec>}``).

    Resources come from ``--resources`` in a container's command or args and from the
    ``DASK_DISTRIBUTED__WORKER__RESOURCES`` variables; threads from ``--nthreads``, else from
    the first container's CPU limit (what ``dask worker`` itself would pick).
    """
    pod_spec = (worker or {}).get("spec") or {}
    containers: list[Mapping[str, Any]] = list(pod_spec.get("containers") or [])
    offers: dict[str, float] = {}
    nthreads: int | None = None
    for container in containers:
        offers.update(_env_resources(container))
        option = _options(container, "--resources")
        if option is not None:
            offers.update(parse_resources_option(option))
        threads = _options(container, "--nthreads")
        if nthreads is None and threads is not None and threads.isdigit() and int(threads) > 0:
            nthreads = int(threads)
    if nthreads is None and containers:
        limit = ((containers[0].get("resources") or {}).get("limits") or {}).get("cpu")
        cpus = _cpu_quantity(limit) if limit is not None else None
        if cpus is not None and cpus > 0:
            nthreads = max(1, math.ceil(cpus))
    return GroupShape(name, resources(offers), nthreads)


def differ(shapes: Iterable[GroupShape]) -> bool:
    """Whether the groups offer different resources (so that per-group demand matters)."""
    return len({s.offers for s in shapes}) > 1


# -- whose work is it -------------------------------------------------------------------------


def serves(offers: Resources, request: Resources) -> bool:
    """Whether a worker offering ``offers`` can run a task requesting ``request``."""
    have = dict(offers)
    return all(have.get(name, 0.0) >= amount for name, amount in request)


def owners(request: Resources, shapes: Sequence[GroupShape]) -> list[str]:
    """The groups a waiting task requesting ``request`` belongs to: of those that can run it,
    the ones offering the fewest resources it does not request."""
    needed = {name for name, _ in request}
    able = [s for s in shapes if serves(s.offers, request)]
    if not able:
        return []
    extra = {s.name: len({name for name, _ in s.offers} - needed) for s in able}
    fewest = min(extra.values())
    return [s.name for s in able if extra[s.name] == fewest]


def slots(nthreads: int, offers: Resources, request: Resources) -> int:
    """How many tasks requesting ``request`` one worker runs at once."""
    have = dict(offers)
    n = nthreads
    for name, amount in request:
        if amount > 0:
            n = min(n, math.floor(have.get(name, 0.0) / amount + 1e-9))
    return n


# -- the number of workers ------------------------------------------------------------------


@dataclass(frozen=True)
class GroupDemand:
    """What one group needs, and the figures behind it (for the autoscaler's reason)."""

    workers: int
    waiting: int
    running: int
    connected: int
    #: Waiting tasks no group can run, by request (reported, never acted on).
    unservable: dict[Resources, int] = field(default_factory=dict)

    def describe(self) -> str:
        text = (
            f"{self.waiting} task(s) waiting for this group and {self.running} on its "
            f"{self.connected} worker(s) need {self.workers} worker(s)"
        )
        if self.unservable:
            lost = ", ".join(
                f"{n} ({describe_request(r)})" for r, n in sorted(self.unservable.items())
            )
            text += f"; waiting tasks no worker group can run: {lost}"
        return text


def effective_shapes(
    snapshot: Snapshot, shapes: Sequence[GroupShape], group_of: Callable[[str], str | None]
) -> list[GroupShape]:
    """``shapes`` corrected by what the groups' connected workers report (the truth when a
    group has workers; the spec is the only source for a group at zero)."""
    seen: dict[str, list[WorkerLoad]] = {}
    for w in snapshot.workers:
        g = group_of(w.name)
        if g is not None:
            seen.setdefault(g, []).append(w)
    out = []
    for s in shapes:
        workers = seen.get(s.name)
        if workers:
            threads = round(sum(w.nthreads for w in workers) / len(workers))
            out.append(GroupShape(s.name, workers[0].offers, max(1, threads)))
        else:
            out.append(s)
    return out


def group_demand(
    snapshot: Snapshot,
    shapes: Sequence[GroupShape],
    group: str,
    group_of: Callable[[str], str | None],
) -> GroupDemand:
    """The workers ``group`` needs for its share of ``snapshot``'s work.

    ``shapes`` are all of the cluster's groups (spec-derived); ``group_of`` maps a worker name
    to its group (``None`` for a worker of no known group).
    """
    eff = effective_shapes(snapshot, shapes, group_of)
    mine = next((s for s in eff if s.name == group), GroupShape(group))
    nthreads = mine.nthreads or 1
    work: dict[Resources, list[float]] = {}
    waiting = running = 0
    unservable: dict[Resources, int] = {}
    for w in snapshot.waiting:
        who = owners(w.request, eff)
        if not who:
            unservable[w.request] = unservable.get(w.request, 0) + w.tasks
        elif group in who:
            entry = work.setdefault(w.request, [0.0, 0.0])
            entry[0] += w.tasks
            entry[1] += w.seconds
            waiting += w.tasks
    members = [w for w in snapshot.workers if group_of(w.name) == group]
    for worker in members:
        for p in worker.processing:
            entry = work.setdefault(p.request, [0.0, 0.0])
            entry[0] += p.tasks
            entry[1] += p.seconds
            running += p.tasks
    target = max(snapshot.target_duration, 1e-3)
    need = 0.0
    for request, (tasks, seconds) in work.items():
        per_worker = slots(nthreads, mine.offers, request)
        if per_worker <= 0:  # a task pinned to a worker that no longer offers enough
            per_worker = 1
        need += min(tasks / per_worker, seconds / (per_worker * target))
    workers = math.ceil(need - 1e-9)
    if (waiting or running) and workers == 0:
        workers = 1
    limit = sum(w.memory_limit for w in members)
    used = sum(w.memory for w in members)
    if limit > 0 and used > MEMORY_FRACTION * limit:
        workers = max(workers, 2 * len(members))
    return GroupDemand(workers, waiting, running, len(members), unservable)


def group_of_pods(pod_groups: Mapping[str, str]) -> Callable[[str], str | None]:
    """A worker-name -> group lookup from pod name -> group: a worker is named after its pod
    (``DASK_WORKER_NAME``), or ``<pod>-<i>`` when a pod runs several worker processes."""

    def lookup(worker: str) -> str | None:
        if worker in pod_groups:
            return pod_groups[worker]
        pod, sep, index = worker.rpartition("-")
        if sep and index.isdigit() and pod in pod_groups:
            return pod_groups[pod]
        return None

    return lookup
