from __future__ import annotations

from dask_crds import constants as c
from dask_crds import labels


def test_base_labels_for_a_worker() -> None:
    got = labels.base_labels("simple", "worker", worker_group="simple-default")
    assert got[c.LABEL_CLUSTER] == "simple"
    assert got[c.LABEL_COMPONENT] == "worker"
    assert got[c.LABEL_WORKER_GROUP] == "simple-default"
    assert got[c.LABEL_APP_COMPONENT] == "worker"
    assert got[c.LABEL_APP_MANAGED_BY] == c.MANAGED_BY


def test_base_labels_omit_what_is_not_given() -> None:
    got = labels.base_labels("simple")
    assert c.LABEL_COMPONENT not in got
    assert c.LABEL_WORKER_GROUP not in got
    assert c.LABEL_JOB not in got


def test_precedence_top_level_then_subresource_then_base() -> None:
    top = {"foo": "bar", "team": "a", c.LABEL_COMPONENT: "superworker"}
    sub = {"foo": "baz"}
    base = labels.base_labels("x", "worker", worker_group="x-default")
    merged = labels.merge_labels(top, sub, base)
    assert merged["foo"] == "baz"
    assert merged["team"] == "a"
    assert merged[c.LABEL_COMPONENT] == "worker"


def test_tooling_annotations_never_propagate() -> None:
    merged = labels.merge_annotations(
        {
            "hello": "world",
            "kopf.zalando.org/last-handled-configuration": "{}",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
        {"fizz": "buzz"},
        None,
    )
    assert merged == {"hello": "world", "fizz": "buzz"}


def test_selector_is_stable() -> None:
    assert labels.selector({"b": "2", "a": "1"}) == "a=1,b=2"
