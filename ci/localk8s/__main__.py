"""`python -m ci.localk8s build|up|down|status|kubeconfig` from the repository root."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from . import build as build_mod
from . import cluster as cluster_mod
from .paths import format_duration, log
from .versions import ENV_VAR, Release, VersionError, select


def _release(args: argparse.Namespace) -> Release:
    return select(args.version)


def cmd_build(args: argparse.Namespace) -> int:
    release = _release(args)
    groups = args.only or build_mod.GROUPS
    bindir = build_mod.build(release, force=args.force, groups=groups)
    print(bindir)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    start = time.monotonic()
    release = _release(args)
    cluster_mod.check_version(release, args.name)
    build_mod.build(release)
    node = False if args.no_node else None
    cluster = cluster_mod.up(release, args.name, node=node)
    log(f"`up` took {format_duration(time.monotonic() - start)}")
    print(cluster.kubeconfig_path)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster_mod.down(args.name)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = cluster_mod.Cluster(args.name)
    if not cluster.exists():
        if args.json:
            print(json.dumps({"name": cluster.name, "up": False}))
        else:
            print(f"cluster {cluster.name!r}: not up (state dir {cluster.state_dir})")
        return 1
    health = cluster.health()
    state = cluster.state
    healthy = bool(health) and all(v == "ok" for v in health.values())
    if args.json:
        print(
            json.dumps(
                {
                    "name": cluster.name,
                    "up": True,
                    "healthy": healthy,
                    "kubernetes": state.kubernetes,
                    "apiserver": cluster.apiserver_url,
                    "kubeconfig": str(cluster.kubeconfig_path),
                    "state_dir": str(cluster.state_dir),
                    "ports": state.ports,
                    "processes": {p.name: p.pid for p in state.processes},
                    "health": health,
                },
                indent=2,
            )
        )
    else:
        print(f"cluster {cluster.name!r}: Kubernetes {state.kubernetes} (etcd {state.etcd})")
        print(f"  apiserver:  {cluster.apiserver_url}")
        print(f"  kubeconfig: {cluster.kubeconfig_path}")
        print(f"  state dir:  {cluster.state_dir}")
        print(f"  binaries:   {state.bin_dir}")
        for p in state.processes:
            port = state.ports.get("apiserver" if p.name == "kube-apiserver" else p.name)
            where = f"127.0.0.1:{port}" if port else "-"
            print(f"  {p.name:<24} pid {p.pid:<8} {where:<16} {health.get(p.name, '?')}")
        plugin = cluster_mod.load_node_plugin()
        status = getattr(plugin, "status", None)
        if status is not None:
            for line in status(cluster):
                print(f"  {line}")
        print("  healthy" if healthy else "  DEGRADED: run `down` then `up`")
    return 0 if healthy else 2


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    cluster = cluster_mod.Cluster(args.name)
    if not cluster.exists():
        print(
            f"cluster {cluster.name!r} is not up: run `python -m ci.localk8s up`", file=sys.stderr
        )
        return 1
    print(cluster.kubeconfig_path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ci.localk8s",
        description="A local Kubernetes control plane built from Go source, on 127.0.0.1.",
    )
    p.add_argument(
        "--version",
        dest="version",
        default=None,
        help=f"Kubernetes version, e.g. 1.36 or v1.36.3 (default: ${ENV_VAR}, else pinned)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="cluster name: state dir ~/.local/state/dask-k8s/NAME (default: $DASK_K8S_CLUSTER"
        f" or {cluster_mod.DEFAULT_NAME})",
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the binaries of a release (if missing or stale)")
    b.add_argument("--force", action="store_true", help="rebuild even if up to date")
    b.add_argument("--only", action="append", choices=build_mod.GROUPS, help="build only these")
    b.set_defaults(func=cmd_build)
    u = sub.add_parser("up", help="build if needed, then start the cluster (no-op if up)")
    u.add_argument("--no-node", action="store_true", help="do not start a node even if available")
    u.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop every process of the cluster").set_defaults(func=cmd_down)
    s = sub.add_parser("status", help="what runs, ports, health (exit 1: not up, 2: degraded)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path").set_defaults(
        func=cmd_kubeconfig
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (VersionError, build_mod.BuildError, cluster_mod.ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
