from __future__ import annotations

from typing import Any

import pytest

from dask_kubecluster.connection import format_dashboard_link, plan_connection


def _service(service_type: str = "ClusterIP", **status: Any) -> dict[str, Any]:
    ports = [
        {"name": "tcp-comm", "port": 8786, "targetPort": "tcp-comm"},
        {"name": "http-dashboard", "port": 8787, "targetPort": "http-dashboard"},
    ]
    if service_type != "ClusterIP":
        ports[0]["nodePort"] = 30786
        ports[1]["nodePort"] = 30787
    return {"spec": {"type": service_type, "ports": ports}, "status": status}


def _plan(service: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("in_cluster", False)
    return plan_connection(service, cluster="foo", namespace="ns", **kw)


def test_explicit_address_wins() -> None:
    plan = _plan(_service(), in_cluster=True, scheduler_address="tcp://sched.example.com:9000")
    assert plan.method == "explicit"
    assert plan.scheduler_address == "tcp://sched.example.com:9000"
    assert (plan.dashboard.host, plan.dashboard.port) == ("sched.example.com", 8787)


def test_explicit_address_keeps_its_protocol() -> None:
    plan = _plan(_service(), scheduler_address="tls://sched.example.com:8786")
    assert plan.scheduler_address == "tls://sched.example.com:8786"


def test_explicit_dashboard_address() -> None:
    plan = _plan(
        _service(), scheduler_address="sched:8786", dashboard_address="https://dash.example.com:443"
    )
    assert (plan.dashboard.host, plan.dashboard.port) == ("dash.example.com", 443)
    assert plan.scheduler_address == "tcp://sched:8786"


def test_in_cluster_uses_service_dns() -> None:
    plan = _plan(_service(), in_cluster=True)
    assert plan.method == "in-cluster-dns"
    assert plan.scheduler_address == "tcp://foo-scheduler.ns.svc.cluster.local:8786"
    assert plan.dashboard.port == 8787


def test_in_cluster_custom_domain() -> None:
    plan = _plan(_service(), in_cluster=True, cluster_domain="corp.internal")
    assert plan.comm.host == "foo-scheduler.ns.svc.corp.internal"


def test_in_cluster_but_forced_port_forward() -> None:
    assert _plan(_service(), in_cluster=True, port_forward_cluster_ip=True).method == "port-forward"


def test_load_balancer_ingress() -> None:
    plan = _plan(_service("LoadBalancer", loadBalancer={"ingress": [{"hostname": "lb.example"}]}))
    assert plan.method == "load-balancer"
    assert plan.scheduler_address == "tcp://lb.example:8786"


def test_load_balancer_without_ingress_falls_back_to_node_port() -> None:
    plan = _plan(_service("LoadBalancer", loadBalancer={}), host_ip="10.0.0.5")
    assert plan.method == "node-port"
    assert plan.scheduler_address == "tcp://10.0.0.5:30786"


def test_node_port_uses_the_scheduler_node() -> None:
    plan = _plan(_service("NodePort"), host_ip="10.0.0.5")
    assert plan.method == "node-port"
    assert (plan.dashboard.host, plan.dashboard.port) == ("10.0.0.5", 30787)


def test_node_port_without_host_ip_port_forwards() -> None:
    assert _plan(_service("NodePort")).method == "port-forward"


def test_cluster_ip_from_outside_port_forwards() -> None:
    plan = _plan(_service())
    assert plan.method == "port-forward"
    assert (plan.comm.port, plan.dashboard.port) == (8786, 8787)


def test_cluster_ip_port_forward_disabled_uses_dns() -> None:
    plan = _plan(_service(), port_forward_cluster_ip=False)
    assert plan.method == "dns"
    assert plan.comm.host == "foo-scheduler.ns.svc.cluster.local"


# ------------------------------------------------------------------ dashboard link


def test_dashboard_link_default_template() -> None:
    link = format_dashboard_link(
        "{scheme}://{host}:{port}/status", host="localhost", port=1234, environ={}
    )
    assert link == "http://localhost:1234/status"


def test_dashboard_link_kubeflow_template_uses_environment() -> None:
    link = format_dashboard_link(
        "{NB_PREFIX}/proxy/{host}:{port}/status",
        host="foo-scheduler.ns",
        port=8787,
        environ={"NB_PREFIX": "/notebook/user/nb"},
    )
    assert link == "/notebook/user/nb/proxy/foo-scheduler.ns:8787/status"


def test_dashboard_link_name_and_namespace() -> None:
    link = format_dashboard_link(
        "https://dask.example.com/{namespace}/{name}/status",
        host="h",
        port=1,
        name="foo",
        namespace="ns",
        environ={},
    )
    assert link == "https://dask.example.com/ns/foo/status"


def test_dashboard_link_scheme() -> None:
    link = format_dashboard_link(
        "{scheme}://{host}:{port}/status", host="h", port=1, scheme="https", environ={}
    )
    assert link == "https://h:1/status"


@pytest.mark.parametrize("template", ["{MISSING_VAR}/status", "{0}", "{host"])
def test_dashboard_link_bad_template_falls_back(template: str) -> None:
    link = format_dashboard_link(template, host="h", port=2, environ={})
    assert link == "http://h:2/status"
