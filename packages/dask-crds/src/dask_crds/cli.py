"""The ``dask-crds`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dask_crds import __version__, naming


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dask-crds",
        description="Custom resource definitions of the Dask Kubernetes operator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-name", help="check that a DaskCluster name fits every child name")
    check.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-name":
        problems = naming.check_cluster_name(args.name)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
