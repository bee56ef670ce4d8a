"""The ``dask-controller`` command: run the operator."""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Sequence

from dask_controller import __version__
from dask_controller.settings import Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dask-controller",
        description="Run the Dask Kubernetes operator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("settings", help="print the settings read from the environment and exit")
    run = sub.add_parser("run", help="run the operator (kopf) until interrupted")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS",
        help="watch this namespace (repeatable; glob patterns allowed)",
    )  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering", metavar="NAME", default=None,
        help="coordinate with other operator replicas through this KopfPeering (default: off)",
    )  # fmt: skip
    peering.add_argument(
        "--standalone", action="store_true",
        help="run without peering (the default; for explicitness in manifests)",
    )  # fmt: skip
    run.add_argument(
        "--priority", type=int, default=None, metavar="N",
        help="peering priority: the live replica with the highest one acts, the others wait "
        "(default with --peering: random, so that replicas never tie; a tie pauses all of them)",
    )  # fmt: skip
    run.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT",
        help="serve the operator's Prometheus metrics on this port (/metrics)",
    )  # fmt: skip
    run.add_argument(
        "--metrics-address", default="0.0.0.0", metavar="ADDR",
        help="address for --metrics-port (default 0.0.0.0, for a pod)",
    )  # fmt: skip
    run.add_argument(
        "--liveness", metavar="URL", default=None,
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )  # fmt: skip
    run.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.namespace and not args.all_namespaces:
        print("dask-controller run: give --namespace NS or --all-namespaces", file=sys.stderr)
        return 2
    import kopf

    from dask_controller import handlers, plugins

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # kopf logs every successful handler call at INFO
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    priority = args.priority
    if args.peering is not None and priority is None:
        # kopf pauses every replica when two share a priority: draw distinct ones.
        priority = random.SystemRandom().randint(1, 2**31 - 1)
    peering = (
        handlers.Peering(args.peering, bool(args.all_namespaces), tuple(args.namespace))
        if args.peering is not None
        else None
    )
    handlers.configure(settings, kubeconfig=args.kubeconfig, peering=peering)
    if args.metrics_port is not None:
        from dask_controller import metrics

        metrics.serve(args.metrics_port, args.metrics_address)
    plugins.load_plugins()
    kopf.run(
        clusterwide=bool(args.all_namespaces),
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        liveness_endpoint=args.liveness,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"dask-controller: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        for key, value in vars(settings).items():
            print(f"{key}={value}")
        return 0
    if args.command == "run":
        return _run(args, settings)
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
