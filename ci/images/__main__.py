"""``python -m ci.images build|import|list|check-pins``: see docs/images.md."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ci.images import config
from ci.images.containerd import import_into_containerd
from ci.images.recipes import IMAGES, ImageArchive, build, list_archives


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _print_archives(archives: Sequence[ImageArchive]) -> None:
    for a in archives:
        print(f"{a.name:9} {_size(a.size):>10}  {a.path}")
        for ref in a.refs:
            print(f"{'':9} {'':>10}    {ref}")


def _cmd_build(args: argparse.Namespace) -> int:
    names = IMAGES if "all" in args.images or not args.images else args.images
    unknown = sorted(set(names) - set(IMAGES))
    if unknown:
        print(
            f"unknown image(s) {unknown}; choose from {', '.join(IMAGES)} or all", file=sys.stderr
        )
        return 2
    start = time.monotonic()
    archives = build(names, args.cache_dir)
    print(f"built {len(archives)} image(s) in {time.monotonic() - start:.1f}s:")
    _print_archives(archives)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    archives = list_archives(args.cache_dir)
    if args.json:
        print(json.dumps([a.to_json() for a in archives], indent=2))
    elif not archives:
        print("no image archives yet: python -m ci.images build", file=sys.stderr)
    else:
        _print_archives(archives)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    archives = list_archives(args.cache_dir)
    if args.images:
        archives = [a for a in archives if a.name in args.images]
    if not archives:
        print("no image archives to import: python -m ci.images build", file=sys.stderr)
        return 1
    refs = import_into_containerd(
        archives, args.address, args.namespace, skip_present=not args.force
    )
    print(f"imported into {args.address} ({args.namespace}):")
    for ref in refs:
        print(f"  {ref}")
    return 0


def _cmd_check_pins(args: argparse.Namespace) -> int:
    """Compare the pins with what PyPI resolves by default (queries the package index)."""
    stale = 0
    for name, pinned in sorted(config.PINS.items()):
        out = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", name],
            capture_output=True,
            text=True,
        )
        first = out.stdout.splitlines()[0] if out.stdout else ""
        latest = first.partition("(")[2].rstrip(")") or "?"
        mark = "ok" if latest == pinned else "DIFFERS"
        stale += latest != pinned
        print(f"{name:20} pinned {pinned:12} index {latest:12} {mark}")
    return 1 if stale else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.images", description=__doc__)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=config.default_cache_dir(),
        help="where root filesystems, layers and archives are kept (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build image archives (cached steps are reused)")
    p.add_argument(
        "images", nargs="*", metavar="IMAGE", help=f"{', '.join(IMAGES)} or all (default)"
    )
    p.set_defaults(func=_cmd_build)
    p = sub.add_parser("import", help="import the built archives into a containerd with ctr")
    p.add_argument("--address", required=True, help="containerd socket")
    p.add_argument("--namespace", default="k8s.io")
    p.add_argument("--force", action="store_true", help="import even images containerd already has")
    p.add_argument("images", nargs="*", help="only these (default: every built archive)")
    p.set_defaults(func=_cmd_import)
    p = sub.add_parser("list", help="list the built archives")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("check-pins", help="compare the pins with the package index's latest")
    p.set_defaults(func=_cmd_check_pins)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
