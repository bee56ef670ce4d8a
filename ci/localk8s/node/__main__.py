"""``python -m ci.localk8s.node build|up|down|status``: the node on its own (debugging aid).

``up`` needs a running control plane, given with --server, --ca-cert, --ca-key,
--admin-kubeconfig and --bin-dir (the normal entry point is ``python -m ci.localk8s up``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import host
from .config import ClusterInfo, NodeConfig
from .lifecycle import node_status, start_node, stop_node


def _cluster(ns: argparse.Namespace) -> ClusterInfo:
    missing = [
        k
        for k in ("server", "ca_cert", "ca_key", "admin_kubeconfig", "bin_dir")
        if not getattr(ns, k)
    ]
    if missing:
        sys.exit(f"missing options: {', '.join('--' + m.replace('_', '-') for m in missing)}")
    return ClusterInfo(
        server=ns.server,
        ca_cert=Path(ns.ca_cert),
        ca_key=Path(ns.ca_key),
        admin_kubeconfig=Path(ns.admin_kubeconfig),
        bin_dir=Path(ns.bin_dir),
        service_cidr=ns.service_cidr,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.localk8s.node", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    parser.add_argument("--server")
    parser.add_argument("--ca-cert")
    parser.add_argument("--ca-key")
    parser.add_argument("--admin-kubeconfig")
    parser.add_argument("--bin-dir")
    parser.add_argument("--service-cidr", default="10.96.0.0/16")
    ns = parser.parse_args(argv)
    cfg = NodeConfig()
    if ns.command == "build":
        host.build_all(cfg)
    elif ns.command == "up":
        start_node(_cluster(ns), cfg)
    elif ns.command == "down":
        stop_node(
            cfg, bin_dir=Path(ns.bin_dir) if ns.bin_dir else None, service_cidr=ns.service_cidr
        )
    else:
        for key, value in node_status(cfg, _cluster(ns) if ns.server else None).items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
