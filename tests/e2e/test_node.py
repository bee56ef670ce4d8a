"""End-to-end tests of the local cluster's node: real pods on kubelet + containerd + CNI.

They use the ``k8s_kubeconfig`` and ``kubectl`` fixtures (``ci.localk8s.pytest_plugin``), which
bring the local cluster up with its node. Every wait has a deadline: ``kubectl wait`` (a watch)
where it can express the condition, otherwise polling with a deadline; nothing sleeps to
synchronise. If the cluster comes up without a Ready node, the tests skip and say why, unless
``DASK_E2E_REQUIRE_NODE=1``, which turns that into a failure.

Pods use the locally built ``ghcr.io/dask/dask:latest`` with ``imagePullPolicy: IfNotPresent``:
nothing is pulled from a registry. No test sends a packet off this machine (see
docs/local-kubernetes-node.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from ci.localk8s.pytest_plugin import Kubectl

T = TypeVar("T")
IMAGE = "ghcr.io/dask/dask:latest"
SCHEDULER_PORT = 8786
pytestmark = pytest.mark.timeout(900)


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Return ``probe()``'s first truthy result; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling interval of a deadline loop, not synchronisation


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def apply(kubectl: Kubectl, namespace: str, manifest: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def pod_manifest(
    name: str,
    args: list[str],
    *,
    labels: dict[str, str] | None = None,
    restart: str = "Never",
    readiness: dict[str, Any] | None = None,
    ports: tuple[int, ...] = (),
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [{"containerPort": p} for p in ports],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
    }
    if readiness is not None:
        container["readinessProbe"] = readiness
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "enableServiceLinks": False,
            "containers": [container],
        },
    }


def service_manifest(name: str, selector: dict[str, str], port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "tcp", "port": port}]},
    }


def wait_ready(kubectl: Kubectl, namespace: str, pod: str, timeout: int = 180) -> None:
    result = kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"pod/{pod}", f"--timeout={timeout}s",
        check=False, timeout=timeout + 30,
    )  # fmt: skip
    if result.returncode != 0:
        describe = kubectl("describe", "-n", namespace, f"pod/{pod}", check=False).stdout
        pytest.fail(f"pod {pod} not Ready: {result.stderr}\n{describe[-3000:]}")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(kubectl: Kubectl) -> dict[str, Any]:
    """The cluster's single node, Ready (or skip/fail with the reason)."""

    def ready() -> dict[str, Any] | None:
        nodes = get_json(kubectl, "nodes")["items"]
        for item in nodes:
            conds = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
            if conds.get("Ready") == "True":
                return dict(item)
        return None

    deadline = time.monotonic() + 120
    while (found := ready()) is None and time.monotonic() < deadline:
        time.sleep(1)  # polling interval of a deadline loop, not synchronisation
    if found is None:
        reason = "the local cluster has no Ready node (see `python -m ci.localk8s status`)"
        if os.environ.get("DASK_E2E_REQUIRE_NODE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl, node: dict[str, Any]) -> Iterator[str]:
    name = f"node-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    poll(
        "default ServiceAccount",
        lambda: (
            kubectl("get", "-n", name, "serviceaccount", "default", check=False).returncode == 0
        ),
        60,
    )
    yield name
    kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", check=False, timeout=240)


@pytest.fixture(scope="module")
def dask_cluster(kubectl: Kubectl, namespace: str) -> str:
    """A scheduler pod behind Service ``dask-scheduler`` and one worker; returns the worker pod."""
    readiness = {
        "tcpSocket": {"port": SCHEDULER_PORT},
        "periodSeconds": 2,
        "failureThreshold": 30,
    }
    apply(
        kubectl,
        namespace,
        pod_manifest(
            "scheduler", ["dask", "scheduler"], labels={"app": "dask-scheduler"},
            readiness=readiness, ports=(SCHEDULER_PORT, 8787),
        ),
    )  # fmt: skip
    apply(
        kubectl,
        namespace,
        service_manifest("dask-scheduler", {"app": "dask-scheduler"}, SCHEDULER_PORT),
    )
    address = f"tcp://dask-scheduler.{namespace}.svc.cluster.local:{SCHEDULER_PORT}"
    worker_args = ["dask", "worker", address, "--nthreads", "1", "--no-dashboard"]
    apply(kubectl, namespace, pod_manifest("worker", worker_args, restart="OnFailure"))
    wait_ready(kubectl, namespace, "scheduler")
    wait_ready(kubectl, namespace, "worker")
    return "worker"


# -- tests -----------------------------------------------------------------------------------


def test_node_ready(node: dict[str, Any]) -> None:
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses.get("InternalIP") == "10.244.0.1"
    assert node["spec"].get("podCIDR") == "10.244.0.0/24"
    assert not node["spec"].get("taints")


def test_worker_registers_through_service_dns(
    kubectl: Kubectl, namespace: str, dask_cluster: str
) -> None:
    def registered() -> bool:
        logs = kubectl("logs", "-n", namespace, "scheduler", check=False).stdout
        return "Register worker" in logs

    poll("the worker to register with the scheduler", registered, 120)
    logs = kubectl("logs", "-n", namespace, "worker").stdout
    assert f"dask-scheduler.{namespace}.svc.cluster.local" in logs or "Registered to" in logs


def test_exec_and_cluster_dns(kubectl: Kubectl, namespace: str, dask_cluster: str) -> None:
    svc_ip = get_json(kubectl, "-n", namespace, "service", "dask-scheduler")["spec"]["clusterIP"]
    script = (
        "import socket\n"
        f"for name in ['dask-scheduler', 'dask-scheduler.{namespace}',"
        f" 'dask-scheduler.{namespace}.svc.cluster.local', 'kubernetes.default']:\n"
        "    print(name, socket.gethostbyname(name))\n"
        "try:\n"
        "    socket.gethostbyname('example.com')\n"
        "    print('outside name resolved')\n"
        "except socket.gaierror as e:\n"
        "    print('outside name refused', e)\n"
    )
    out = kubectl("exec", "-n", namespace, dask_cluster, "--", "python", "-c", script).stdout
    resolved = dict(line.split(" ", 1) for line in out.splitlines() if "outside" not in line)
    assert resolved["dask-scheduler"] == svc_ip
    assert resolved[f"dask-scheduler.{namespace}"] == svc_ip
    assert resolved[f"dask-scheduler.{namespace}.svc.cluster.local"] == svc_ip
    assert resolved["kubernetes.default"] == "10.96.0.1"
    assert "outside name refused" in out
    resolv = kubectl("exec", "-n", namespace, dask_cluster, "--", "cat", "/etc/resolv.conf").stdout
    nameservers = re.findall(r"^nameserver\s+(\S+)", resolv, re.M)
    assert nameservers == ["10.96.0.10"], resolv


def test_pod_reaches_apiserver(kubectl: Kubectl, namespace: str, dask_cluster: str) -> None:
    """In-cluster clients (e.g. the operator) reach the apiserver at kubernetes.default.svc."""
    script = (
        "import json, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "req = urllib.request.Request('https://kubernetes.default.svc/version',"
        " headers={'Authorization': 'Bearer ' + open(sa + '/token').read()})\n"
        "print(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['gitVersion'])\n"
    )
    out = kubectl("exec", "-n", namespace, dask_cluster, "--", "python", "-c", script).stdout
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert out.strip() == server


def _nft_drop_count(nft: str) -> int:
    table = subprocess.run(
        [nft, "list", "table", "inet", "dask_k8s_node"], capture_output=True, text=True, check=True
    ).stdout
    assert 'iifname "dk8s0" oifname != "dk8s0"' in table, table
    return sum(int(n) for n in re.findall(r"counter packets (\d+) bytes \d+ drop", table))


def test_pod_egress_is_dropped(
    kubectl: Kubectl, namespace: str, dask_cluster: str, e2e_provider: str
) -> None:
    """A pod's packet to an outside address is dropped on this host (forward hook)."""
    if e2e_provider != "local":
        pytest.skip("checks the firewall table of the local node (python -m ci.localk8s)")
    nft = shutil.which("nft")
    if nft is None or os.geteuid() != 0:
        pytest.skip("needs root and nft to check the host's firewall table first")
    # Only send if our drop rules are in place: the packet must not leave the machine.
    before = _nft_drop_count(nft)
    script = (
        "import socket\n"
        "s = socket.socket(); s.settimeout(2)\n"
        "try:\n"
        "    s.connect(('203.0.113.1', 9)); print('connected')\n"
        "except OSError as e:\n"
        "    print('blocked', type(e).__name__)\n"
    )
    out = kubectl("exec", "-n", namespace, dask_cluster, "--", "python", "-c", script).stdout
    assert out.startswith("blocked TimeoutError"), out
    assert _nft_drop_count(nft) > before


@pytest.mark.filterwarnings("ignore:Mismatched versions found")
def test_client_through_port_forward(kubectl: Kubectl, namespace: str, dask_cluster: str) -> None:
    distributed = pytest.importorskip("distributed")
    argv = [
        str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "port-forward", "-n", namespace,
        "--address", "127.0.0.1", "svc/dask-scheduler", f":{SCHEDULER_PORT}",
    ]  # fmt: skip
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as forward:
        try:
            assert forward.stdout is not None
            line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8786"
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert match, f"unexpected port-forward output {line!r}"
            port = int(match.group(1))

            def accepting() -> bool:
                with socket.socket() as s:
                    s.settimeout(1)
                    return s.connect_ex(("127.0.0.1", port)) == 0

            poll("port-forward to accept connections", accepting, 30)
            with distributed.Client(f"tcp://127.0.0.1:{port}", timeout="30s") as client:
                client.wait_for_workers(1, timeout=60)
                future = client.submit(sum, range(101))
                assert future.result(timeout=60) == 5050
                assert client.submit(lambda x: x * 2, 21).result(timeout=60) == 42
        finally:
            forward.terminate()
            forward.wait(timeout=10)
            for stream in (forward.stdout, forward.stderr):
                if stream is not None:
                    stream.close()


def test_readiness_probe_gates_endpoints(kubectl: Kubectl, namespace: str, node: Any) -> None:
    readiness = {
        "exec": {"command": ["cat", "/tmp/ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    apply(
        kubectl,
        namespace,
        pod_manifest(
            "gated", ["python", "-m", "http.server", "8080"], readiness=readiness, ports=(8080,)
        ),
    )
    apply(kubectl, namespace, service_manifest("gated", {"app": "gated"}, 8080))

    def endpoint_ready() -> str | None:
        slices = get_json(
            kubectl, "-n", namespace, "endpointslices", "-l", "kubernetes.io/service-name=gated"
        )["items"]
        endpoints = [e for s in slices for e in (s.get("endpoints") or [])]
        if not endpoints:
            return None
        return str(endpoints[0]["conditions"].get("ready")).lower()

    kubectl(
        "wait", "-n", namespace, "--for=jsonpath={.status.phase}=Running", "pod/gated",
        "--timeout=180s", timeout=200,
    )  # fmt: skip
    assert poll("an endpoint for the unready pod", endpoint_ready, 60) == "false"
    pod = get_json(kubectl, "-n", namespace, "pod", "gated")
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"]
    assert ready == "False"
    kubectl("exec", "-n", namespace, "gated", "--", "touch", "/tmp/ready")
    wait_ready(kubectl, namespace, "gated", timeout=60)
    poll("the endpoint to become ready", lambda: endpoint_ready() == "true", 60)


def test_failing_pod_is_restarted(kubectl: Kubectl, namespace: str, node: Any) -> None:
    apply(
        kubectl,
        namespace,
        pod_manifest("crasher", ["sh", "-c", "echo crashing; exit 3"], restart="OnFailure"),
    )

    def restarts() -> int:
        statuses = get_json(kubectl, "-n", namespace, "pod", "crasher")["status"].get(
            "containerStatuses", []
        )
        return int(statuses[0]["restartCount"]) if statuses else 0

    assert poll("the failing container to be restarted", restarts, 120) > 0
    status = get_json(kubectl, "-n", namespace, "pod", "crasher")["status"]["containerStatuses"][0]
    terminated = status.get("lastState", {}).get("terminated", {})
    assert terminated.get("exitCode") == 3, status

    def logged() -> bool:
        # The kubelet keeps only the last dead instance, so ask for the current and the previous.
        return any(
            "crashing" in kubectl("logs", "-n", namespace, "crasher", *extra, check=False).stdout
            for extra in ((), ("--previous",))
        )

    poll("the failing container's output in its logs", logged, 60)


def test_pod_deletion_completes(kubectl: Kubectl, namespace: str, node: Any) -> None:
    apply(kubectl, namespace, pod_manifest("doomed", ["sleep", "infinity"]))
    wait_ready(kubectl, namespace, "doomed")
    kubectl("delete", "-n", namespace, "pod", "doomed", "--wait=true", "--timeout=90s", timeout=120)
    gone = kubectl("get", "-n", namespace, "pod", "doomed", check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
