"""The Helm chart, rendered offline with the helm binary built by ci.localk8s.

These tests need no cluster: they lint the chart, render it with every option switched on and
off, and check the objects users rely on (RBAC fits a Role, image tag, probes, monitors).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dask-kubernetes-operator"

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> str:
    path = os.environ.get("DASK_HELM")
    if not path:
        pytest.fail("DASK_HELM is not set: run these tests through `nox -s chart`")
    return path


def _run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def render(helm: str) -> Render:
    def _render(*sets: str, namespace: str = "dask-operator") -> list[dict[str, Any]]:
        args = ["template", "release", str(CHART), "-n", namespace]
        for s in sets:
            args += ["--set", s]
        out = _run(helm, *args)
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    return _render


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    c: dict[str, Any] = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return c


def test_lint_strict(helm: str) -> None:
    out = _run(helm, "lint", "--strict", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr


def test_lint_strict_with_every_option(helm: str) -> None:
    out = _run(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "metrics.scheduler.enabled=true,metrics.scheduler.serviceMonitor.enabled=true",
        "--set",
        "metrics.worker.enabled=true,metrics.worker.podMonitor.enabled=true",
        "--set",
        "peering.enabled=true,replicaCount=2,priorityClassName=high",
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_defaults(render: Render) -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
    ]
    c = container(docs)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert c["image"] == f"ghcr.io/dask/dask-kubernetes-operator:{chart['appVersion']}"
    assert c["args"][0] == "run"
    assert "--all-namespaces" in c["args"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_crds_are_kept_on_uninstall(render: Render) -> None:
    crds = by_kind(render(), "CustomResourceDefinition")
    names = sorted(c["metadata"]["name"] for c in crds)
    assert names == [
        "daskautoscalers.kubernetes.dask.org",
        "daskclusters.kubernetes.dask.org",
        "daskjobs.kubernetes.dask.org",
        "daskworkergroups.kubernetes.dask.org",
    ]
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_crds_can_be_left_out(render: Render) -> None:
    assert by_kind(render("crds.install=false"), "CustomResourceDefinition") == []


def test_rbac_rules_are_all_namespaced(render: Render) -> None:
    """Every rule must be one a namespaced Role can hold (single-namespace mode)."""
    cluster_scoped = {"nodes", "namespaces", "customresourcedefinitions", "clusterroles"}
    role = only(render(), "ClusterRole")
    for rule in role["rules"]:
        assert not cluster_scoped & set(rule["resources"]), rule
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule["resources"], rule
    granted = {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert ("kubernetes.dask.org", "daskclusters/status") in granted
    assert ("kubernetes.dask.org", "daskworkergroups/scale") in granted
    assert ("", "pods") in granted
    assert ("", "secrets") not in granted


def test_single_namespace_mode(render: Render) -> None:
    docs = render("rbac.cluster=false", "kopfArgs={--namespace=team-a}", namespace="team-a")
    assert by_kind(docs, "ClusterRole") == []
    role = only(docs, "Role")
    binding = only(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == "team-a"
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["roleRef"]["kind"] == "Role"
    assert "--namespace=team-a" in container(docs)["args"]


def test_single_namespace_with_all_namespaces_is_refused(helm: str) -> None:
    out = _run(helm, "template", "r", str(CHART), "-n", "team-a", "--set", "rbac.cluster=false")
    assert out.returncode != 0
    assert "kopfArgs={--namespace=team-a}" in out.stderr


def test_peering_two_replicas(render: Render) -> None:
    docs = render("peering.enabled=true", "replicaCount=2")
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    c = container(docs)
    assert "--peering=dask-kubernetes-operator" in c["args"]
    assert "--standalone" not in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    crds = {d["metadata"]["name"]: d for d in by_kind(docs, "CustomResourceDefinition")}
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    for name in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        assert crds[name]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    [rule] = [r for r in only(docs, "ClusterRole")["rules"] if "kopf.dev" in r["apiGroups"]]
    assert set(rule["resources"]) == {"kopfpeerings", "clusterkopfpeerings"}
    assert "create" in rule["verbs"]
    # Single-namespace mode: a Role cannot hold the cluster-scoped peering.
    docs = render(
        "peering.enabled=true", "rbac.cluster=false", "kopfArgs={--namespace=team-a}",
        namespace="team-a",
    )  # fmt: skip
    [rule] = [r for r in only(docs, "Role")["rules"] if "kopf.dev" in r["apiGroups"]]
    assert rule["resources"] == ["kopfpeerings"]
    # Someone else's kopf CRDs: left alone.
    others = by_kind(
        render("peering.enabled=true", "peering.installCRDs=false"), "CustomResourceDefinition"
    )
    assert not [d for d in others if d["spec"]["group"] == "kopf.dev"]


def test_two_replicas_without_peering_are_refused(helm: str) -> None:
    out = _run(helm, "template", "r", str(CHART), "--set", "replicaCount=2")
    assert out.returncode != 0
    assert "peering.enabled=true" in out.stderr


def test_extra_rules_for_plugins(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    rule = {
        "apiGroups": ["networking.istio.io"],
        "resources": ["virtualservices"],
        "verbs": ["get", "create", "patch", "delete"],
    }
    values.write_text(yaml.safe_dump({"rbac": {"extraRules": [rule]}}))
    out = _run(helm, "template", "release", str(CHART), "-f", str(values))
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert rule in only(docs, "ClusterRole")["rules"]


def test_typo_in_values_fails(helm: str) -> None:
    out = _run(helm, "template", "r", str(CHART), "--set", "rbac.clsuter=false")
    assert out.returncode != 0
    assert "clsuter" in out.stderr


def test_image_tag_and_settings(render: Render) -> None:
    docs = render(
        "image.tag=dev",
        "workerAllocation.size=3",
        "workerAllocation.delay=0.5",
        "clusterDomain=corp.internal",
        "schedulerPollInterval=2.5",
    )
    c = container(docs)
    assert c["image"].endswith(":dev")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["DASK_OPERATOR_WORKER_ALLOCATION_SIZE"] == "3"
    assert env["DASK_OPERATOR_WORKER_ALLOCATION_DELAY"] == "0.5"
    assert env["DASK_OPERATOR_CLUSTER_DOMAIN"] == "corp.internal"
    assert env["DASK_OPERATOR_SCHEDULER_POLL_INTERVAL"] == "2.5"


def test_every_pod_value_is_rendered(render: Render) -> None:
    docs = render(
        "podAnnotations.a=b",
        "nodeSelector.disk=ssd",
        "tolerations[0].key=k,tolerations[0].operator=Exists",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key=k",
        "priorityClassName=high",
        "imagePullSecrets[0].name=regcred",
        "resources.limits.memory=256Mi",
        "volumes[0].name=extra,volumes[0].emptyDir.medium=Memory",
        "volumeMounts[0].name=extra,volumeMounts[0].mountPath=/extra",
        "serviceAccount.annotations.role=arn",
        "podSecurityContext.fsGroup=1000",
    )
    pod = only(docs, "Deployment")["spec"]["template"]
    spec = pod["spec"]
    assert pod["metadata"]["annotations"]["a"] == "b"
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert "nodeAffinity" in spec["affinity"]
    assert spec["priorityClassName"] == "high"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["securityContext"] == {"fsGroup": 1000}
    assert {"name": "extra", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    c = spec["containers"][0]
    assert c["resources"] == {"limits": {"memory": "256Mi"}}
    assert {"name": "extra", "mountPath": "/extra"} in c["volumeMounts"]
    assert only(docs, "ServiceAccount")["metadata"]["annotations"] == {"role": "arn"}


def test_monitors_render_every_value(render: Render) -> None:
    docs = render(
        "metrics.scheduler.enabled=true",
        "metrics.scheduler.serviceMonitor.enabled=true",
        "metrics.scheduler.serviceMonitor.namespace=monitoring",
        "metrics.scheduler.serviceMonitor.namespaceSelector.any=true",
        "metrics.scheduler.serviceMonitor.additionalLabels.release=prom",
        "metrics.scheduler.serviceMonitor.interval=30s",
        "metrics.scheduler.serviceMonitor.jobLabel=app",
        "metrics.scheduler.serviceMonitor.metricRelabelings[0].action=drop",
        "metrics.worker.enabled=true",
        "metrics.worker.podMonitor.enabled=true",
        "metrics.worker.podMonitor.namespace=monitoring",
        "metrics.worker.podMonitor.namespaceSelector.any=true",
        "metrics.worker.podMonitor.additionalLabels.release=prom",
        "metrics.worker.podMonitor.interval=45s",
        "metrics.worker.podMonitor.jobLabel=app",
        "metrics.worker.podMonitor.metricRelabelings[0].action=keep",
    )
    sm = only(docs, "ServiceMonitor")
    assert sm["metadata"]["namespace"] == "monitoring"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["namespaceSelector"] == {"any": True}
    assert sm["spec"]["jobLabel"] == "app"
    assert sm["spec"]["targetLabels"] == ["dask.org/cluster-name"]
    assert sm["spec"]["selector"]["matchLabels"] == {"dask.org/component": "scheduler"}
    assert sm["spec"]["endpoints"][0]["interval"] == "30s"
    assert sm["spec"]["endpoints"][0]["metricRelabelings"] == [{"action": "drop"}]
    pm = only(docs, "PodMonitor")
    assert pm["metadata"]["namespace"] == "monitoring"
    assert pm["metadata"]["labels"]["release"] == "prom"
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    assert pm["spec"]["jobLabel"] == "app"
    assert pm["spec"]["podTargetLabels"] == ["dask.org/cluster-name", "dask.org/workergroup-name"]
    assert pm["spec"]["selector"]["matchLabels"] == {"dask.org/component": "worker"}
    assert pm["spec"]["podMetricsEndpoints"][0]["interval"] == "45s"
    assert pm["spec"]["podMetricsEndpoints"][0]["metricRelabelings"] == [{"action": "keep"}]


def test_monitors_off_by_default(render: Render) -> None:
    docs = render("metrics.scheduler.enabled=true", "metrics.worker.enabled=true")
    assert by_kind(docs, "ServiceMonitor") == []
    assert by_kind(docs, "PodMonitor") == []


def test_schema_is_valid_json_and_strict() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
