from __future__ import annotations

import os
from pathlib import Path

import yaml

from dask_kubecluster import discovery


def _kubeconfig(path: Path, current: str | None, contexts: dict[str, str | None]) -> Path:
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "contexts": [
            {
                "name": name,
                "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})},
            }
            for name, ns in contexts.items()
        ],
    }
    if current:
        data["current-context"] = current
    path.write_text(yaml.safe_dump(data))
    return path


def test_service_account_file_wins(tmp_path: Path) -> None:
    sa = tmp_path / "namespace"
    sa.write_text("team-a\n")
    kc = _kubeconfig(tmp_path / "config", "ctx", {"ctx": "team-b"})
    assert discovery.discover_namespace(service_account_namespace=sa, kubeconfig=[kc]) == "team-a"


def test_kubeconfig_current_context_namespace(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path / "config", "b", {"a": "ns-a", "b": "ns-b"})
    missing = tmp_path / "no-sa"
    assert (
        discovery.discover_namespace(service_account_namespace=missing, kubeconfig=[kc]) == "ns-b"
    )


def test_explicit_context(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path / "config", "b", {"a": "ns-a", "b": "ns-b"})
    found = discovery.discover_namespace(
        service_account_namespace=tmp_path / "no-sa", kubeconfig=[kc], context="a"
    )
    assert found == "ns-a"


def test_context_without_namespace_is_default(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path / "config", "a", {"a": None})
    found = discovery.discover_namespace(service_account_namespace=tmp_path / "x", kubeconfig=[kc])
    assert found == "default"


def test_nothing_at_all_is_default(tmp_path: Path) -> None:
    found = discovery.discover_namespace(
        service_account_namespace=tmp_path / "x", kubeconfig=[tmp_path / "missing"]
    )
    assert found == "default"


def test_empty_service_account_file_is_ignored(tmp_path: Path) -> None:
    sa = tmp_path / "namespace"
    sa.write_text("  \n")
    assert discovery.namespace_from_service_account(sa) is None


def test_kubeconfig_merge_first_file_wins(tmp_path: Path) -> None:
    first = _kubeconfig(tmp_path / "one", None, {"shared": "from-one"})
    second = _kubeconfig(tmp_path / "two", "shared", {"shared": "from-two", "other": "x"})
    merged = discovery.load_kubeconfigs([first, second])
    assert merged["current-context"] == "shared"
    assert discovery.namespace_from_kubeconfig(merged) == "from-one"
    assert discovery.namespace_from_kubeconfig(merged, "other") == "x"


def test_malformed_kubeconfig_is_skipped(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("{not: [valid")
    good = _kubeconfig(tmp_path / "good", "a", {"a": "ns"})
    assert discovery.namespace_from_kubeconfig(discovery.load_kubeconfigs([bad, good])) == "ns"


def test_kubeconfig_paths_from_environment(tmp_path: Path) -> None:
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")])}
    assert discovery.kubeconfig_paths(env) == [tmp_path / "a", tmp_path / "b"]
    assert discovery.kubeconfig_paths({}) == [Path("~/.kube/config").expanduser()]
    assert discovery.kubeconfig_env(env) == os.pathsep.join(
        [str(tmp_path / "a"), str(tmp_path / "b")]
    )


def test_in_cluster_needs_env_and_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    assert not discovery.in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, token)
    token.write_text("t")
    assert discovery.in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, token)
    assert not discovery.in_cluster({}, token)
