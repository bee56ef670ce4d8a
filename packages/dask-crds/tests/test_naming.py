from __future__ import annotations

import pytest

from dask_crds import naming


def test_child_names_follow_the_reference_shapes() -> None:
    assert naming.scheduler_name("simple") == "simple-scheduler"
    assert naming.default_worker_group_name("simple") == "simple-default"
    assert naming.job_runner_name("simple-job") == "simple-job-runner"
    assert naming.worker_pod_name("simple-default", "abc") == "simple-default-worker-abc"


def test_random_worker_suffixes_are_unique_and_sized() -> None:
    names = {naming.worker_pod_name("g") for _ in range(200)}
    assert len(names) == 200
    for name in names:
        suffix = name.removeprefix("g-worker-")
        assert len(suffix) == naming.WORKER_SUFFIX_LENGTH
        assert naming.is_dns_label(name)


def test_scheduler_address_uses_port_and_domain() -> None:
    addr = naming.scheduler_address("c", "ns", 8786, "example.internal")
    assert addr == "tcp://c-scheduler.ns.svc.example.internal:8786"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("simple", True),
        ("a-b-c", True),
        ("A", False),
        ("-a", False),
        ("a-", False),
        ("a_b", False),
        ("a.b", False),
        ("", False),
        ("a" * 63, True),
        ("a" * 64, False),
    ],
)
def test_is_dns_label(name: str, ok: bool) -> None:
    assert naming.is_dns_label(name) is ok


def test_longest_allowed_cluster_name_gives_valid_worker_names() -> None:
    limit = naming.max_cluster_name_length()
    name = "c" * limit
    assert naming.check_cluster_name(name) == []
    pod = naming.worker_pod_name(naming.default_worker_group_name(name))
    assert len(pod) == naming.DNS_LABEL_MAX
    assert naming.is_dns_label(pod)


def test_too_long_cluster_name_is_rejected_with_the_limit() -> None:
    limit = naming.max_cluster_name_length()
    problems = naming.check_cluster_name("c" * (limit + 1))
    assert len(problems) == 1
    assert f"at most {limit}" in problems[0]
    assert "metadata.name" in problems[0]


def test_invalid_characters_are_named() -> None:
    problems = naming.check_cluster_name("My_Cluster")
    assert len(problems) == 1
    assert "lower-case" in problems[0]


def test_worker_group_limit_fits_a_pod_name() -> None:
    group = "g" * naming.max_worker_group_name_length()
    assert naming.is_dns_label(naming.worker_pod_name(group))
