"""Names of the objects the operator creates, and checks that a user-chosen name fits them.

Kubernetes names are DNS labels (RFC 1123: at most 63 characters, lower-case alphanumerics and
``-``, starting and ending with an alphanumeric). A Service name must be a DNS label too. The
operator derives child names from the parent's name, so a parent name that is valid on its own
can still produce an invalid child name; :func:`max_cluster_name_length` and
:func:`check_cluster_name` say so before anything is created.
"""

from __future__ import annotations

import re
import secrets
from typing import Final

DNS_LABEL_MAX: Final = 63
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

SCHEDULER_SUFFIX: Final = "-scheduler"
DEFAULT_GROUP: Final = "default"
WORKER_INFIX: Final = "-worker-"
RUNNER_SUFFIX: Final = "-runner"
#: Length of the random hex suffix of a worker pod name.
WORKER_SUFFIX_LENGTH: Final = 10


def scheduler_name(cluster: str) -> str:
    """Name of the scheduler Pod and Service of ``cluster``."""
    return f"{cluster}{SCHEDULER_SUFFIX}"


def default_worker_group_name(cluster: str) -> str:
    """Name of the DaskWorkerGroup every DaskCluster gets."""
    return f"{cluster}-{DEFAULT_GROUP}"


def worker_pod_name(worker_group: str, suffix: str | None = None) -> str:
    """Name of a worker pod of ``worker_group``; a random suffix unless one is given."""
    if suffix is None:
        suffix = secrets.token_hex(WORKER_SUFFIX_LENGTH // 2)
    return f"{worker_group}{WORKER_INFIX}{suffix}"


def job_runner_name(job: str) -> str:
    """Name of the runner Pod of a DaskJob."""
    return f"{job}{RUNNER_SUFFIX}"


def scheduler_address(
    cluster: str,
    namespace: str,
    port: int,
    cluster_domain: str = "cluster.local",
) -> str:
    """The in-cluster ``tcp://`` address of the scheduler Service of ``cluster``."""
    return f"tcp://{scheduler_name(cluster)}.{namespace}.svc.{cluster_domain}:{port}"


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is a valid RFC 1123 label (the rule for Pod and Service names)."""
    return len(name) <= DNS_LABEL_MAX and bool(_DNS_LABEL.match(name))


def max_cluster_name_length() -> int:
    """The longest DaskCluster name whose derived child names are all valid DNS labels.

    The longest derived name is a default-group worker pod:
    ``<cluster>-default-worker-<suffix>``.
    """
    longest_tail = len(f"-{DEFAULT_GROUP}{WORKER_INFIX}") + WORKER_SUFFIX_LENGTH
    return DNS_LABEL_MAX - longest_tail


def max_worker_group_name_length() -> int:
    """The longest DaskWorkerGroup name whose worker pod names are valid DNS labels."""
    return DNS_LABEL_MAX - len(WORKER_INFIX) - WORKER_SUFFIX_LENGTH


def check_cluster_name(name: str) -> list[str]:
    """Problems with ``name`` as a DaskCluster name, each a sentence naming the fix."""
    problems: list[str] = []
    if not _DNS_LABEL.match(name):
        problems.append(
            f"metadata.name {name!r} must consist of lower-case letters, digits and '-', "
            "and start and end with a letter or digit"
        )
    limit = max_cluster_name_length()
    if len(name) > limit:
        problems.append(
            f"metadata.name {name!r} is {len(name)} characters; a DaskCluster name can be at "
            f"most {limit} so that its worker pod names "
            f"({worker_pod_name(default_worker_group_name(name))!r} style) stay within "
            f"{DNS_LABEL_MAX}: choose a shorter name"
        )
    return problems
