"""How to reach a scheduler: the decision (pure) and the dashboard link.

The decision takes the scheduler Service object, where we run, and the user's options, and returns
a :class:`ConnectionPlan`. The shell (``KubeCluster``) carries it out: for ``port-forward`` it
starts :class:`~dask_kubecluster.portforward.PortForward` listeners, otherwise it connects
directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dask_crds import constants as c
from dask_crds import naming
from dask_kubecluster.spec import service_port

Method = Literal["explicit", "in-cluster-dns", "load-balancer", "node-port", "port-forward", "dns"]


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class ConnectionPlan:
    """Where the scheduler comm and dashboard are, or that they must be port-forwarded.

    For ``port-forward`` the endpoints are the *remote* service ports; the shell replaces them
    with the local listener ports.
    """

    method: Method
    comm: Endpoint
    dashboard: Endpoint
    #: the user's address verbatim (any protocol: tcp://, tls://, ws://...).
    address: str = ""

    @property
    def scheduler_address(self) -> str:
        return self.address or f"tcp://{self.comm.host}:{self.comm.port}"


def _service_dns(cluster: str, namespace: str, domain: str) -> str:
    return f"{naming.scheduler_name(cluster)}.{namespace}.svc.{domain}"


def plan_connection(
    service: Mapping[str, Any],
    *,
    cluster: str,
    namespace: str,
    in_cluster: bool,
    port_forward_cluster_ip: bool | None = None,
    scheduler_address: str | None = None,
    dashboard_address: str | None = None,
    host_ip: str | None = None,
    cluster_domain: str = c.DEFAULT_CLUSTER_DOMAIN,
) -> ConnectionPlan:
    """Decide how to reach the scheduler of ``cluster``.

    1. an explicit ``scheduler_address`` (the user routes the traffic);
    2. in a pod: the Service's cluster DNS name (unless ``port_forward_cluster_ip`` is True);
    3. a LoadBalancer Service with an ingress address: that address and the service ports;
    4. a NodePort Service: the scheduler pod's node (``host_ip``) and the node ports;
    5. otherwise a port-forward through the Kubernetes API (unless ``port_forward_cluster_ip``
       is False, when the cluster DNS name is used: you have a VPN or similar).
    """
    spec = service.get("spec") or {}
    comm_port = service_port(service, "tcp-comm", c.DEFAULT_SCHEDULER_PORT)
    dash_port = service_port(service, "http-dashboard", c.DEFAULT_DASHBOARD_PORT)
    dns = _service_dns(cluster, namespace, cluster_domain)

    if scheduler_address:
        host, port = _split_address(scheduler_address, comm_port)
        if dashboard_address:
            dhost, dport = _split_address(dashboard_address, dash_port)
        else:
            dhost, dport = host, dash_port
        address = scheduler_address if "://" in scheduler_address else ""
        return ConnectionPlan(
            "explicit", Endpoint(host, port), Endpoint(dhost, dport), address=address
        )

    if in_cluster and port_forward_cluster_ip is not True:
        return ConnectionPlan("in-cluster-dns", Endpoint(dns, comm_port), Endpoint(dns, dash_port))

    service_type = spec.get("type") or "ClusterIP"
    if service_type == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        for entry in ingress:
            address = entry.get("ip") or entry.get("hostname")
            if address:
                return ConnectionPlan(
                    "load-balancer", Endpoint(address, comm_port), Endpoint(address, dash_port)
                )
    if service_type in ("NodePort", "LoadBalancer") and host_ip:
        node_ports = {
            p.get("name"): p.get("nodePort") for p in spec.get("ports") or () if p.get("nodePort")
        }
        if "tcp-comm" in node_ports:
            return ConnectionPlan(
                "node-port",
                Endpoint(host_ip, int(node_ports["tcp-comm"])),
                Endpoint(host_ip, int(node_ports.get("http-dashboard") or dash_port)),
            )

    if port_forward_cluster_ip is False:
        return ConnectionPlan("dns", Endpoint(dns, comm_port), Endpoint(dns, dash_port))
    return ConnectionPlan(
        "port-forward", Endpoint("localhost", comm_port), Endpoint("localhost", dash_port)
    )


def _split_address(address: str, default_port: int) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if sep and port.isdigit() and host:
        return host.strip("[]"), int(port)
    return rest, default_port


def format_dashboard_link(
    template: str,
    *,
    host: str,
    port: int,
    name: str = "",
    namespace: str = "",
    scheme: str = "http",
    environ: Mapping[str, str] | None = None,
) -> str:
    """Fill dask's ``distributed.dashboard.link`` template like dask does.

    Environment variables are available (``{JUPYTERHUB_SERVICE_PREFIX}``, ``{NB_PREFIX}``),
    then ``scheme``, ``host`` and ``port``, plus ``name`` and ``namespace`` of the cluster. A
    template naming an unknown key is returned with a plain ``scheme://host:port/status`` link
    rather than raising.
    """
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {
        **env,
        "scheme": scheme,
        "host": host,
        "port": port,
        "name": name,
        "namespace": namespace,
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return f"{scheme}://{host}:{port}/status"
