"""start_node / stop_node / node_status: the node half of ``python -m ci.localk8s``."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from . import components, containerd, host, network
from .config import ClusterInfo, NodeConfig
from .proc import daemon_pid, log, run, wait_for

ImageImporter = Callable[[NodeConfig], None]
"""Makes the node's images (pause, dask, operator) present in containerd's ``k8s.io`` namespace."""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _kubectl(cluster: ClusterInfo, *args: str, check: bool = True) -> str:
    argv: list[str | Path] = [
        cluster.bin_dir / "kubectl",
        f"--kubeconfig={cluster.admin_kubeconfig}",
        *args,
    ]
    return run(argv, check=check, timeout=60).stdout


def node_ready(cluster: ClusterInfo, cfg: NodeConfig) -> bool:
    out = _kubectl(cluster, "get", "node", cfg.node_name, "-o", "json", check=False)
    if not out:
        return False
    for cond in json.loads(out).get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def node_pod_cidr(cluster: ClusterInfo, cfg: NodeConfig) -> str | None:
    out = _kubectl(cluster, "get", "node", cfg.node_name, "-o", "json", check=False)
    return json.loads(out).get("spec", {}).get("podCIDR") if out else None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _alive(cfg: NodeConfig, name: str) -> Callable[[], None]:
    def check() -> None:
        if daemon_pid(cfg.pid_dir, name) is None:
            raise RuntimeError(f"{name} exited:\n{_tail(cfg.log_dir / f'{name}.log')}")

    return check


def _wait(cfg: NodeConfig, what: str, name: str, probe: Callable[[], bool], timeout: float) -> None:
    alive = _alive(cfg, name)

    def step() -> bool:
        alive()
        return probe()

    wait_for(what, step, timeout=timeout, on_timeout=lambda: _tail(cfg.log_dir / f"{name}.log"))


def start_node(
    cluster: ClusterInfo,
    cfg: NodeConfig | None = None,
    *,
    import_images: ImageImporter | None = None,
    timeout: float = 180,
) -> NodeConfig:
    """Bring up containerd, the pod network, kubelet, kube-proxy and CoreDNS; wait for Ready.

    Idempotent: running pieces are left alone. The control plane must be up.
    """
    cfg = cfg or NodeConfig()
    t0 = time.monotonic()
    host.build_all(cfg)
    network.setup(cfg, cluster)
    containerd.start(cfg)
    if import_images is not None:
        import_images(cfg)
    if cfg.pause_image not in containerd.images(cfg):
        raise RuntimeError(
            f"{cfg.pause_image} is not in containerd (namespace k8s.io); import the images "
            "first (python -m ci.images build): the node never pulls from a registry"
        )
    components.start_kubelet(cfg, cluster)
    kubelet_healthz = f"http://127.0.0.1:{components.KUBELET_HEALTHZ_PORT}/healthz"
    _wait(cfg, "kubelet healthz", components.KUBELET, lambda: _http_ok(kubelet_healthz), timeout)
    components.start_kube_proxy(cfg, cluster)
    components.start_coredns(cfg, cluster)
    components.start_apiserver_proxy(cfg, cluster)
    ready = f"node {cfg.node_name} Ready"
    _wait(cfg, ready, components.KUBELET, lambda: node_ready(cluster, cfg), timeout)
    pod_cidr = wait_for("node podCIDR", lambda: node_pod_cidr(cluster, cfg), timeout=60)
    if pod_cidr != cfg.pod_cidr:
        raise RuntimeError(
            f"node {cfg.node_name} got podCIDR {pod_cidr} from the controller-manager, but the "
            f"CNI config uses {cfg.pod_cidr}: delete the stale Node object (`kubectl delete node "
            f"{cfg.node_name}`) or bring the cluster up from scratch"
        )
    proxy_healthz = f"http://127.0.0.1:{components.KUBE_PROXY_HEALTHZ_PORT}/healthz"
    _wait(
        cfg, "kube-proxy healthz", components.KUBE_PROXY, lambda: _http_ok(proxy_healthz), timeout
    )
    dns_ready = f"http://127.0.0.1:{components.COREDNS_READY_PORT}/ready"
    _wait(cfg, "CoreDNS ready", components.COREDNS, lambda: _http_ok(dns_ready), timeout)
    log(f"node {cfg.node_name} Ready in {time.monotonic() - t0:.0f}s")
    return cfg


def _our_mounts(roots: list[Path]) -> list[str]:
    """Mount points under our directories, deepest first."""
    found: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if any(mnt == str(r) or mnt.startswith(f"{r}/") for r in roots):
            found.append(mnt)
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def _unmount_all(cfg: NodeConfig) -> None:
    roots = [cfg.state_dir.resolve(), cfg.run_dir.resolve()]
    for _ in range(5):  # stacked mounts need more than one pass
        mounts = _our_mounts(roots)
        if not mounts:
            return
        for mnt in mounts:
            run(["umount", mnt], check=False)
    leftover = _our_mounts(roots)
    for mnt in leftover:
        run(["umount", "-l", mnt], check=False)
    if leftover:
        log(f"lazily unmounted {len(leftover)} busy mounts")


def _remove_kubepods_cgroups() -> None:
    """The kubelet's QoS cgroups (``kubepods``) in every v1 hierarchy, once they are empty."""
    for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def _remove_log_links(cfg: NodeConfig) -> None:
    """The kubelet links container logs into /var/log/containers; drop links into our dir."""
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        if link.is_symlink() and str(link.readlink()).startswith(str(cfg.pod_logs_dir)):
            link.unlink()


def stop_node(
    cfg: NodeConfig | None = None,
    *,
    bin_dir: Path | None = None,
    service_cidr: str | None = None,
) -> None:
    """Stop everything ``start_node`` started and remove what it created. Idempotent; works with
    the control plane already gone. Images and caches are kept (warm start)."""
    cfg = cfg or NodeConfig()
    components.stop_all(cfg)
    if containerd.is_running(cfg):
        containerd.remove_all_containers(cfg)
    containerd.stop(cfg)
    containerd.kill_leftovers(cfg)
    _unmount_all(cfg)
    components.cleanup_kube_proxy(cfg, bin_dir)
    network.teardown(cfg, service_cidr)
    _remove_kubepods_cgroups()
    _remove_log_links(cfg)
    if cfg.run_dir.exists():
        shutil.rmtree(cfg.run_dir, ignore_errors=True)
    log("node stopped")


def node_status(
    cfg: NodeConfig | None = None, cluster: ClusterInfo | None = None
) -> dict[str, str]:
    """Process and readiness summary for ``status``."""
    cfg = cfg or NodeConfig()
    out: dict[str, str] = {}
    names = (containerd.NAME, components.KUBELET, components.KUBE_PROXY, components.COREDNS,
             components.APISERVER_PROXY)  # fmt: skip
    for name in names:
        pid = daemon_pid(cfg.pid_dir, name)
        out[name] = f"running (pid {pid})" if pid else "stopped"
    for key, ok in network.status(cfg).items():
        out[f"network.{key}"] = "present" if ok else "absent"
    if cluster is not None and daemon_pid(cfg.pid_dir, components.KUBELET):
        out[f"node/{cfg.node_name}"] = "Ready" if node_ready(cluster, cfg) else "NotReady"
    return out
