from __future__ import annotations

from pathlib import Path

import pytest
from crd_fixtures import load, valid_files

from dask_crds import k8s, models, validation

VALID = valid_files()


def test_every_reference_kind_has_fixtures() -> None:
    kinds = {load(p)["kind"] for p in VALID}
    assert kinds == {"DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler"}
    assert len(VALID) >= 15


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_reference_manifest_is_valid(path: Path) -> None:
    doc = load(path)
    resource, problems = validation.check(doc)
    assert resource is not None, [str(p) for p in problems]
    assert all(p.severity == "warning" for p in problems)
    assert isinstance(resource, models.MODELS[doc["kind"]])


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_reference_manifest_round_trips(path: Path) -> None:
    doc = load(path)
    resource, problems = validation.check(doc)
    assert resource is not None
    dumped = resource.model_dump(by_alias=True, exclude_unset=True, mode="json")
    # Fields reported as warnings are those Kubernetes drops: they are not in the model either.
    expected = validation.without(doc, [p.path for p in problems])
    assert dumped == expected
    assert resource.to_dict() == expected


def test_reference_with_misindented_probe_fields_warns() -> None:
    doc = load(Path(__file__).parent / "fixtures/valid/000-simple-cluster.yaml")
    problems = validation.validate(doc)
    assert {p.path for p in problems} == {
        f"spec.scheduler.spec.containers[0].{probe}.tcpSocket.{field}"
        for probe in ("readinessProbe", "livenessProbe")
        for field in ("initialDelaySeconds", "periodSeconds")
    }
    assert all(p.severity == "warning" for p in problems)
    assert "check the indentation" in problems[0].message


def test_snake_case_attributes_and_camel_case_wire() -> None:
    doc = load(Path(__file__).parent / "fixtures/valid/001-simple-job.yaml")
    job = models.DaskJob.model_validate(doc)
    container = job.spec.cluster.spec.scheduler.spec.containers[0]
    assert container.image_pull_policy == "IfNotPresent"
    assert container.readiness_probe is not None
    assert container.readiness_probe.initial_delay_seconds == 5
    port = job.spec.cluster.spec.scheduler.service
    assert port is not None
    assert port.ports is not None
    assert port.ports[0].target_port == "tcp-comm"
    assert "imagePullPolicy" in job.to_dict()["spec"]["job"]["spec"]["containers"][0]


def test_models_accept_attribute_names_too() -> None:
    spec = models.DaskClusterSpec(
        worker=models.WorkerSpec(
            replicas=3, spec=k8s.PodSpec(containers=[k8s.Container(name="worker")])
        ),
        scheduler=models.SchedulerSpec(
            spec=k8s.PodSpec(
                containers=[k8s.Container(name="scheduler", image_pull_policy="Always")]
            )
        ),
        idle_timeout=60,
    )
    cluster = models.DaskCluster(metadata=k8s.ObjectMeta(name="x"), spec=spec)
    wire = cluster.to_dict()
    assert wire["apiVersion"] == "kubernetes.dask.org/v1"
    assert wire["kind"] == "DaskCluster"
    assert wire["spec"]["idleTimeout"] == 60
    assert wire["spec"]["scheduler"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert models.DaskCluster.model_validate(wire) == cluster


def test_defaults_live_in_the_models() -> None:
    spec = models.WorkerSpec.model_validate({"spec": {"containers": [{"name": "w"}]}})
    assert spec.replicas == models.DEFAULT_REPLICAS
    assert "replicas" not in spec.model_dump(by_alias=True, exclude_unset=True)


def test_job_backoff_default() -> None:
    doc = load(Path(__file__).parent / "fixtures/valid/001-simple-job.yaml")
    job = models.DaskJob.model_validate(doc)
    assert job.spec.effective_backoff_limit() == models.DEFAULT_BACKOFF_LIMIT
    doc["spec"]["backoffLimit"] = 0
    assert models.DaskJob.model_validate(doc).spec.effective_backoff_limit() == 0


def test_autoscaler_helpers() -> None:
    spec = models.DaskAutoscalerSpec.model_validate({"cluster": "c", "minimum": 1, "maximum": 5})
    assert spec.target_worker_group() == "c-default"
    assert spec.scale_up_window() == models.DEFAULT_SCALE_UP_WINDOW_SECONDS
    assert spec.scale_down_window() == models.DEFAULT_SCALE_DOWN_WINDOW_SECONDS
    assert [spec.clamp(n) for n in (0, 3, 9)] == [1, 3, 5]
    other = models.DaskAutoscalerSpec.model_validate(
        {
            "cluster": "c",
            "minimum": 0,
            "maximum": 5,
            "workerGroup": "c-gpu",
            "scaleUp": {"stabilizationWindowSeconds": 10},
            "scaleDown": {"stabilizationWindowSeconds": 0},
        }
    )
    assert other.target_worker_group() == "c-gpu"
    assert (other.scale_up_window(), other.scale_down_window()) == (10, 0)


def test_status_parses_what_the_controller_writes() -> None:
    doc = load(Path(__file__).parent / "fixtures/valid/001-simple-cluster.yaml")
    doc["metadata"].update(
        {
            "namespace": "default",
            "uid": "0b2c",
            "generation": 3,
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": ["kubernetes.dask.org/cleanup"],
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}
            ],
        }
    )
    doc["status"] = {
        "phase": "Running",
        "observedGeneration": 3,
        "replicas": 2,
        "readyReplicas": 1,
        "selector": "dask.org/cluster-name=simple,dask.org/component=worker",
        "idleSince": "2026-01-01T00:05:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "WorkersStarting",
                "message": "1 of 2 workers ready",
                "lastTransitionTime": "2026-01-01T00:00:10Z",
                "observedGeneration": 3,
            }
        ],
    }
    cluster = models.DaskCluster.model_validate(doc)
    assert cluster.status is not None
    assert cluster.status.conditions is not None
    assert cluster.status.conditions[0].reason == "WorkersStarting"
    assert cluster.to_dict() == doc


def test_job_status_fields_of_the_references() -> None:
    status = models.DaskJobStatus.model_validate(
        {
            "jobStatus": "Successful",
            "clusterName": "simple-job",
            "jobRunnerPodName": "simple-job-runner",
            "startTime": "2026-01-01T00:00:00Z",
            "endTime": "2026-01-01T00:01:00Z",
            "failed": 0,
        }
    )
    assert status.job_runner_pod_name == "simple-job-runner"


def test_int_or_string_and_quantities() -> None:
    port = k8s.ServicePort.model_validate({"port": 8786, "targetPort": 8786})
    assert port.target_port == 8786
    port = k8s.ServicePort.model_validate({"port": 8786, "targetPort": "tcp-comm"})
    assert port.target_port == "tcp-comm"
    res = k8s.ResourceRequirements.model_validate(
        {"limits": {"cpu": 2, "memory": "32Gi"}, "requests": {"cpu": 0.5, "memory": 6e9}}
    )
    assert res.limits == {"cpu": 2, "memory": "32Gi"}
    # A CRD schema can only say integer-or-string: floats are written as strings.
    assert res.requests == {"cpu": "0.5", "memory": "6000000000"}


def test_required_fields_of_the_openapi_document_are_required() -> None:
    assert k8s.PodSpec.model_fields["containers"].is_required()
    assert k8s.Container.model_fields["name"].is_required()
    assert not k8s.Container.model_fields["image"].is_required()
    assert k8s.KUBERNETES_VERSION.startswith("v1.")


def test_check_name_per_kind() -> None:
    assert models.check_name("DaskAutoscaler", "a" * 63) == []
    assert models.check_name("DaskWorkerGroup", "g" * 45) == []
    assert models.check_name("DaskWorkerGroup", "g" * 46)
    assert "DaskJob" in models.check_name("DaskJob", "j" * 38)[0]
