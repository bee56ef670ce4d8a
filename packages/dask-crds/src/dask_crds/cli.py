"""The ``dask-crds`` command: generate CRDs, validate manifests offline, print schemas."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from dask_crds import __version__, crd, docs, naming, validation
from dask_crds import constants as c

_KIND_ALIASES: dict[str, c.Kind] = {
    alias.lower(): kind
    for kind in c.KINDS
    for alias in (kind, c.PLURALS[kind], *crd.SHORT_NAMES[kind])
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dask-crds",
        description="Custom resource definitions of the Dask Kubernetes operator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-name", help="check that a DaskCluster name fits every child name")
    check.add_argument("name")
    gen = sub.add_parser("generate", help="write the CRD YAML files (one per kind)")
    gen.add_argument(
        "--output", "-o", metavar="DIR", help="directory to write to (default: print to stdout)"
    )
    gen.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the files in --output differ from what would be written",
    )
    val = sub.add_parser(
        "validate", help="validate Dask resources in YAML files offline ('-' reads stdin)"
    )
    val.add_argument("files", nargs="+", metavar="FILE")
    val.add_argument("--quiet", "-q", action="store_true", help="print problems only")
    schema = sub.add_parser("schema", help="print the JSON schema of a kind")
    schema.add_argument("kind", help="DaskCluster, daskworkergroup, dsk, dwg, djb, dau, ...")
    schema.add_argument(
        "--openapi", action="store_true", help="print the structural schema used in the CRD"
    )
    doc = sub.add_parser("docs", help="print the generated field reference (Markdown)")
    doc.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    doc.add_argument("--check", action="store_true", help="exit 1 if FILE is out of date")
    return parser


def _generate(output: str | None, check: bool) -> int:
    files = crd.render_all()
    if output is None:
        sys.stdout.write("".join(files.values()))
        return 0
    out = Path(output)
    if check:
        stale = [
            name
            for name, text in files.items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{out / name}: stale; run `dask-crds generate --output {out}`", file=sys.stderr)
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}", file=sys.stderr)
    return 0


def _validate(files: Sequence[str], quiet: bool) -> int:
    failed = False
    for name in files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror}", file=sys.stderr)
            failed = True
            continue
        for result in validation.validate_stream(text):
            where = f"{name}:{result.index}"
            if result.skipped:
                if not quiet:
                    print(f"{where}: skipped: {result.skipped}", file=sys.stderr)
                continue
            for problem in result.problems:
                print(f"{where}: {problem}")
            if not result.ok:
                failed = True
            elif not quiet:
                print(f"{where}: ok: {result.kind} {result.name or ''}".rstrip(), file=sys.stderr)
    return 1 if failed else 0


def _kind(name: str) -> c.Kind | None:
    return _KIND_ALIASES.get(name.lower())


def _docs(output: str | None, check: bool) -> int:
    text = docs.render()
    if output is None:
        sys.stdout.write(text)
        return 0
    path = Path(output)
    if check:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"{path}: stale; run `dask-crds docs --output {path}`", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-name":
        problems = naming.check_cluster_name(args.name)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if args.command == "generate":
        return _generate(args.output, args.check)
    if args.command == "validate":
        return _validate(args.files, args.quiet)
    if args.command == "schema":
        kind = _kind(args.kind)
        if kind is None:
            print(f"unknown kind {args.kind!r}; one of {', '.join(c.KINDS)}", file=sys.stderr)
            return 2
        schema = crd.resource_schema(kind) if args.openapi else crd.json_schema(kind)
        print(json.dumps(schema, indent=2))
        return 0
    if args.command == "docs":
        return _docs(args.output, args.check)
    raise AssertionError(cast(str, args.command))  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
