"""The control plane really works: API objects, CRDs with subresources, garbage collection,
RBAC, namespace deletion. Real API server, controllers and etcd; no mocks.

Every wait is a poll against a deadline (`kubectl wait` or `_until`), never a bare sleep.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import exists, get_json, until

from ci.localk8s import versions
from ci.localk8s.pytest_plugin import Kubectl, external_kubeconfig

WAIT = 90.0  # seconds any single condition may take on a busy 2-core machine


def _until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    until(what, check, timeout, interval=0.2)


_json = get_json
_exists = exists


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"e2e-{base}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def test_server_version(kubectl: Kubectl) -> None:
    info = json.loads(kubectl("version", "-o", "json").stdout)
    server = info["serverVersion"]["gitVersion"]
    client = info["clientVersion"]["gitVersion"]
    assert server.startswith("v1."), info
    if external_kubeconfig() is None:
        expected = versions.select().kubernetes
        assert server == expected, "the apiserver was built without the version ldflags"
        if not os.environ.get("DASK_E2E_KUBECTL"):
            assert client == expected


def test_configmap_crud_and_list(kubectl: Kubectl, namespace: str) -> None:
    for i in range(3):
        kubectl(
            "create", "configmap", f"cm-{i}", "-n", namespace,
            f"--from-literal=index={i}", "--from-literal=greeting=hello",
        )  # fmt: skip
        kubectl(
            "label",
            "configmap",
            f"cm-{i}",
            "-n",
            namespace,
            f"parity={'even' if i % 2 == 0 else 'odd'}",
        )

    cm = _json(kubectl, "get", "configmap", "cm-1", "-n", namespace)
    assert cm["data"] == {"index": "1", "greeting": "hello"}
    uid = cm["metadata"]["uid"]

    even = _json(kubectl, "get", "configmaps", "-n", namespace, "-l", "parity=even")
    assert sorted(item["metadata"]["name"] for item in even["items"]) == ["cm-0", "cm-2"]

    kubectl(
        "patch",
        "configmap",
        "cm-1",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"data":{"greeting":"bye"}}',
    )
    patched = _json(kubectl, "get", "configmap", "cm-1", "-n", namespace)
    assert patched["data"]["greeting"] == "bye"
    assert patched["metadata"]["uid"] == uid
    assert int(patched["metadata"]["resourceVersion"]) > int(cm["metadata"]["resourceVersion"])

    # An update with a stale resourceVersion is a conflict: optimistic concurrency is enforced.
    stale = dict(cm, data={"greeting": "stale"})
    conflict = kubectl("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert conflict.returncode != 0
    assert "Conflict" in conflict.stderr or "modified" in conflict.stderr, conflict.stderr

    kubectl("delete", "configmap", "cm-1", "-n", namespace)
    assert not _exists(kubectl, "configmap", "cm-1", "-n", namespace)
    left = _json(kubectl, "get", "configmaps", "-n", namespace, "-l", "parity")
    assert sorted(item["metadata"]["name"] for item in left["items"]) == ["cm-0", "cm-2"]


def test_secret_roundtrip(kubectl: Kubectl, namespace: str) -> None:
    kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cr=t"
    )
    secret = _json(kubectl, "get", "secret", "creds", "-n", namespace)
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["password"]).decode() == "s3cr=t"
    kubectl("delete", "secret", "creds", "-n", namespace)
    assert not _exists(kubectl, "secret", "creds", "-n", namespace)


def test_watch_sees_add_modify_delete(k8s_kubeconfig: Path, namespace: str) -> None:
    seen = asyncio.run(asyncio.wait_for(_watch_configmap(k8s_kubeconfig, namespace), WAIT))
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]


async def _watch_configmap(k8s_kubeconfig: Path, namespace: str) -> list[tuple[str, str]]:
    """Create, patch and delete a ConfigMap, then watch from before: the three events, in order."""
    from kubernetes_asyncio import client, config, watch

    api_client = await config.new_client_from_config(config_file=str(k8s_kubeconfig))
    async with api_client:
        v1 = client.CoreV1Api(api_client)
        listed = await v1.list_namespaced_config_map(namespace)
        since = listed.metadata.resource_version
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"), data={"v": "1"})
        await v1.create_namespaced_config_map(namespace, body)
        await v1.patch_namespaced_config_map("watched", namespace, {"data": {"v": "2"}})
        await v1.delete_namespaced_config_map("watched", namespace)

        seen: list[tuple[str, str]] = []
        # Watch owns an ApiClient of its own: `async with` closes it.
        async with watch.Watch() as w:
            stream = w.stream(
                v1.list_namespaced_config_map,
                namespace,
                resource_version=since,
                timeout_seconds=60,
            )
            async for event in stream:
                obj = event["object"]
                if obj.metadata.name == "watched":
                    seen.append((event["type"], (obj.data or {}).get("v", "")))
                if event["type"] == "DELETED":
                    break
        return seen


CRD_GROUP = "e2e.dask.org"


def _widget_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "replicas": {"type": "integer", "minimum": 0},
                                        "color": {"type": "string"},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "replicas": {"type": "integer"},
                                        "selector": {"type": "string"},
                                        "phase": {"type": "string"},
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def widget_crd(kubectl: Kubectl) -> Iterator[str]:
    name = f"widgets.{CRD_GROUP}"
    kubectl("apply", "-f", "-", input=json.dumps(_widget_crd()))
    kubectl("wait", "--for=condition=Established", f"crd/{name}", f"--timeout={WAIT:.0f}s")
    yield name
    kubectl("delete", "crd", name, "--wait=false", "--ignore-not-found")


def test_crd_status_and_scale_subresources(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    widget = {
        "apiVersion": f"{CRD_GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"replicas": 1, "color": "blue"},
    }
    kubectl("create", "-f", "-", input=json.dumps(widget))
    ns = ("-n", namespace)
    created = _json(kubectl, "get", "widget", "w", *ns)
    assert created["spec"] == {"replicas": 1, "color": "blue"}
    assert created["metadata"]["generation"] == 1

    # The schema is enforced.
    invalid = dict(widget, metadata={"name": "bad", "namespace": namespace}, spec={"replicas": -1})
    refused = kubectl("create", "-f", "-", input=json.dumps(invalid), check=False)
    assert refused.returncode != 0
    assert "Invalid" in refused.stderr, refused.stderr

    # Status is written through /status only; a status in a main-resource patch is dropped.
    status = {"status": {"replicas": 1, "selector": "app=w", "phase": "Ready"}}
    kubectl(
        "patch",
        "widget",
        "w",
        *ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    kubectl("patch", "widget", "w", *ns, "--type=merge", "-p", '{"status":{"phase":"Hacked"}}')
    after = _json(kubectl, "get", "widget", "w", *ns)
    assert after["status"] == status["status"]
    assert after["metadata"]["generation"] == 1, "status writes must not bump the generation"

    # /scale maps onto spec.replicas and status.replicas.
    kubectl("scale", "widget/w", *ns, "--replicas=5")
    scaled = _json(kubectl, "get", "widget", "w", *ns)
    assert scaled["spec"]["replicas"] == 5
    assert scaled["metadata"]["generation"] == 2
    raw = kubectl("get", "--raw", f"/apis/{CRD_GROUP}/v1/namespaces/{namespace}/widgets/w/scale")
    scale = json.loads(raw.stdout)
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 5
    assert scale["status"] == {"replicas": 1, "selector": "app=w"}

    listed = _json(kubectl, "get", "widgets", *ns)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w"]
    kubectl("delete", "widget", "w", *ns)
    assert not _exists(kubectl, "widget", "w", *ns)


def _owned_configmap(name: str, namespace: str, owner: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"e2e-owner": owner["metadata"]["name"]},
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
            "data": {"owned": "yes"},
        }
    )


def _make_family(kubectl: Kubectl, namespace: str, owner_name: str, children: int) -> None:
    kubectl("create", "configmap", owner_name, "-n", namespace)
    owner = _json(kubectl, "get", "configmap", owner_name, "-n", namespace)
    for i in range(children):
        kubectl(
            "create", "-f", "-", input=_owned_configmap(f"{owner_name}-child-{i}", namespace, owner)
        )


def _children(kubectl: Kubectl, namespace: str, owner_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _json(
        kubectl, "get", "configmaps", "-n", namespace, "-l", f"e2e-owner={owner_name}"
    )["items"]
    return items


def test_garbage_collector_cascades_and_orphans(kubectl: Kubectl, namespace: str) -> None:
    _make_family(kubectl, namespace, "parent", 3)
    _make_family(kubectl, namespace, "orphaner", 2)
    assert len(_children(kubectl, namespace, "parent")) == 3

    # Background cascading deletion: the garbage collector deletes the dependents.
    kubectl("delete", "configmap", "parent", "-n", namespace, "--cascade=background")
    _until(
        "dependents of a deleted owner to be collected",
        lambda: not _children(kubectl, namespace, "parent"),
    )

    # Orphaning: dependents stay and the garbage collector strips their ownerReferences.
    kubectl("delete", "configmap", "orphaner", "-n", namespace, "--cascade=orphan")
    assert not _exists(kubectl, "configmap", "orphaner", "-n", namespace)
    _until(
        "ownerReferences of orphans to be removed",
        lambda: all(
            not c["metadata"].get("ownerReferences")
            for c in _children(kubectl, namespace, "orphaner")
        ),
    )
    assert len(_children(kubectl, namespace, "orphaner")) == 2


def test_deployment_replicaset_pods_and_foreground_deletion(
    kubectl: Kubectl, namespace: str
) -> None:
    # A node selector nobody matches keeps the pods Pending even when a node exists.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"e2e.dask.org/no-such-node": "true"},
                    "containers": [{"name": "c", "image": "registry.invalid/none:1"}],
                },
            },
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(deployment))
    ns = ("-n", namespace)

    def pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = _json(kubectl, "get", "pods", *ns, "-l", "app=web")["items"]
        return items

    _until("the deployment's ReplicaSet to create 2 pods", lambda: len(pods()) == 2)
    rs = _json(kubectl, "get", "replicasets", *ns, "-l", "app=web")["items"]
    assert len(rs) == 1
    assert rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

    def unschedulable() -> bool:
        reasons = [
            str(c.get("reason"))
            for p in pods()
            for c in p["status"].get("conditions", [])
            if c["type"] == "PodScheduled"
        ]
        return reasons == ["Unschedulable", "Unschedulable"]

    _until("the scheduler to report both pods unschedulable", unschedulable)

    kubectl("delete", "deployment", "web", *ns, "--cascade=foreground", f"--timeout={WAIT:.0f}s")
    _until(
        "ReplicaSet and pods to be deleted",
        lambda: not pods() and not _json(kubectl, "get", "rs", *ns)["items"],
    )


def test_rbac_refuses_then_allows_impersonated_serviceaccount(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl("create", "configmap", "visible", "-n", namespace)
    user = f"system:serviceaccount:{namespace}:reader"

    def can_i(verb: str, resource: str) -> str:
        result = kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False
        )
        return result.stdout.strip()

    assert can_i("list", "configmaps") == "no"
    refused = kubectl("get", "configmaps", "-n", namespace, f"--as={user}", check=False)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr or "forbidden" in refused.stderr, refused.stderr

    kubectl(
        "create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps"
    )
    kubectl(
        "create",
        "rolebinding",
        "reader-cm",
        "-n",
        namespace,
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
    )
    _until("the RoleBinding to take effect", lambda: can_i("list", "configmaps") == "yes")

    allowed = kubectl("get", "configmaps", "-n", namespace, f"--as={user}", "-o", "name")
    assert "configmap/visible" in allowed.stdout.split()
    # Only what was granted: secrets stay forbidden, and so do writes.
    assert can_i("list", "secrets") == "no"
    assert can_i("delete", "configmaps") == "no"
    denied = kubectl("delete", "configmap", "visible", "-n", namespace, f"--as={user}", check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower(), denied.stderr


def test_namespace_deletion_completes(kubectl: Kubectl) -> None:
    name = f"e2e-doomed-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("create", "configmap", "content", "-n", name)
    kubectl("create", "secret", "generic", "content", "-n", name, "--from-literal=k=v")
    kubectl("create", "serviceaccount", "content", "-n", name)
    kubectl("delete", "namespace", name, "--wait=false")
    phase = kubectl("get", "namespace", name, "-o", "jsonpath={.status.phase}", check=False)
    assert phase.returncode != 0 or phase.stdout == "Terminating"
    # The namespace controller must empty it and remove the `kubernetes` finalizer.
    kubectl("wait", "--for=delete", f"namespace/{name}", f"--timeout={WAIT:.0f}s")
    assert not _exists(kubectl, "namespace", name)
