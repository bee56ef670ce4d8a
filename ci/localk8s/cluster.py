"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager, scheduler.

Every component is a daemon in its own session with its log under `<state>/logs/` and its pid
under `<state>/run/`; `state.json` records versions, ports and processes. Processes started by a
node plugin through `Cluster.start_process` are recorded the same way, so `down` stops them too.

A node (kubelet, container runtime, CNI, kube-proxy, CoreDNS) plugs in as the module
`ci.localk8s.node` with functions `up(cluster)`, `down(cluster)` and optionally
`status(cluster) -> list[str]`; `up` calls it once the control plane is ready (unless
`--no-node` / `DASK_K8S_NODE=0`), `down` calls it before stopping the recorded processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from . import network
from .kubeconfig import write_kubeconfig
from .paths import bin_dir, format_duration, log, state_root
from .pki import CertificateAuthority, CertPair, write_service_account_key
from .versions import Release

DEFAULT_NAME = "local"
NODE_PLUGIN = "ci.localk8s.node"
STOP_TIMEOUT = 20.0
SERVICE_ACCOUNT_ISSUER = f"https://kubernetes.default.svc.{network.CLUSTER_DOMAIN}"
ADMIN_USER = "dask-k8s-admin"
ADMIN_GROUPS = ("system:masters",)


class ClusterError(RuntimeError):
    """The cluster could not be brought up, or is not in the state asked for."""


def cluster_name() -> str:
    return os.environ.get("DASK_K8S_CLUSTER") or DEFAULT_NAME


def node_enabled() -> bool:
    return os.environ.get("DASK_K8S_NODE", "1") not in ("0", "false", "no", "")


# --------------------------------------------------------------------------- processes


@dataclass
class ProcessRecord:
    name: str
    pid: int
    argv: list[str]
    log: str
    started: float

    def alive(self) -> bool:
        return pid_alive(self.pid, self.argv[0])


def pid_alive(pid: int, executable: str | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, if given, runs `executable` (guards pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if executable is not None:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
            return argv0 == executable
        return True
    except (OSError, IndexError, UnicodeDecodeError):
        return False


def log_tail(path: Path | str, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text[-lines:])


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    *,
    interval: float = 0.25,
    abort: Callable[[], str | None] | None = None,
) -> None:
    """Poll `check` until true; raises ClusterError after `timeout` s or when `abort` says why."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if abort is not None and (reason := abort()) is not None:
            raise ClusterError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling interval of a deadline loop, not synchronisation


# --------------------------------------------------------------------------- HTTP probes


def _get(url: str, context: ssl.SSLContext | None, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as e:
        return 0, str(e)


def _insecure_context() -> ssl.SSLContext:
    """For the controller-manager's and scheduler's self-signed /healthz on loopback only."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------- the cluster

# Daemons started by this Python process, by pid: kept for the life of the process (a collected
# Popen of a running child warns) so that `stop_process` can reap them, whichever Cluster
# object stops them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class State:
    name: str
    kubernetes: str
    etcd: str
    minor: str
    bin_dir: str
    ports: dict[str, int]
    processes: list[ProcessRecord] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    # Free-form data for plugins (e.g. the node's settings), saved with the state.
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        fields = dict(data)
        fields["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        return cls(**fields)


class Cluster:
    """One local cluster's state directory and the operations on it."""

    def __init__(self, name: str | None = None, root: Path | None = None) -> None:
        self.name = name or cluster_name()
        self.state_dir = (root or state_root()) / self.name
        self._state: State | None = None

    # -- layout (stable: the node plugin and tests rely on these paths)
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def kubeconfig_path(self) -> Path:
        """The admin kubeconfig (user in group system:masters)."""
        return self.state_dir / "kubeconfig"

    @property
    def ca(self) -> CertificateAuthority:
        """The cluster CA (`ca.crt`/`ca.key`): apiserver clients, kubelet CSRs, serving certs."""
        return CertificateAuthority(self.pki_dir)

    @property
    def state(self) -> State:
        if self._state is None:
            if not self.state_file.exists():
                raise ClusterError(f"cluster {self.name!r} is not up (no {self.state_file})")
            self._state = State.from_json(json.loads(self.state_file.read_text()))
        return self._state

    def exists(self) -> bool:
        return self.state_file.exists()

    def save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=2) + "\n")
        tmp.replace(self.state_file)

    @property
    def apiserver_url(self) -> str:
        return f"https://{network.LOOPBACK}:{self.state.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://{network.LOOPBACK}:{self.state.ports['etcd']}"

    def bin(self, name: str) -> Path:
        """A built binary of this cluster's release: kubelet, kube-proxy, kubectl, helm..."""
        return Path(self.state.bin_dir) / name

    # -- certificates and kubeconfigs for any user
    def issue_client_cert(self, user: str, groups: Sequence[str] = ()) -> CertPair:
        """A client certificate signed by the cluster CA for `user` in `groups`."""
        stem = self.pki_dir / "users" / user.replace(":", "_")
        return self.ca.issue_client(stem, user, groups)

    def write_user_kubeconfig(self, path: Path, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as `user` in `groups` against this cluster's apiserver."""
        pair = self.issue_client_cert(user, groups)
        return write_kubeconfig(
            path,
            cluster=f"dask-k8s-{self.name}",
            server=self.apiserver_url,
            ca_file=self.ca.cert_path,
            user=user,
            cert_file=pair.cert,
            key_file=pair.key,
        )

    def api_context(self) -> ssl.SSLContext:
        """TLS context trusting the cluster CA and presenting the admin client certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        admin = self.pki_dir / "admin"
        ctx.load_cert_chain(str(admin.with_suffix(".crt")), str(admin.with_suffix(".key")))
        return ctx

    def api_get(self, path: str) -> tuple[int, str]:
        """GET `path` from the apiserver as the admin: (HTTP status or 0, body or error)."""
        return _get(self.apiserver_url + path, self.api_context())

    # -- processes
    def start_process(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ProcessRecord:
        """Start a daemon (own session, log in logs/NAME.log, pid in run/NAME.pid), record it."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.logs_dir / f"{name}.log"
        with logfile.open("ab") as out:
            out.write(f"==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd or self.state_dir,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        record = ProcessRecord(
            name=name, pid=proc.pid, argv=list(argv), log=str(logfile), started=time.time()
        )
        self.state.processes.append(record)
        self.save()
        return record

    def process(self, name: str) -> ProcessRecord | None:
        return next((p for p in self.state.processes if p.name == name), None)

    def _exited(self, record: ProcessRecord) -> str | None:
        """Why `record` is gone (with its log tail), or None while it runs."""
        child = _CHILDREN.get(record.pid)
        code = child.poll() if child is not None else None
        if code is None and record.alive():
            return None
        status = f"exit code {code}" if code is not None else "not running"
        return (
            f"{record.name} exited ({status}); last lines of {record.log}:\n{log_tail(record.log)}"
        )

    def wait_healthy(
        self, record: ProcessRecord, what: str, check: Callable[[], bool], timeout: float
    ) -> None:
        """Wait for `check`, failing early with the log tail if the process dies."""
        start = time.monotonic()
        try:
            wait_for(what, check, timeout, abort=lambda: self._exited(record))
        except ClusterError as e:
            if record.alive():
                e.args = (f"{e.args[0]}; last lines of {record.log}:\n{log_tail(record.log)}",)
            raise
        log(f"  {what} after {format_duration(time.monotonic() - start)}")

    def stop_process(self, record: ProcessRecord, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the process group, wait, then SIGKILL; forgets the record."""
        if record.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGTERM)
            try:
                wait_for(f"{record.name} to stop", lambda: not record.alive(), timeout)
            except ClusterError:
                log(f"  {record.name} ignored SIGTERM for {timeout:.0f}s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(record.pid, signal.SIGKILL)
                wait_for(f"{record.name} to die", lambda: not record.alive(), 10)
        child = _CHILDREN.pop(record.pid, None)
        if child is not None:
            child.wait(timeout=10)
        (self.run_dir / f"{record.name}.pid").unlink(missing_ok=True)
        self.state.processes = [p for p in self.state.processes if p is not record]
        self.save()

    # -- health
    def health(self) -> dict[str, str]:
        """Component -> "ok" or what is wrong."""
        result: dict[str, str] = {}
        for p in self.state.processes:
            result[p.name] = "ok" if p.alive() else "not running"
        if result.get("etcd") == "ok":
            code, body = _get(self.etcd_url + "/health", None)
            result["etcd"] = "ok" if code == 200 and '"true"' in body else f"{code} {body[:80]}"
        if result.get("kube-apiserver") == "ok":
            code, body = self.api_get("/readyz")
            result["kube-apiserver"] = "ok" if code == 200 else f"{code} {body[-200:]}"
        for name in ("kube-controller-manager", "kube-scheduler"):
            if result.get(name) == "ok":
                url = f"https://{network.LOOPBACK}:{self.state.ports[name]}/healthz"
                code, body = _get(url, _insecure_context())
                result[name] = "ok" if code == 200 else f"{code} {body[:80]}"
        return result


# --------------------------------------------------------------------------- node plugin


def load_node_plugin() -> ModuleType | None:
    """`ci.localk8s.node` if that package exists (the node is added by a separate change)."""
    try:
        if importlib.util.find_spec(NODE_PLUGIN) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(NODE_PLUGIN)


# --------------------------------------------------------------------------- up / down


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    root = state_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{name}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prepare_pki(cluster: Cluster) -> None:
    ca = CertificateAuthority.create(cluster.pki_dir)
    pki = cluster.pki_dir
    ca.issue(
        pki / "apiserver",
        "kube-apiserver",
        client=False,
        server=True,
        dns_names=[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{network.CLUSTER_DOMAIN}",
        ],
        ip_addresses=[network.LOOPBACK, network.KUBERNETES_SERVICE_IP],
    )
    ca.issue_client(pki / "admin", ADMIN_USER, ADMIN_GROUPS)
    ca.issue_client(
        pki / "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]
    )
    ca.issue_client(pki / "kube-controller-manager", "system:kube-controller-manager")
    ca.issue_client(pki / "kube-scheduler", "system:kube-scheduler")
    write_service_account_key(pki / "sa.key", pki / "sa.pub")
    # Front proxy (aggregation layer): its own CA, as kubeadm does; without it every component
    # logs "missing content for CA bundle ... requestheader-client-ca-file" forever.
    front = CertificateAuthority.create(pki / "front-proxy", "dask-k8s-front-proxy-ca")
    front.issue_client(pki / "front-proxy-client", "front-proxy-client")


def _component_kubeconfig(cluster: Cluster, component: str) -> Path:
    pki = cluster.pki_dir / component
    return write_kubeconfig(
        cluster.state_dir / "kubeconfigs" / f"{component}.kubeconfig",
        cluster=f"dask-k8s-{cluster.name}",
        server=cluster.apiserver_url,
        ca_file=cluster.ca.cert_path,
        user=f"system:{component}",
        cert_file=pki.with_suffix(".crt"),
        key_file=pki.with_suffix(".key"),
    )


def apiserver_args(cluster: Cluster) -> list[str]:
    """kube-apiserver's command line; a node plugin may append flags (`apiserver_args(cluster)`)."""
    pki = cluster.pki_dir
    args = [
        str(cluster.bin("kube-apiserver")),
        f"--etcd-servers={cluster.etcd_url}",
        f"--bind-address={network.LOOPBACK}",
        f"--advertise-address={network.LOOPBACK}",
        f"--secure-port={cluster.state.ports['apiserver']}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={cluster.ca.cert_path}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--service-cluster-ip-range={network.SERVICE_CIDR}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--requestheader-client-ca-file={pki / 'front-proxy' / 'ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--profiling=false",
        # The lease reconciler refuses a loopback advertise address ("may not be in the loopback
        # range"); with `none` the `kubernetes` Service exists but nobody maintains its endpoints,
        # which a node plugin may publish itself (e.g. an EndpointSlice to an address pods reach).
        "--endpoint-reconciler-type=none",
    ]
    plugin = load_node_plugin() if node_enabled() else None
    extra = getattr(plugin, "apiserver_args", None)
    if extra is not None:
        args += list(extra(cluster))
    return args


def controller_manager_args(cluster: Cluster) -> list[str]:
    pki = cluster.pki_dir
    kubeconfig = _component_kubeconfig(cluster, "kube-controller-manager")
    return [
        str(cluster.bin("kube-controller-manager")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={network.LOOPBACK}",
        f"--secure-port={cluster.state.ports['kube-controller-manager']}",
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--root-ca-file={cluster.ca.cert_path}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--cluster-signing-cert-file={cluster.ca.cert_path}",
        f"--cluster-signing-key-file={cluster.ca.key_path}",
        f"--cluster-name=dask-k8s-{cluster.name}",
        "--allocate-node-cidrs=true",
        f"--cluster-cidr={network.POD_CIDR}",
        f"--node-cidr-mask-size={network.NODE_CIDR_MASK_SIZE}",
        f"--service-cluster-ip-range={network.SERVICE_CIDR}",
        "--profiling=false",
    ]


def scheduler_args(cluster: Cluster) -> list[str]:
    kubeconfig = _component_kubeconfig(cluster, "kube-scheduler")
    return [
        str(cluster.bin("kube-scheduler")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={network.LOOPBACK}",
        f"--secure-port={cluster.state.ports['kube-scheduler']}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def etcd_args(cluster: Cluster) -> list[str]:
    client, peer = cluster.etcd_url, f"http://{network.LOOPBACK}:{cluster.state.ports['etcd-peer']}"
    return [
        str(cluster.bin("etcd")),
        "--name=local",
        f"--data-dir={cluster.state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=local={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def _healthz(cluster: Cluster, component: str) -> Callable[[], bool]:
    url = f"https://{network.LOOPBACK}:{cluster.state.ports[component]}/healthz"
    return lambda: _get(url, _insecure_context(), timeout=2)[0] == 200


def _start_control_plane(cluster: Cluster) -> None:
    etcd = cluster.start_process("etcd", etcd_args(cluster))
    cluster.wait_healthy(
        etcd,
        "etcd healthy",
        lambda: '"health":"true"' in _get(cluster.etcd_url + "/health", None, 2)[1],
        30,
    )
    apiserver = cluster.start_process("kube-apiserver", apiserver_args(cluster))
    cluster.wait_healthy(
        apiserver, "kube-apiserver ready", lambda: cluster.api_get("/readyz")[0] == 200, 120
    )
    for component, args in (
        ("kube-controller-manager", controller_manager_args(cluster)),
        ("kube-scheduler", scheduler_args(cluster)),
    ):
        record = cluster.start_process(component, args)
        cluster.wait_healthy(record, f"{component} healthy", _healthz(cluster, component), 60)
    # The controllers are working once the serviceaccount controller made `default/default`.
    kcm = cluster.process("kube-controller-manager")
    assert kcm is not None
    cluster.wait_healthy(
        kcm,
        "controllers working (default ServiceAccount exists)",
        lambda: cluster.api_get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        60,
    )


def check_version(release: Release, name: str | None = None) -> None:
    """Raise if the cluster runs another Kubernetes version (call before a long build)."""
    cluster = Cluster(name)
    if (
        cluster.exists()
        and cluster.state.kubernetes != release.kubernetes
        and any(h == "ok" for h in cluster.health().values())
    ):
        raise ClusterError(
            f"cluster {cluster.name!r} runs Kubernetes {cluster.state.kubernetes}, not"
            f" {release.kubernetes}: run `python -m ci.localk8s down` first"
        )


def up(release: Release, name: str | None = None, *, node: bool | None = None) -> Cluster:
    """Bring the cluster up (building nothing: call build.build first), or say it is up."""
    cluster = Cluster(name)
    with _locked(cluster.name):
        if cluster.exists():
            check_version(release, cluster.name)
            health = cluster.health()
            running = cluster.state.kubernetes
            if health and all(h == "ok" for h in health.values()):
                log(f"cluster {cluster.name!r} is already up ({running}, {cluster.apiserver_url})")
                return cluster
            bad = {k: v for k, v in health.items() if v != "ok"}
            log(f"cluster {cluster.name!r} is degraded ({bad}): restarting it from scratch")
            _down(cluster)
        return _up(cluster, release, node_enabled() if node is None else node)


def _up(cluster: Cluster, release: Release, with_node: bool) -> Cluster:
    start = time.monotonic()
    bindir = bin_dir(release.kubernetes)
    missing = [b for b in ("etcd", "kube-apiserver", "kubectl") if not (bindir / b).is_file()]
    if missing:
        raise ClusterError(f"{', '.join(missing)} not built in {bindir}: run the build first")
    shutil.rmtree(cluster.state_dir, ignore_errors=True)
    cluster.state_dir.mkdir(parents=True)
    names = ["etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    ports = dict(zip(names, network.free_ports(len(names)), strict=True))
    ports["apiserver"] = ports.pop("kube-apiserver")
    cluster._state = State(
        name=cluster.name,
        kubernetes=release.kubernetes,
        etcd=release.etcd,
        minor=release.minor,
        bin_dir=str(bindir),
        ports=ports,
    )
    cluster.save()
    log(
        f"starting cluster {cluster.name!r}: Kubernetes {release.kubernetes} in {cluster.state_dir}"
    )
    try:
        _prepare_pki(cluster)
        write_kubeconfig(
            cluster.kubeconfig_path,
            cluster=f"dask-k8s-{cluster.name}",
            server=cluster.apiserver_url,
            ca_file=cluster.ca.cert_path,
            user=ADMIN_USER,
            cert_file=cluster.pki_dir / "admin.crt",
            key_file=cluster.pki_dir / "admin.key",
        )
        _start_control_plane(cluster)
        log(f"control plane up in {format_duration(time.monotonic() - start)}")
        plugin = load_node_plugin() if with_node else None
        if plugin is not None:
            plugin.up(cluster)
            log(f"node up in {format_duration(time.monotonic() - start)} in total")
    except BaseException:
        log("bringing the cluster up failed: stopping what was started")
        _down(cluster)
        raise
    log(f"cluster {cluster.name!r} up; kubeconfig: {cluster.kubeconfig_path}")
    return cluster


def down(name: str | None = None) -> bool:
    """Stop every process of the cluster (idempotent); False if nothing was recorded."""
    cluster = Cluster(name)
    with _locked(cluster.name):
        if not cluster.exists():
            log(f"cluster {cluster.name!r} is not up")
            return False
        _down(cluster)
        return True


def _down(cluster: Cluster) -> None:
    plugin = load_node_plugin()
    if plugin is not None:
        try:
            plugin.down(cluster)
        except Exception as e:  # keep stopping the rest
            log(f"node plugin down failed: {e!r}")
    for record in reversed(list(cluster.state.processes)):
        log(f"stopping {record.name} (pid {record.pid})")
        cluster.stop_process(record)
    # Logs, certificates and etcd data stay for inspection until the next `up`.
    stopped = cluster.state_dir / "state.stopped.json"
    cluster.state_file.replace(stopped)
    cluster._state = None
    log(f"cluster {cluster.name!r} is down (logs in {cluster.logs_dir})")
