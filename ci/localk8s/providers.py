"""Which Kubernetes the e2e suite runs on: the local cluster built from source, or kind.

Providers:

- ``local``: the from-source cluster of ``python -m ci.localk8s`` (no Docker needed).
- ``kind``: a kind cluster created with pytest-kind's ``KindCluster``, with the node image of the
  selected Kubernetes minor from ``ci/kubernetes-versions.toml`` (``kind_node``), and the images
  built by ``ci.images`` loaded with ``kind load image-archive``.
- ``auto`` (the default): ``kind`` where Docker works (``docker info`` succeeds: a daemon
  answers, not merely a client on PATH), else ``local``.

The provider is asked for with ``--provider NAME`` in the e2e session's arguments
(``nox -s e2e -- --provider kind``) or ``$DASK_E2E_PROVIDER``; the argument wins. The pure
functions here (``requested_provider``, ``resolve_provider``, ``split_provider_args``,
``kind_settings``, ``kind_node_image_steps``) are unit-tested in ``ci/tests`` without Docker.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import versions
from .paths import log, state_root

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

Provider = Literal["local", "kind"]
PROVIDERS: tuple[str, ...] = ("auto", "local", "kind")
ENV_VAR = "DASK_E2E_PROVIDER"
#: Images of ``ci.images`` the e2e suite needs on a kind node (kind brings its own pause image).
KIND_IMAGES: tuple[str, ...] = ("dask", "operator")
DEFAULT_KIND_CLUSTER = "dask-e2e"
#: Service and pod ranges of the kind cluster: apart from the local cluster's (10.96.0.0/16,
#: 10.244.0.0/16) so that both can run on one machine with their routes.
KIND_SERVICE_SUBNET = "10.98.0.0/16"
KIND_POD_SUBNET = "10.246.0.0/16"


class ProviderError(ValueError):
    """An unknown provider was asked for, or the chosen one cannot run here."""


# --------------------------------------------------------------------------- selection


def split_provider_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """(``--provider`` value or None, the other arguments) from an argument list.

    Accepts ``--provider kind`` and ``--provider=kind``; the remaining arguments (for pytest)
    keep their order. A ``--provider`` without a value is an error.
    """
    provider: str | None = None
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--provider":
            value = next(it, None)
            if value is None or value.startswith("-"):
                raise ProviderError("--provider needs a value: auto, local or kind")
            provider = value
        elif arg.startswith("--provider="):
            provider = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return provider, rest


def requested_provider(arg: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """What was asked for: the argument, else ``$DASK_E2E_PROVIDER``, else ``auto``."""
    env = os.environ if env is None else env
    value = (arg or env.get(ENV_VAR) or "auto").strip().lower()
    if value not in PROVIDERS:
        raise ProviderError(
            f"unknown e2e provider {value!r}; choose one of {', '.join(PROVIDERS)}"
            f" (--provider NAME or ${ENV_VAR})"
        )
    return value


def docker_works(docker: str = "docker", timeout: float = 20) -> bool:
    """True when a Docker daemon answers ``docker info`` (a client alone is not enough)."""
    path = shutil.which(docker)
    if path is None:
        return False
    try:
        result = subprocess.run(
            [path, "info"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def resolve_provider(requested: str, docker_ok: Callable[[], bool] | None = None) -> Provider:
    """The provider to use: ``auto`` becomes ``kind`` where Docker works, else ``local``.

    ``docker_ok`` (default: :func:`docker_works`) is never called for ``local``; ``kind`` asked
    for explicitly without Docker is an error saying so, rather than a failure deep inside kind.
    """
    docker_ok = docker_ok or docker_works
    if requested == "local":
        return "local"
    if requested == "kind":
        if not docker_ok():
            raise ProviderError(
                "the kind provider needs a working Docker (`docker info` failed); "
                "use --provider local for the cluster built from source"
            )
        return "kind"
    if requested == "auto":
        return "kind" if docker_ok() else "local"
    raise ProviderError(f"unknown e2e provider {requested!r}; choose one of {PROVIDERS}")


# --------------------------------------------------------------------------- kind settings


@dataclass(frozen=True)
class KindSettings:
    """kind release and node image for one Kubernetes release of the versions file."""

    kind_version: str  # "v0.33.0": the sigs.k8s.io/kind release CI installs
    node_image: str  # "kindest/node:v1.37.2"
    kubernetes: str  # "v1.37.2": what the node image must run


def kind_settings(release: versions.Release, path: Path = versions.VERSIONS_FILE) -> KindSettings:
    """The kind settings of ``release`` from the versions file (``kind``, ``kind_node``)."""
    with path.open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    entry = data["versions"].get(release.minor) or {}
    node = entry.get("kind_node")
    if not node or "kind" not in data:
        raise ProviderError(
            f"{path} has no kind settings for Kubernetes {release.minor}: "
            f'set kind = "vX.Y.Z" and kind_node under [versions."{release.minor}"]'
        )
    return KindSettings(
        kind_version=str(data["kind"]), node_image=str(node), kubernetes=release.kubernetes
    )


def kind_node_image_steps(
    settings: KindSettings, kind: str, docker: str = "docker"
) -> list[list[str]]:
    """Commands that provide the node image, tried in order until one succeeds.

    The image already present, pulled from its registry, or else built by kind from the
    Kubernetes release (``kind build node-image <version>``), so the kind node runs exactly the
    pinned patch even when kind publishes no image for it.
    """
    image = settings.node_image
    return [
        [docker, "image", "inspect", image],
        [docker, "pull", image],
        [kind, "build", "node-image", settings.kubernetes, "--image", image],
    ]


def kind_load_command(kind: str, cluster: str, archives: Sequence[Path]) -> list[str]:
    """``kind load image-archive`` for OCI archives of ``ci.images`` (all in one call)."""
    return [kind, "load", "image-archive", "--name", cluster, *(str(a) for a in archives)]


def kind_config(
    service_subnet: str = KIND_SERVICE_SUBNET, pod_subnet: str = KIND_POD_SUBNET
) -> str:
    """The kind cluster configuration (``kind create cluster --config``): one node, our ranges."""
    return (
        "kind: Cluster\n"
        "apiVersion: kind.x-k8s.io/v1alpha4\n"
        "networking:\n"
        f'  serviceSubnet: "{service_subnet}"\n'
        f'  podSubnet: "{pod_subnet}"\n'
    )


def route_commands(
    node_ip: str,
    action: Literal["replace", "del"] = "replace",
    subnets: Sequence[str] = (KIND_SERVICE_SUBNET, KIND_POD_SUBNET),
) -> list[list[str]]:
    """Routes from the host to the kind node for the service and pod ranges.

    The suite runs the controller and clients as host processes, which reach schedulers by
    ClusterIP (as on the local cluster, whose node routes the service range onto its bridge).
    On kind, a route through the node container (on Docker's bridge, never off the machine)
    lets kube-proxy on the node answer them.
    """
    return [["ip", "route", action, subnet, "via", node_ip] for subnet in subnets]


# --------------------------------------------------------------------------- kind cluster


@dataclass(frozen=True)
class KindCluster:
    """What the e2e fixtures need from a kind cluster."""

    name: str
    kubeconfig: Path
    kubectl: Path
    kind: Path


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def _which(env_name: str, default: str) -> Path | None:
    if value := os.environ.get(env_name):
        return Path(value)
    found = shutil.which(default)
    return Path(found) if found else None


def _run(cmd: Sequence[str]) -> bool:
    log(f"$ {' '.join(cmd)}")
    return subprocess.run(list(cmd), check=False).returncode == 0


def _image_archives(names: Sequence[str]) -> list[Path]:
    """Archives of ``names`` built by ``ci.images``: the cached ones, else built (needs root)."""
    images: Any = importlib.import_module("ci.images")
    have = {a.name: a for a in images.list_archives()}
    missing = [n for n in names if n not in have]
    if missing:
        log(f"building images {', '.join(missing)} (python -m ci.images build; needs root)")
        for archive in images.build(missing):
            have[archive.name] = archive
    return [Path(have[n].path) for n in names]


def _node_ip(kind: Path, name: str) -> str:
    nodes = subprocess.run(
        [str(kind), "get", "nodes", "--name", name], capture_output=True, text=True, check=True
    ).stdout.split()
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return subprocess.run(
        ["docker", "inspect", "-f", fmt, nodes[0]], capture_output=True, text=True, check=True
    ).stdout.strip()


def _route_to_node(kind: Path, name: str) -> list[list[str]]:
    """Add the routes of :func:`route_commands` (needs root); return the commands undoing them."""
    if os.geteuid() != 0:
        log(
            "not root: no route from this host to the kind cluster's services; tests whose "
            "host-side controller must reach a scheduler by ClusterIP will fail (run as root)"
        )
        return []
    node_ip = _node_ip(kind, name)
    for cmd in route_commands(node_ip):
        if not _run(cmd):
            raise ProviderError(f"cannot add the route {' '.join(cmd)}")
    return route_commands(node_ip, "del")


def kind_cluster(
    release: versions.Release | None = None, *, keep: bool | None = None
) -> Generator[KindCluster, None, None]:
    """Generator behind the e2e fixture on kind: create (or reuse) the cluster, load images.

    Uses pytest-kind's ``KindCluster(name, kubeconfig, image, kind_path, kubectl_path)``:
    ``create()`` reuses a cluster of that name, ``ensure_kubectl()`` downloads kubectl (version
    ``$KUBECTL_VERSION``) unless a binary is given, ``delete()`` removes the cluster. kind itself
    is ``$DASK_E2E_KIND`` or ``kind`` on PATH, else pytest-kind downloads ``$KIND_VERSION``;
    kubectl is ``$DASK_E2E_KUBECTL``, else pytest-kind downloads ``$KUBECTL_VERSION`` (the nox
    session sets both from the versions file). The cluster gets the ranges of
    :func:`kind_config`; as root, :func:`route_commands` routes them to its node for the run.
    A cluster that existed before is left running, one created here is deleted unless
    ``DASK_K8S_KEEP=1``.
    """
    release = release or versions.select()
    settings = kind_settings(release)
    pytest_kind: Any = importlib.import_module("pytest_kind.cluster")
    name = os.environ.get("DASK_E2E_KIND_CLUSTER") or DEFAULT_KIND_CLUSTER
    workdir = state_root() / "kind" / name
    workdir.mkdir(parents=True, exist_ok=True)
    kind_bin = _which("DASK_E2E_KIND", "kind")
    # Not kubectl from PATH: the suite checks that kubectl runs the cluster's version.
    kubectl_env = os.environ.get("DASK_E2E_KUBECTL")
    kubectl_bin = Path(kubectl_env) if kubectl_env else None
    if kubectl_bin is None and release.kubernetes != pytest_kind.KUBECTL_VERSION:
        log(
            f"pytest-kind downloads kubectl {pytest_kind.KUBECTL_VERSION}, the cluster runs "
            f"{release.kubernetes}: set KUBECTL_VERSION={release.kubernetes} (nox -s e2e does)"
        )
    kubeconfig = workdir / "kubeconfig"
    cluster = pytest_kind.KindCluster(
        name,
        kubeconfig=kubeconfig,
        image=settings.node_image,
        kind_path=kind_bin,
        kubectl_path=kubectl_bin,
    )
    cluster.ensure_kind()
    kind = Path(cluster.kind_path)
    listed = subprocess.run(
        [str(kind), "get", "clusters"], capture_output=True, text=True, check=True
    ).stdout.split()
    existed = name in listed
    if not existed and not any(_run(step) for step in kind_node_image_steps(settings, str(kind))):
        raise ProviderError(f"cannot pull or build the kind node image {settings.node_image}")
    if existed:  # pytest-kind writes the kubeconfig only when it creates the cluster
        subprocess.run(
            [str(kind), "export", "kubeconfig", "--name", name, f"--kubeconfig={kubeconfig}"],
            check=True,
        )
    config = workdir / "kind-config.yaml"
    config.write_text(kind_config())
    cluster.create(config_file=config)
    routes: list[list[str]] = []
    try:
        cluster.ensure_kubectl()
        archives = _image_archives(KIND_IMAGES)
        if not _run(kind_load_command(str(kind), name, archives)):
            raise ProviderError(f"kind load image-archive failed for {archives}")
        routes = _route_to_node(kind, name)
        yield KindCluster(
            name=name,
            kubeconfig=Path(cluster.kubeconfig_path),
            kubectl=Path(cluster.kubectl_path),
            kind=kind,
        )
    finally:
        for route in routes:
            _run(route)
        keep = _truthy("DASK_K8S_KEEP") if keep is None else keep
        if not existed and not keep:
            cluster.delete()
