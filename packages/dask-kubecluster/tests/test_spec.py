from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from dask_kubecluster import (
    make_autoscaler_spec,
    make_cluster_spec,
    make_worker_group_spec,
    make_worker_spec,
)
from dask_kubecluster.spec import (
    check_resources,
    load_cluster_spec,
    normalize_command,
    normalize_env,
    service_port,
    validate,
)

DATA = Path(__file__).parent / "data"


def _strip_empty(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop the empty env/resources we always emit, so we can compare with the reference YAML."""
    out = copy.deepcopy(obj)
    for section in ("worker", "scheduler"):
        for container in out["spec"][section]["spec"]["containers"]:
            for key in ("env", "resources"):
                if not container.get(key):
                    container.pop(key, None)
    return out


def test_cluster_spec_matches_the_reference_simple_cluster() -> None:
    reference = yaml.safe_load((DATA / "simple-cluster.yaml").read_text())
    reference["spec"]["idleTimeout"] = 0
    ours = make_cluster_spec("simple", n_workers=2, scheduler_service_type="NodePort")
    assert _strip_empty(ours) == reference


def test_cluster_spec_defaults() -> None:
    spec = make_cluster_spec("foo")
    assert spec["apiVersion"] == "kubernetes.dask.org/v1"
    assert spec["kind"] == "DaskCluster"
    assert spec["metadata"] == {"name": "foo"}
    assert spec["spec"]["worker"]["replicas"] == 3
    assert spec["spec"]["scheduler"]["service"]["type"] == "ClusterIP"
    assert spec["spec"]["scheduler"]["service"]["selector"] == {
        "dask.org/cluster-name": "foo",
        "dask.org/component": "scheduler",
    }
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    assert scheduler["image"] == "ghcr.io/dask/dask:latest"
    assert scheduler["args"] == ["dask-scheduler"]
    assert scheduler["readinessProbe"]["httpGet"] == {"port": "http-dashboard", "path": "/health"}
    assert scheduler["livenessProbe"]["httpGet"] == {"port": "http-dashboard", "path": "/health"}
    assert [(p["name"], p["containerPort"]) for p in scheduler["ports"]] == [
        ("tcp-comm", 8786),
        ("http-dashboard", 8787),
    ]
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"] == [
        "dask-worker",
        "--name",
        "$(DASK_WORKER_NAME)",
        "--dashboard",
        "--dashboard-address",
        "8788",
    ]


def test_cluster_spec_options_reach_scheduler_and_workers() -> None:
    resources = {"requests": {"memory": "2Gi"}, "limits": {"memory": "64Gi"}}
    spec = make_cluster_spec(
        "foo",
        image="example.com/dask:1",
        n_workers=2,
        resources=resources,
        env={"FOO": "bar", "N": 1},
        worker_command="dask worker",
        idle_timeout=300,
        jupyter=True,
    )
    assert spec["spec"]["idleTimeout"] == 300
    assert "idleAction" not in spec["spec"]  # the operator's default (Delete)
    for section in ("worker", "scheduler"):
        container = spec["spec"][section]["spec"]["containers"][0]
        assert container["image"] == "example.com/dask:1"
        assert container["resources"] == resources
        assert container["env"] == [{"name": "FOO", "value": "bar"}, {"name": "N", "value": "1"}]
    assert spec["spec"]["worker"]["spec"]["containers"][0]["args"][:2] == ["dask", "worker"]
    assert spec["spec"]["scheduler"]["spec"]["containers"][0]["args"] == [
        "dask-scheduler",
        "--jupyter",
    ]


def test_cluster_spec_is_a_fresh_editable_dict() -> None:
    resources = {"limits": {"memory": "1Gi"}}
    spec = make_cluster_spec("foo", resources=resources)
    spec["spec"]["worker"]["spec"]["nodeSelector"] = {"disktype": "ssd"}
    spec["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2Gi"
    assert resources == {"limits": {"memory": "1Gi"}}
    assert spec["spec"]["scheduler"]["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "1Gi"
    }


def test_worker_spec_shape_matches_the_reference_usage() -> None:
    worker = make_worker_spec(
        cluster_name="example", n_workers=2, resources={"limits": {"nvidia.com/gpu": 1}}
    )
    assert worker["replicas"] == 2
    worker["spec"]["nodeSelector"] = {"cloud.google.com/gke-nodepool": "gpu-node-pool"}
    assert worker["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert worker["spec"]["containers"][0]["ports"] == [
        {"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}
    ]


def test_worker_command_list() -> None:
    worker = make_worker_spec(worker_command=["dask", "worker", "--nthreads", "2"])
    assert worker["spec"]["containers"][0]["args"][:4] == ["dask", "worker", "--nthreads", "2"]


def test_worker_group_wraps_a_worker_spec() -> None:
    group = make_worker_group_spec("foo", "highmem", make_worker_spec(n_workers=2), "ns")
    assert group["apiVersion"] == "kubernetes.dask.org/v1"
    assert group["kind"] == "DaskWorkerGroup"
    assert group["metadata"] == {"name": "foo-highmem", "namespace": "ns"}
    assert group["spec"]["cluster"] == "foo"
    assert group["spec"]["worker"]["replicas"] == 2


def test_worker_group_accepts_a_whole_group_and_a_prefixed_name() -> None:
    whole = make_worker_group_spec("foo", "gpu", make_worker_spec(n_workers=1))
    again = make_worker_group_spec("foo", "foo-gpu", whole)
    assert again["metadata"]["name"] == "foo-gpu"
    assert again["spec"]["worker"] == whole["spec"]["worker"]


def test_worker_group_name_checked() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        make_worker_group_spec("foo", "High_Mem", make_worker_spec())


def test_autoscaler() -> None:
    assert make_autoscaler_spec("foo", 1, 10) == {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskAutoscaler",
        "metadata": {"name": "foo"},
        "spec": {"cluster": "foo", "minimum": 1, "maximum": 10},
    }
    with pytest.raises(ValueError, match="larger than maximum"):
        make_autoscaler_spec("foo", 5, 2)


# ------------------------------------------------------------------ env


def test_env_dict_becomes_a_list() -> None:
    assert normalize_env({"A": "1", "B": 2, "C": None}) == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "C", "value": ""},
    ]


def test_env_list_passes_through_including_value_from() -> None:
    env: list[dict[str, Any]] = [
        {"name": "A", "value": "1"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    out = normalize_env(env)
    assert out == env
    assert out[1] is not env[1]


@pytest.mark.parametrize("bad", [[{"value": "x"}], ["A=1"]], ids=["no-name", "string"])
def test_env_list_items_need_a_name(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"env\[0\]"):
        normalize_env(bad)


def test_env_rejects_a_string() -> None:
    with pytest.raises(TypeError, match="env must be"):
        normalize_env("A=1")  # type: ignore[arg-type]


def test_none_env() -> None:
    assert normalize_env(None) == []


def test_command() -> None:
    assert normalize_command("dask-worker") == ["dask-worker"]
    assert normalize_command(None) == ["dask-worker"]
    with pytest.raises(ValueError, match="empty"):
        normalize_command("  ")


# ------------------------------------------------------------------ resources


def test_resources_limit_typo_is_named_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'limit': did you mean 'limits'\?"):
        make_cluster_spec("foo", resources={"limit": {"memory": "2Gi"}})


def test_resources_request_typo() -> None:
    with pytest.raises(ValueError, match="did you mean 'requests'"):
        check_resources({"request": {"cpu": "1"}})


def test_resources_unrelated_key_has_no_suggestion() -> None:
    with pytest.raises(ValueError, match="unknown key 'memory': allowed keys") as info:
        check_resources({"memory": "2Gi"})
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("quantity", ["2 GB", "lots", "2GB", True])
def test_resources_bad_quantity(quantity: Any) -> None:
    with pytest.raises(ValueError, match="memory"):
        check_resources({"limits": {"memory": quantity}})


@pytest.mark.parametrize("quantity", ["500m", "2", 2, 0.5, "2Gi", "512Mi", "1e9", "64M", "1.5"])
def test_resources_good_quantities(quantity: Any) -> None:
    assert check_resources({"limits": {"cpu": quantity}}) == {"limits": {"cpu": quantity}}


def test_resources_not_a_dict() -> None:
    with pytest.raises(TypeError, match="resources must be a dict"):
        check_resources("2Gi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"resources\['limits'\] must be a dict"):
        check_resources({"limits": "2Gi"})


# ------------------------------------------------------------------ names and numbers


def test_invalid_cluster_name() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        make_cluster_spec("My_Cluster")


def test_too_long_cluster_name() -> None:
    with pytest.raises(ValueError, match="choose a shorter name"):
        make_cluster_spec("x" * 60)


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_bad_n_workers(n: Any) -> None:
    with pytest.raises(ValueError, match="n_workers"):
        make_cluster_spec("foo", n_workers=n)


def test_bad_service_type() -> None:
    with pytest.raises(ValueError, match="ClusterIP, NodePort, LoadBalancer"):
        make_cluster_spec("foo", scheduler_service_type="Ingress")


# ------------------------------------------------------------------ custom specs


def test_load_cluster_spec_from_yaml_path() -> None:
    spec = load_cluster_spec(DATA / "simple-cluster.yaml")
    assert spec["metadata"]["name"] == "simple"
    assert spec["spec"]["worker"]["replicas"] == 2


def test_load_cluster_spec_from_str_path_with_other_documents(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
        + yaml.safe_dump(make_cluster_spec("foo"))
    )
    assert load_cluster_spec(str(path))["metadata"]["name"] == "foo"


def test_load_cluster_spec_copies_dicts() -> None:
    original = make_cluster_spec("foo")
    loaded = load_cluster_spec(original)
    loaded["spec"]["worker"]["replicas"] = 9
    assert original["spec"]["worker"]["replicas"] == 3


def test_load_cluster_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_cluster_spec(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    with pytest.raises(ValueError, match="exactly one DaskCluster, found 0"):
        load_cluster_spec(empty)
    with pytest.raises(TypeError, match="dict or a YAML path"):
        load_cluster_spec(42)  # type: ignore[arg-type]


def test_custom_spec_resources_are_checked_too() -> None:
    spec = make_cluster_spec("foo")
    spec["spec"]["worker"]["spec"]["containers"][0]["resources"] = {"limit": {"cpu": "1"}}
    with pytest.raises(ValueError, match="did you mean 'limits'"):
        load_cluster_spec(spec)


def test_validate_lists_structural_problems() -> None:
    with pytest.raises(ValueError, match=r"spec\.scheduler is required"):
        validate(
            {
                "apiVersion": "kubernetes.dask.org/v1",
                "kind": "DaskCluster",
                "metadata": {"name": "foo"},
                "spec": {"worker": make_worker_spec()},
            }
        )
    with pytest.raises(ValueError, match="kind must be one of"):
        validate({"kind": "Pod"})
    with pytest.raises(ValueError, match="apiVersion must be"):
        validate({**make_cluster_spec("foo"), "apiVersion": "v1"})


def test_service_port_lookup() -> None:
    spec = make_cluster_spec("foo")["spec"]["scheduler"]["service"]
    assert service_port({"spec": spec}, "http-dashboard", 1) == 8787
    assert service_port({"spec": spec}, "missing", 1) == 1


def test_custom_spec_checked_by_the_crd_models() -> None:
    spec = make_cluster_spec("foo")
    spec["spec"]["worker"]["spec"]["nodeSelectr"] = {"disktype": "ssd"}  # typo
    with pytest.raises(ValueError, match="nodeSelectr"):
        load_cluster_spec(spec)


def test_generated_objects_are_valid_crd_models() -> None:
    from dask_crds.validation import check

    for obj in (
        make_cluster_spec("foo", resources={"limits": {"cpu": 1}}, env={"A": "1"}, jupyter=True),
        make_worker_group_spec("foo", "gpu", make_worker_spec(n_workers=2)),
        make_autoscaler_spec("foo", 0, 4),
    ):
        model, problems = check(obj)
        assert problems == []
        assert model is not None


def test_pod_settings_without_dict_surgery() -> None:
    spec = make_cluster_spec(
        "foo",
        resources={"limits": {"memory": "8Gi"}},
        scheduler_resources={"limits": {"memory": "1Gi"}},
        node_selector={"pool": "dask"},
        tolerations=[{"key": "dask", "operator": "Exists", "effect": "NoSchedule"}],
        image_pull_secrets=["regcred"],
        labels={"team": "analytics"},
        annotations={"cost-center": "42"},
    )
    assert spec["metadata"] == {
        "name": "foo",
        "labels": {"team": "analytics"},
        "annotations": {"cost-center": "42"},
    }
    scheduler = spec["spec"]["scheduler"]["spec"]
    worker = spec["spec"]["worker"]["spec"]
    assert scheduler["containers"][0]["resources"] == {"limits": {"memory": "1Gi"}}
    assert worker["containers"][0]["resources"] == {"limits": {"memory": "8Gi"}}
    for pod in (scheduler, worker):
        assert pod["nodeSelector"] == {"pool": "dask"}
        assert pod["tolerations"] == [{"key": "dask", "operator": "Exists", "effect": "NoSchedule"}]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_pod_settings_are_checked() -> None:
    with pytest.raises(TypeError, match="tolerations must be a list"):
        make_worker_spec(tolerations={"key": "x"})  # type: ignore[arg-type]
    worker = make_worker_spec(image_pull_secrets="regcred")
    assert worker["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_idle_action_is_passed_and_checked() -> None:
    spec = make_cluster_spec("foo", idle_timeout=60, idle_action="Suspend")
    assert (spec["spec"]["idleTimeout"], spec["spec"]["idleAction"]) == (60, "Suspend")
    with pytest.raises(ValueError, match="idle_action must be 'Delete' or 'Suspend', got 'Pause'"):
        make_cluster_spec("foo", idle_timeout=60, idle_action="Pause")
