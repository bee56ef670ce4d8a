"""The e2e cluster provider: selection, kind settings and commands, the fixture's dispatch.

Nothing here needs Docker, kind or a cluster: Docker is a script that answers like a client
without a daemon (or like a working one), pytest-kind's ``KindCluster`` is a recording fake.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import sys
import types
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from ci.localk8s import network, providers, pytest_plugin, versions

# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("args", "provider", "rest"),
    [
        ([], None, []),
        (["--provider", "kind"], "kind", []),
        (["--provider=local", "-k", "rbac"], "local", ["-k", "rbac"]),
        (["-x", "--provider", "auto", "tests/e2e/x.py"], "auto", ["-x", "tests/e2e/x.py"]),
        (["-k", "provider"], None, ["-k", "provider"]),
    ],
)
def test_split_provider_args(args: list[str], provider: str | None, rest: list[str]) -> None:
    assert providers.split_provider_args(args) == (provider, rest)


@pytest.mark.parametrize("args", [["--provider"], ["--provider", "-k", "x"]])
def test_provider_without_value_is_an_error(args: list[str]) -> None:
    with pytest.raises(providers.ProviderError, match="needs a value"):
        providers.split_provider_args(args)


def test_requested_provider_argument_beats_environment() -> None:
    env = {providers.ENV_VAR: "local"}
    assert providers.requested_provider("kind", env) == "kind"
    assert providers.requested_provider(None, env) == "local"
    assert providers.requested_provider(None, {}) == "auto"
    assert providers.requested_provider(None, {providers.ENV_VAR: " KIND "}) == "kind"


def test_unknown_provider_names_the_choices() -> None:
    with pytest.raises(providers.ProviderError, match="auto, local, kind"):
        providers.requested_provider("minikube", {})


# --------------------------------------------------------------------------- resolution


def _never() -> bool:
    raise AssertionError("Docker must not be probed")


def test_auto_is_kind_only_where_docker_works() -> None:
    assert providers.resolve_provider("auto", lambda: True) == "kind"
    assert providers.resolve_provider("auto", lambda: False) == "local"


def test_local_never_probes_docker() -> None:
    assert providers.resolve_provider("local", _never) == "local"


def test_kind_without_docker_is_an_error_pointing_to_local() -> None:
    assert providers.resolve_provider("kind", lambda: True) == "kind"
    with pytest.raises(providers.ProviderError, match="--provider local"):
        providers.resolve_provider("kind", lambda: False)


def _fake_docker(tmp_path: Path, exit_code: int) -> Path:
    script = tmp_path / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'echo "Client:"\n'
        f'[ {exit_code} -ne 0 ] && echo "Cannot connect to the Docker daemon" >&2\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_docker_client_without_a_daemon_does_not_count(tmp_path: Path) -> None:
    """As on our CI machines: `docker` exists, `docker info` fails -> the local cluster."""
    docker = _fake_docker(tmp_path, 1)
    assert not providers.docker_works(str(docker))
    assert providers.resolve_provider("auto", lambda: providers.docker_works(str(docker))) == (
        "local"
    )


def test_a_docker_daemon_that_answers_counts(tmp_path: Path) -> None:
    docker = _fake_docker(tmp_path, 0)
    assert providers.docker_works(str(docker))


def test_no_docker_at_all(tmp_path: Path) -> None:
    assert not providers.docker_works(str(tmp_path / "missing-docker"))


def test_default_is_auto_and_local_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(providers.ENV_VAR, raising=False)
    requested = providers.requested_provider()
    assert requested == "auto"
    assert providers.resolve_provider(requested, lambda: False) == "local"


# --------------------------------------------------------------------------- kind settings


def test_every_minor_has_a_kind_node_image_of_its_pinned_patch() -> None:
    data = versions.load()
    for minor, release in data.releases.items():
        settings = providers.kind_settings(release)
        assert settings.node_image == f"kindest/node:{release.kubernetes}", minor
        assert settings.kubernetes == release.kubernetes
        assert settings.kind_version.startswith("v")


def test_missing_kind_settings_say_what_to_add(tmp_path: Path) -> None:
    path = tmp_path / "versions.toml"
    path.write_text('default = "1.37"\nhelm = "v3"\n[versions."1.37"]\nkubernetes = "v1.37.2"\n')
    release = versions.Release(minor="1.37", kubernetes="v1.37.2", etcd="v3", helm="v3")
    with pytest.raises(providers.ProviderError, match=r'kind_node under \[versions."1.37"\]'):
        providers.kind_settings(release, path)


def test_node_image_present_then_pulled_then_built_from_the_release() -> None:
    settings = providers.KindSettings("v0.33.0", "kindest/node:v1.36.3", "v1.36.3")
    assert providers.kind_node_image_steps(settings, "/bin/kind") == [
        ["docker", "image", "inspect", "kindest/node:v1.36.3"],
        ["docker", "pull", "kindest/node:v1.36.3"],
        ["/bin/kind", "build", "node-image", "v1.36.3", "--image", "kindest/node:v1.36.3"],
    ]


def test_kind_load_image_archive_command() -> None:
    cmd = providers.kind_load_command("kind", "dask-e2e", [Path("/c/dask.tar"), Path("/c/op.tar")])
    assert cmd == [
        *("kind", "load", "image-archive", "--name", "dask-e2e"),
        *("/c/dask.tar", "/c/op.tar"),
    ]


def test_kind_config_uses_ranges_apart_from_the_local_cluster() -> None:
    config = yaml.safe_load(providers.kind_config())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    service = ipaddress.ip_network(config["networking"]["serviceSubnet"])
    pods = ipaddress.ip_network(config["networking"]["podSubnet"])
    local = [ipaddress.ip_network(network.SERVICE_CIDR), ipaddress.ip_network(network.POD_CIDR)]
    for ours in (service, pods):
        assert ours.is_private
        assert not any(
            ours.overlaps(other) for other in [*local, service if ours == pods else pods]
        )


def test_routes_to_the_kind_node() -> None:
    assert providers.route_commands("172.18.0.2") == [
        ["ip", "route", "replace", providers.KIND_SERVICE_SUBNET, "via", "172.18.0.2"],
        ["ip", "route", "replace", providers.KIND_POD_SUBNET, "via", "172.18.0.2"],
    ]
    assert providers.route_commands("172.18.0.2", "del")[0][:3] == ["ip", "route", "del"]


# --------------------------------------------------------------------------- kind cluster


class FakeKindCluster:
    """Records what pytest-kind's KindCluster is asked to do."""

    instances: ClassVar[list[FakeKindCluster]] = []

    def __init__(
        self,
        name: str,
        kubeconfig: Path | None = None,
        image: str | None = None,
        kind_path: Path | None = None,
        kubectl_path: Path | None = None,
    ) -> None:
        self.name = name
        self.kubeconfig_path = kubeconfig
        self.image = image
        self.kind_path = kind_path
        self.given_kubectl = kubectl_path
        # As pytest-kind: its own download path unless a binary is given.
        self.kubectl_path = kubectl_path or Path(".pytest-kind", name, "kubectl-v1.25.3")
        self.calls: list[str] = []
        FakeKindCluster.instances.append(self)

    def ensure_kind(self) -> None:
        self.calls.append("ensure_kind")

    def ensure_kubectl(self) -> None:
        self.calls.append("ensure_kubectl")

    def create(self, config_file: Path | None = None) -> None:
        assert config_file is not None
        self.config = config_file.read_text()
        self.calls.append("create")

    def delete(self) -> None:
        self.calls.append("delete")


@pytest.fixture
def fake_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fake pytest_kind module, a fake kind binary, and recorded commands."""
    FakeKindCluster.instances = []
    module = types.ModuleType("pytest_kind.cluster")
    module.KindCluster = FakeKindCluster  # type: ignore[attr-defined]
    module.KUBECTL_VERSION = "v1.25.3"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytest_kind", types.ModuleType("pytest_kind"))
    monkeypatch.setitem(sys.modules, "pytest_kind.cluster", module)
    existing = tmp_path / "clusters"
    existing.write_text("")
    kind = tmp_path / "kind"
    kind.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/kind-calls.log\n'
        f"[ \"$1 $2\" = 'get clusters' ] && cat {existing}\n"
        "exit 0\n"
    )
    kind.chmod(0o755)
    monkeypatch.setenv("DASK_E2E_KIND", str(kind))
    monkeypatch.delenv("DASK_E2E_KUBECTL", raising=False)
    monkeypatch.setenv("DASK_K8S_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("DASK_K8S_KEEP", raising=False)
    monkeypatch.delenv("DASK_E2E_KIND_CLUSTER", raising=False)
    commands: list[list[str]] = []
    archives = [tmp_path / "dask.tar", tmp_path / "operator.tar"]

    def run(cmd: Any) -> bool:
        commands.append(list(cmd))
        return bool(cmd[:3] != ["docker", "image", "inspect"])  # not present, so pulled

    monkeypatch.setattr(providers, "_run", run)
    monkeypatch.setattr(providers, "_image_archives", lambda names: archives)

    def route(kind: Path, name: str) -> list[list[str]]:
        commands.append(["route", name])
        return providers.route_commands("172.18.0.2", "del")

    monkeypatch.setattr(providers, "_route_to_node", route)
    return {"commands": commands, "existing": existing, "kind": kind, "archives": archives}


def test_kind_cluster_creates_loads_images_and_deletes(fake_kind: dict[str, Any]) -> None:
    release = versions.select("1.36")
    gen = providers.kind_cluster(release)
    found = next(gen)
    cluster = FakeKindCluster.instances[0]
    assert cluster.name == providers.DEFAULT_KIND_CLUSTER
    assert cluster.image == "kindest/node:v1.36.3"
    assert cluster.kind_path == fake_kind["kind"]
    assert cluster.given_kubectl is None  # pytest-kind downloads the cluster's version
    assert found.kubeconfig == cluster.kubeconfig_path
    assert str(found.kubeconfig).startswith(os.environ["DASK_K8S_STATE"])
    kind = str(fake_kind["kind"])
    assert fake_kind["commands"] == [
        ["docker", "image", "inspect", "kindest/node:v1.36.3"],
        ["docker", "pull", "kindest/node:v1.36.3"],
        providers.kind_load_command(kind, "dask-e2e", fake_kind["archives"]),
        ["route", "dask-e2e"],
    ]
    assert cluster.calls == ["ensure_kind", "create", "ensure_kubectl"]
    assert cluster.config == providers.kind_config()
    gen.close()
    assert cluster.calls[-1] == "delete"
    assert fake_kind["commands"][-2:] == providers.route_commands("172.18.0.2", "del")


def test_an_existing_kind_cluster_is_reused_and_kept(fake_kind: dict[str, Any]) -> None:
    fake_kind["existing"].write_text("other\ndask-e2e\n")
    gen = providers.kind_cluster(versions.select("1.37"))
    next(gen)
    gen.close()
    cluster = FakeKindCluster.instances[0]
    assert "delete" not in cluster.calls
    # Its kubeconfig is exported (pytest-kind writes one only when it creates the cluster).
    calls = (fake_kind["kind"].parent / "kind-calls.log").read_text().splitlines()
    assert f"export kubeconfig --name dask-e2e --kubeconfig={cluster.kubeconfig_path}" in calls
    # No node image needed for a cluster that exists; the images are loaded again (fresh build).
    assert [c[1] for c in fake_kind["commands"]] == ["load", "dask-e2e", "route", "route"]


def test_keep_leaves_a_new_cluster_running(
    fake_kind: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASK_K8S_KEEP", "1")
    gen = providers.kind_cluster(versions.select("1.37"))
    next(gen)
    gen.close()
    assert "delete" not in FakeKindCluster.instances[0].calls


# --------------------------------------------------------------------------- fixture dispatch


def _recording(label: str, seen: list[str]) -> Any:
    def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
        seen.append(f"{label} start")
        try:
            yield pytest_plugin.E2ECluster(Path(f"/{label}/kubeconfig"), Path(f"/{label}/kubectl"))
        finally:
            seen.append(f"{label} end")

    return gen


@pytest.fixture
def dispatch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(pytest_plugin, "local_cluster", _recording("local", seen))

    def kind(*args: Any, **kwargs: Any) -> Generator[providers.KindCluster, None, None]:
        seen.append("kind start")
        try:
            yield providers.KindCluster(
                "dask-e2e", Path("/kind/kubeconfig"), Path("/kind/kubectl"), Path("/kind/kind")
            )
        finally:
            seen.append("kind end")

    monkeypatch.setattr(providers, "kind_cluster", kind)
    monkeypatch.setattr(providers, "docker_works", lambda *a, **k: False)
    monkeypatch.delenv("DASK_E2E_KUBECONFIG", raising=False)
    monkeypatch.delenv("DASK_E2E_USE_KUBECONFIG", raising=False)
    monkeypatch.delenv(providers.ENV_VAR, raising=False)
    return seen


@pytest.mark.parametrize(
    ("provider", "env", "expected"),
    [
        (None, None, "local"),  # auto without Docker: the default here
        ("local", None, "local"),
        ("kind", None, "kind"),
        (None, "kind", "kind"),
        ("local", "kind", "local"),
    ],
)
def test_fixture_uses_the_chosen_provider(
    dispatch: list[str],
    monkeypatch: pytest.MonkeyPatch,
    provider: str | None,
    env: str | None,
    expected: str,
) -> None:
    monkeypatch.setattr(providers, "docker_works", lambda *a, **k: expected == "kind")
    if env:
        monkeypatch.setenv(providers.ENV_VAR, env)
    gen = pytest_plugin.e2e_cluster(provider)
    found = next(gen)
    assert found.kubeconfig == Path(f"/{expected}/kubeconfig")
    assert found.kubectl == Path(f"/{expected}/kubectl")
    assert found.provider == expected
    gen.close()
    assert dispatch == [f"{expected} start", f"{expected} end"]


def test_an_external_kubeconfig_wins_over_the_provider(
    dispatch: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASK_E2E_KUBECONFIG", "/somewhere/kubeconfig")
    monkeypatch.setenv(providers.ENV_VAR, "kind")
    gen = pytest_plugin.e2e_cluster()
    next(gen)
    gen.close()
    assert dispatch == ["local start", "local end"]  # local_cluster handles the external one


# --------------------------------------------------------------------------- real pytest-kind

FAKE_KIND = """#!/bin/sh
here=$(dirname "$0")
echo "$@" >> "$here/kind-calls.log"
case "$1 $2" in
  "get clusters") cat "$here/clusters" ;;
  "create cluster")
    for a in "$@"; do case "$a" in --kubeconfig=*) kc="${a#--kubeconfig=}" ;; esac; done
    cp "$here/kubeconfig.yaml" "$kc"; echo dask-e2e >> "$here/clusters" ;;
  "get nodes") echo dask-e2e-control-plane ;;
  "delete cluster") : > "$here/clusters" ;;
esac
exit 0
"""

FAKE_DOCKER = """#!/bin/sh
[ "$1" = inspect ] && echo 172.18.0.2
exit 0
"""

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: kind, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: kind, user: {token: not-used}}]
contexts: [{name: kind, context: {cluster: kind, user: kind}}]
current-context: kind
"""


def test_kind_cluster_with_the_real_pytest_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our calls against pytest-kind's real KindCluster; kind and docker are scripts."""
    pytest.importorskip("pytest_kind")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("kind", FAKE_KIND), ("docker", FAKE_DOCKER), ("kubectl", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "clusters").write_text("")
    (bin_dir / "kubeconfig.yaml").write_text(KUBECONFIG)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DASK_K8S_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("DASK_E2E_KUBECTL", str(bin_dir / "kubectl"))
    for var in ("DASK_E2E_KIND", "DASK_K8S_KEEP", "DASK_E2E_KIND_CLUSTER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # pytest-kind keeps .pytest-kind/ in the working directory
    archives = [tmp_path / "dask.tar", tmp_path / "operator.tar"]
    monkeypatch.setattr(providers, "_image_archives", lambda names: archives)
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # routes are recorded, never added
    ran: list[list[str]] = []

    def run(cmd: Any) -> bool:
        ran.append(list(cmd))
        return bool(cmd[:2] != ["docker", "image"])  # the node image is pulled

    monkeypatch.setattr(providers, "_run", run)

    gen = providers.kind_cluster(versions.select("1.35"))
    found = next(gen)
    kind = str(bin_dir / "kind")
    assert found.kind == bin_dir / "kind"
    assert found.kubectl == bin_dir / "kubectl"
    assert found.kubeconfig.read_text() == KUBECONFIG
    calls = (bin_dir / "kind-calls.log").read_text().splitlines()
    config = tmp_path / "state" / "kind" / "dask-e2e" / "kind-config.yaml"
    assert (
        f"create cluster --name=dask-e2e --kubeconfig={found.kubeconfig} "
        f"--image=kindest/node:v1.35.4 --config {config}"
    ) in calls
    assert ran == [
        ["docker", "image", "inspect", "kindest/node:v1.35.4"],
        ["docker", "pull", "kindest/node:v1.35.4"],
        providers.kind_load_command(kind, "dask-e2e", archives),
        *providers.route_commands("172.18.0.2"),
    ]
    gen.close()
    assert ran[-2:] == providers.route_commands("172.18.0.2", "del")
    calls = (bin_dir / "kind-calls.log").read_text().splitlines()
    assert calls[-1] == f"delete cluster --name=dask-e2e --kubeconfig={found.kubeconfig}"


def test_an_external_cluster_is_reported_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    monkeypatch.setenv("DASK_E2E_KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("DASK_E2E_KUBECTL", "/usr/bin/kubectl")
    monkeypatch.setenv(providers.ENV_VAR, "kind")
    gen = pytest_plugin.e2e_cluster()
    found = next(gen)
    gen.close()
    assert (found.kubeconfig, found.kubectl, found.provider) == (
        kubeconfig,
        Path("/usr/bin/kubectl"),
        "external",
    )
