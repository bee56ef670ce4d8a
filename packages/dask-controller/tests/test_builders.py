"""Builders as data: the reference manifests in, Kubernetes objects out."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from dask_controller import builders as b
from dask_crds import constants as c

MANIFESTS = Path(__file__).parent / "manifests"


def _load(name: str, namespace: str = "ns1", uid: str = "uid-1") -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    obj["metadata"].update(namespace=namespace, uid=uid)
    return obj


@pytest.fixture
def simple() -> dict[str, Any]:
    return _load("simple-cluster.yaml")


def _env(pod: dict[str, Any], container: int = 0) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][container]["env"]}


def test_scheduler_pod_of_reference_cluster(simple: dict[str, Any]) -> None:
    pod = b.build_scheduler_pod(simple, "cluster.local")
    meta = pod["metadata"]
    assert meta["name"] == "simple-scheduler"
    assert meta["namespace"] == "ns1"
    assert meta["labels"][c.LABEL_CLUSTER] == "simple"
    assert meta["labels"][c.LABEL_COMPONENT] == "scheduler"
    assert meta["labels"][c.LABEL_APP_MANAGED_BY] == c.MANAGED_BY
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskCluster",
            "name": "simple",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert b.TEMPLATE_HASH_ANNOTATION in meta["annotations"]
    env = _env(pod)
    assert env[c.ENV_SCHEDULER_ADDRESS] == "tcp://simple-scheduler.ns1.svc.cluster.local:8786"
    routes = ast.literal_eval(env[b.ENV_SCHEDULER_HTTP_ROUTES])
    assert "distributed.http.scheduler.api" in routes
    assert "distributed.http.health" in routes  # the reference readiness probe needs /health
    # the user's container is otherwise untouched
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["dask-scheduler"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_scheduler_routes_from_user_env_are_respected(simple: dict[str, Any]) -> None:
    container = simple["spec"]["scheduler"]["spec"]["containers"][0]
    container["env"] = [{"name": b.ENV_SCHEDULER_HTTP_ROUTES, "value": "['mine']"}]
    assert _env(b.build_scheduler_pod(simple))[b.ENV_SCHEDULER_HTTP_ROUTES] == "['mine']"


def test_scheduler_gets_the_demand_preload_as_text(
    simple: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = b.build_scheduler_pod(simple)
    [source] = ast.literal_eval(_env(pod)[b.ENV_SCHEDULER_PRELOAD])
    assert "def dask_setup(scheduler" in source
    # distributed runs a preload with a space in it that is not a .py path as text
    assert " " in source
    assert not source.endswith(".py")
    # part of the pod, not of its template hash: a new operator does not restart schedulers
    monkeypatch.setattr(b, "SCHEDULER_PRELOAD_SOURCE", source + "\n# a newer operator\n")
    newer = b.build_scheduler_pod(simple)
    assert _env(newer)[b.ENV_SCHEDULER_PRELOAD] != _env(pod)[b.ENV_SCHEDULER_PRELOAD]
    hashes = [p["metadata"]["annotations"][b.TEMPLATE_HASH_ANNOTATION] for p in (pod, newer)]
    assert hashes[0] == hashes[1]
    container = simple["spec"]["scheduler"]["spec"]["containers"][0]
    container["env"] = [{"name": b.ENV_SCHEDULER_PRELOAD, "value": "['my_preload']"}]
    assert _env(b.build_scheduler_pod(simple))[b.ENV_SCHEDULER_PRELOAD] == "['my_preload']"


def test_scheduler_service_of_reference_cluster(simple: dict[str, Any]) -> None:
    svc = b.build_scheduler_service(simple)
    assert svc["metadata"]["name"] == "simple-scheduler"
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"] == {c.LABEL_CLUSTER: "simple", c.LABEL_COMPONENT: "scheduler"}
    assert [p["name"] for p in svc["spec"]["ports"]] == ["tcp-comm", "http-dashboard"]


def test_default_service_when_none_given(simple: dict[str, Any]) -> None:
    del simple["spec"]["scheduler"]["service"]
    svc = b.build_scheduler_service(simple)
    assert svc["spec"]["type"] == "ClusterIP"
    assert b.comm_port(svc["spec"]) == 8786
    assert b.dashboard_port(svc["spec"]) == 8787


@pytest.mark.parametrize(
    ("ports", "comm", "dashboard"),
    [
        ([{"name": "tcp-comm", "port": 9999}, {"name": "http-dashboard", "port": 80}], 9999, 80),
        ([{"name": "comm", "port": 7000}, {"name": "dashboard", "port": 7001}], 7000, 7001),
        ([{"name": "other", "port": 1234}], 8786, None),
        ([], 8786, None),
    ],
)
def test_ports_by_name(ports: list[dict[str, Any]], comm: int, dashboard: int | None) -> None:
    assert b.comm_port({"ports": ports}) == comm
    assert b.dashboard_port({"ports": ports}) == dashboard


def test_scheduler_address_uses_real_service_port_and_domain(simple: dict[str, Any]) -> None:
    simple["spec"]["scheduler"]["service"]["ports"][0]["port"] = 9000
    pod = b.build_scheduler_pod(simple, "corp.internal")
    assert _env(pod)[c.ENV_SCHEDULER_ADDRESS] == "tcp://simple-scheduler.ns1.svc.corp.internal:9000"


def test_default_worker_group(simple: dict[str, Any]) -> None:
    group = b.build_default_worker_group(simple)
    assert group["kind"] == "DaskWorkerGroup"
    assert group["apiVersion"] == c.API_VERSION
    assert group["metadata"]["name"] == "simple-default"
    assert group["metadata"]["labels"][c.LABEL_WORKER_GROUP] == "simple-default"
    assert group["spec"]["cluster"] == "simple"
    assert group["spec"]["worker"]["replicas"] == 2
    assert group["spec"]["worker"]["spec"] == simple["spec"]["worker"]["spec"]
    assert group["metadata"]["ownerReferences"][0]["kind"] == "DaskCluster"


def test_worker_pod_of_default_group(simple: dict[str, Any]) -> None:
    group = b.build_default_worker_group(simple)
    group["metadata"]["uid"] = "uid-g"
    addr = "tcp://simple-scheduler.ns1.svc.cluster.local:8786"
    pod = b.build_worker_pod(group, addr, name="simple-default-worker-0123456789")
    meta = pod["metadata"]
    assert meta["name"] == "simple-default-worker-0123456789"
    assert meta["labels"][c.LABEL_COMPONENT] == "worker"
    assert meta["labels"][c.LABEL_WORKER_GROUP] == "simple-default"
    assert meta["labels"][c.LABEL_CLUSTER] == "simple"
    assert meta["ownerReferences"][0]["kind"] == "DaskWorkerGroup"
    assert meta["ownerReferences"][0]["uid"] == "uid-g"
    env = pod["spec"]["containers"][0]["env"]
    assert env[:2] == [
        {"name": c.ENV_WORKER_NAME, "value": "simple-default-worker-0123456789"},
        {"name": c.ENV_SCHEDULER_ADDRESS, "value": addr},
    ]
    assert pod["spec"]["containers"][0]["args"][2] == "$(DASK_WORKER_NAME)"


def test_worker_pod_random_name_fits_dns() -> None:
    group = _load("simple-highmem.yaml")
    pod = b.build_worker_pod(group, "tcp://x:8786")
    name = pod["metadata"]["name"]
    assert name.startswith("simple-highmem-worker-")
    assert len(name) <= 63
    assert pod["metadata"]["labels"][c.LABEL_WORKER_GROUP] == "simple-highmem"
    assert pod["metadata"]["labels"][c.LABEL_CLUSTER] == "simple"


def test_operator_env_wins_over_user_env() -> None:
    group = _load("simple-highmem.yaml")
    group["spec"]["worker"]["spec"]["containers"][0]["env"] = [
        {"name": c.ENV_WORKER_NAME, "value": "spoofed"},
        {"name": "FOO", "value": "bar"},
    ]
    pod = b.build_worker_pod(group, "tcp://x:8786", name="n1")
    assert _env(pod) == {
        c.ENV_WORKER_NAME: "n1",
        c.ENV_SCHEDULER_ADDRESS: "tcp://x:8786",
        "FOO": "bar",
    }


def test_builders_do_not_mutate_input(simple: dict[str, Any]) -> None:
    before = copy.deepcopy(simple)
    b.build_scheduler_pod(simple)
    b.build_scheduler_service(simple)
    group = b.build_default_worker_group(simple)
    group["metadata"]["uid"] = "g"
    group_before = copy.deepcopy(group)
    b.build_worker_pod(group, "tcp://x:1")
    assert simple == before
    assert group == group_before


# Labels/annotations: top-level <= subresource metadata <= base; tooling annotations dropped.
LABEL_CASES = [
    ("top only", {"foo": "bar"}, {}, {"foo": "bar"}),
    ("sub overrides top", {"foo": "bar"}, {"foo": "baz"}, {"foo": "baz"}),
    ("base overrides both", {c.LABEL_COMPONENT: "x"}, {c.LABEL_COMPONENT: "superworker"},
     {c.LABEL_COMPONENT: "scheduler"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "top", "sub", "expected"), LABEL_CASES, ids=[x[0] for x in LABEL_CASES]
)
def test_label_merge_rules(
    simple: dict[str, Any],
    case: str,
    top: dict[str, str],
    sub: dict[str, str],
    expected: dict[str, str],
) -> None:
    simple["metadata"]["labels"] = top
    simple["spec"]["scheduler"]["metadata"] = {"labels": sub}
    labels = b.build_scheduler_pod(simple)["metadata"]["labels"]
    for k, v in expected.items():
        assert labels[k] == v


def test_annotation_example_of_reference(simple: dict[str, Any]) -> None:
    simple["metadata"]["annotations"] = {
        "hello": "world",
        "kopf.zalando.org/last-handled-configuration": "{}",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    simple["spec"]["worker"]["metadata"] = {"annotations": {"foo": "bar"}}
    simple["spec"]["scheduler"]["metadata"] = {"annotations": {"fizz": "buzz"}}
    ann = b.build_scheduler_pod(simple)["metadata"]["annotations"]
    ann.pop(b.TEMPLATE_HASH_ANNOTATION)
    assert ann == {"fizz": "buzz", "hello": "world"}
    svc_ann = b.build_scheduler_service(simple)["metadata"]["annotations"]
    svc_ann.pop(b.TEMPLATE_HASH_ANNOTATION)
    assert svc_ann == {"fizz": "buzz", "hello": "world"}
    group = b.build_default_worker_group(simple)
    assert group["metadata"]["annotations"] == {"foo": "bar", "hello": "world"}
    # and from the group on to its worker pods
    group["metadata"]["uid"] = "g"
    pod_ann = b.build_worker_pod(group, "tcp://x:1")["metadata"]["annotations"]
    pod_ann.pop(b.TEMPLATE_HASH_ANNOTATION)
    assert pod_ann == {"foo": "bar", "hello": "world"}


def test_template_hash_tracks_spec_not_labels(simple: dict[str, Any]) -> None:
    h1 = b.build_scheduler_pod(simple)["metadata"]["annotations"][b.TEMPLATE_HASH_ANNOTATION]
    simple["metadata"]["labels"] = {"team": "a"}
    h2 = b.build_scheduler_pod(simple)["metadata"]["annotations"][b.TEMPLATE_HASH_ANNOTATION]
    simple["spec"]["scheduler"]["spec"]["containers"][0]["image"] = "ghcr.io/dask/dask:2026.1.0"
    h3 = b.build_scheduler_pod(simple)["metadata"]["annotations"][b.TEMPLATE_HASH_ANNOTATION]
    assert h1 == h2 != h3
    group = b.build_default_worker_group(simple)
    group["metadata"]["uid"] = "g"
    a = b.worker_pod_template_hash(group, "tcp://x:1")
    assert (
        a
        == b.build_worker_pod(group, "tcp://x:1")["metadata"]["annotations"][
            b.TEMPLATE_HASH_ANNOTATION
        ]
    )
    assert a != b.worker_pod_template_hash(group, "tcp://x:2")  # a new scheduler port rolls workers


def test_scheduler_http_url() -> None:
    assert b.scheduler_http_url("c", "ns", 8787, "cluster.local") == (
        "http://c-scheduler.ns.svc.cluster.local:8787"
    )
    assert b.scheduler_http_url("c", "ns", None, "cluster.local") is None


def test_routes_match_installed_distributed_defaults() -> None:
    """Our route list is distributed's default list plus the API (so nothing is lost)."""
    import dask
    import distributed  # noqa: F401 - loads distributed's config defaults

    defaults = dask.config.get("distributed.scheduler.http.routes")
    assert set(defaults) <= set(b.SCHEDULER_HTTP_ROUTES)
    assert "distributed.http.scheduler.api" in b.SCHEDULER_HTTP_ROUTES


@pytest.mark.parametrize(
    ("service", "addr", "url"),
    [
        ({"clusterIP": "10.0.0.7", "ports": [{"name": "tcp-comm", "port": 8786},
                                             {"name": "http-dashboard", "port": 8787}]},
         "tcp://10.0.0.7:8786", "http://10.0.0.7:8787"),
        ({"clusterIP": "None", "ports": [{"name": "tcp-comm", "port": 9000}]},
         "tcp://c-scheduler.ns.svc.cluster.local:9000", None),
        ({"clusterIP": "fd00::1", "ports": []}, "tcp://[fd00::1]:8786", None),
    ],
)  # fmt: skip
def test_controller_reaches_scheduler_by_cluster_ip(
    service: dict[str, Any], addr: str, url: str | None
) -> None:
    assert b.controller_scheduler_endpoints("c", "ns", service, "cluster.local") == (addr, url)
