"""The ``dask-controller`` command: run the operator."""

from __future__ import annotations

import argparse
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
    return parser


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
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
