"""Check that installed distributions import and that their entry points resolve.

Run by `nox -s build` inside a fresh virtual environment:
    python ci/check_install.py dask-crds dask-controller dask-kubecluster
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path


def check(dist_name: str) -> list[str]:
    problems: list[str] = []
    dist = distribution(dist_name)
    module = dist_name.replace("-", "_")
    mod = importlib.import_module(module)
    if getattr(mod, "__version__", None) != dist.version:
        problems.append(f"{module}.__version__={mod.__version__!r} but {dist_name}=={dist.version}")
    if not dist.files or not any(str(f).endswith(f"{module}/py.typed") for f in dist.files):
        problems.append(f"{dist_name} does not ship {module}/py.typed")
    for ep in dist.entry_points:
        try:
            ep.load()
        except Exception as exc:  # report every broken entry point, not only the first
            problems.append(f"entry point {ep.group}:{ep.name} = {ep.value} fails: {exc!r}")
            continue
        if ep.group == "console_scripts":
            script = Path(sys.executable).parent / ep.name
            out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
            if out.returncode != 0 or dist.version not in out.stdout:
                problems.append(f"`{ep.name} --version` said {out.stdout!r}{out.stderr!r}")
    print(f"ok: {dist_name} {dist.version} ({len(list(dist.entry_points))} entry points)")
    return problems


def main(names: list[str]) -> int:
    problems = [p for name in names for p in check(name)]
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
