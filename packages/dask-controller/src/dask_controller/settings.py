"""Operator settings, read once from the environment (the Helm chart sets these)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dask_crds.constants import DEFAULT_CLUSTER_DOMAIN


class SettingsError(ValueError):
    """An environment variable has a value the operator cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not true or false")


@dataclass(frozen=True)
class Settings:
    """What the operator needs to know that is not in a custom resource."""

    #: DNS domain of the Kubernetes cluster, used in scheduler addresses given to pods.
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    #: Worker pods created concurrently per batch when scaling up (chart: workerAllocation.size).
    worker_allocation_size: int = 10
    #: Seconds between batches of worker pod creations (chart: workerAllocation.delay).
    worker_allocation_delay: float = 0.0
    #: Timeout in seconds for each call to a Dask scheduler.
    scheduler_timeout: float = 10.0
    #: Post Kubernetes Events about Dask resources (chart: events.enabled).
    post_events: bool = True
    #: A reconcile loop with no finished pass for this long fails the liveness probe.
    liveness_max_age: float = 300.0
    #: Seconds between polls of a scheduler by a DaskAutoscaler and by the idle-timeout check.
    scheduler_poll_interval: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        domain = env.get("DASK_OPERATOR_CLUSTER_DOMAIN", "").strip() or DEFAULT_CLUSTER_DOMAIN
        return cls(
            cluster_domain=domain.rstrip("."),
            worker_allocation_size=_int(env, "DASK_OPERATOR_WORKER_ALLOCATION_SIZE", 10, 1),
            worker_allocation_delay=_float(env, "DASK_OPERATOR_WORKER_ALLOCATION_DELAY", 0.0, 0.0),
            scheduler_timeout=_float(env, "DASK_OPERATOR_SCHEDULER_TIMEOUT", 10.0, 0.1),
            post_events=_bool(env, "DASK_OPERATOR_EVENTS", True),
            liveness_max_age=_float(env, "DASK_OPERATOR_LIVENESS_MAX_AGE", 300.0, 30.0),
            scheduler_poll_interval=_float(env, "DASK_OPERATOR_SCHEDULER_POLL_INTERVAL", 5.0, 0.5),
        )
