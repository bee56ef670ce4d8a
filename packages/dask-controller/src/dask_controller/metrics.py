"""Prometheus metrics of the operator itself, in a registry of their own.

Served on ``dask-controller run --metrics-port``: reconcile passes and their latency, the actions
they took (pods created, workers retired, scaling), and Kubernetes API errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "dask_operator_reconcile_total",
    "Reconcile passes, by resource kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "dask_operator_reconcile_duration_seconds",
    "Duration of reconcile passes.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
ACTIONS = Counter(
    "dask_operator_actions_total",
    "What reconcile passes did (the reason of the Kubernetes Event each action posts): "
    "WorkersCreated, WorkersRetired, Scaling, SchedulerPodReplaced, SchedulerUnreachable, ...",
    ["kind", "type", "reason"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "dask_operator_api_errors_total",
    "Failed reconcile passes caused by a Kubernetes API error, by HTTP status.",
    ["status"],
    registry=REGISTRY,
)
LOOPS = Gauge(
    "dask_operator_reconcile_loops",
    "Resources with a running reconcile loop.",
    registry=REGISTRY,
)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics from a background thread."""
    start_http_server(port, addr=address, registry=REGISTRY)
