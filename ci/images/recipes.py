"""The image recipes: base root filesystem, Dask runtime, operator, pause.

Each step has a key: a hash of everything it is made from (recipe text, pins, the keys of the
steps below it, source trees). A step whose key has a finished stamp in the cache is reused;
otherwise it is rebuilt and older results of that step are removed.

Layers::

    dask      = base OS | dask venv + prepare.sh
    operator  = base OS | operator dependencies venv | dask-crds + dask-controller wheels
    pause     = one static Go binary
"""

from __future__ import annotations

import contextlib
import email.parser
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci.images import config, oci
from ci.images.rootfs import (
    build_mounts,
    chroot_run,
    debootstrap,
    log,
    overlay,
    require_root,
    safe_rmtree,
)

IMAGES = ("dask", "operator", "pause")

DASK_ENTRYPOINT = ("/usr/bin/tini", "-g", "--", "/usr/bin/prepare.sh")
OPERATOR_ENTRYPOINT = ("/usr/bin/tini", "--", "/opt/venv/bin/dask-controller")

PREPARE_SH = config.HERE / "prepare.sh"
PAUSE_SRC = config.HERE / "pause"

#: Directories kept empty in every layer (runtime mounts, scratch).
EMPTY_DIRS = ("proc", "sys", "dev", "run", "tmp", "var/tmp")

VENV_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

COMPILE = (
    "python3 -m compileall -q -f -j0 --invalidation-mode unchecked-hash"
    " -x '/(test|tests|idle_test)/'"
)
#: Run before COMPILE on a tree: bytecode that pip or dpkg wrote is timestamp-based, so it would
#: be stale (every mtime in a layer is fixed) and differ from build to build.
DROP_PYCACHE = "find {} -name __pycache__ -type d -prune -exec rm -rf {{}} +"


@dataclass(frozen=True)
class ImageArchive:
    """An OCI image archive on disk, ready for ``ctr images import``."""

    name: str
    path: Path
    refs: tuple[str, ...]
    size: int
    manifest_digest: str
    key: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "refs": list(self.refs),
            "size": self.size,
            "manifest_digest": self.manifest_digest,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageArchive:
        return cls(
            name=data["name"],
            path=Path(data["path"]),
            refs=tuple(data["refs"]),
            size=int(data["size"]),
            manifest_digest=data["manifest_digest"],
            key=data["key"],
        )


def _hash(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode()
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:20]


_IGNORED_NAMES = {
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "build",
    "dist",
    ".nox",
    ".venv",
}


def tree_hash(root: Path, exclude_top: Iterable[str] = ()) -> str:
    """Hash of the names, modes and contents of the files under ``root`` (build debris and
    caches left out, and the top-level names in ``exclude_top``)."""
    h = hashlib.sha256()
    top = set(exclude_top)
    for dirpath, dirnames, filenames in os.walk(root):
        at_top = Path(dirpath) == root
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _IGNORED_NAMES and not d.endswith(".egg-info") and not (at_top and d in top)
        )
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")) or (at_top and name in top):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            h.update(rel.encode() + b"\0")
            h.update(oct(path.lstat().st_mode & 0o111).encode())
            h.update(
                oci.file_sha256(path).encode() if path.is_file() else os.readlink(path).encode()
            )
    return h.hexdigest()[:20]


def _timed(label: str) -> Callable[[float], None]:
    def done(start: float) -> None:
        log(f"{label}: done in {time.monotonic() - start:.1f}s")

    return done


#: How many results of each step the cache keeps (the most recently used ones), so that two
#: checkouts with different recipes sharing a cache do not rebuild each other's images.
KEEP_PER_STEP = 3


def _last_used(step_dir: Path) -> float:
    for name in ("used", "done"):
        try:
            return (step_dir / name).stat().st_mtime
        except FileNotFoundError:
            continue
    return 0.0


class Step:
    """A cached build step: a directory ``<cache>/<kind>/<key>`` with a ``done`` stamp.

    Steps are only built under the cache's lock (see :func:`build`), so pruning the results of
    other keys never races with a build using them.
    """

    def __init__(self, cache: Path, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        self.dir = cache / kind / key

    @property
    def done(self) -> bool:
        """Whether this key is built; if so it is marked as used now (for pruning)."""
        if not (self.dir / "done").exists():
            return False
        (self.dir / "used").touch()
        return True

    def begin(self) -> None:
        """Start (re)building this key: remove a half-built result of it, half-built results of
        other keys, and all but the ``KEEP_PER_STEP - 1`` most recently used finished ones."""
        parent = self.dir.parent
        if parent.exists():
            others = [d for d in parent.iterdir() if d.is_dir() and d != self.dir]
            finished = sorted(
                (d for d in others if (d / "done").exists()), key=_last_used, reverse=True
            )
            unfinished = [d for d in others if not (d / "done").exists()]
            for stale in [*unfinished, *finished[KEEP_PER_STEP - 1 :]]:
                log(f"{self.kind}: removing cached {stale.name}")
                safe_rmtree(stale)
        safe_rmtree(self.dir)
        self.dir.mkdir(parents=True)

    def finish(self, info: dict[str, Any]) -> None:
        (self.dir / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        (self.dir / "done").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        (self.dir / "used").touch()

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "info.json").read_text())
        return data

    @property
    def layer(self) -> oci.Layer:
        return oci.Layer.load_metadata(self.dir / "layer.json")


# --------------------------------------------------------------------------------------------
# base


def _base_recipe() -> dict[str, Any]:
    return {
        "suite": config.DEBIAN_SUITE,
        "mirror": config.DEBIAN_MIRROR,
        "security": config.DEBIAN_SECURITY_MIRROR,
        "packages": config.BASE_PACKAGES,
        "user": [config.USER_NAME, config.USER_UID],
        "script": _base_script(),
        "revision": config.RECIPE_REVISION,
        "compile": [DROP_PYCACHE, COMPILE],
        "empty": EMPTY_DIRS,
    }


def _base_script() -> str:
    suite = config.DEBIAN_SUITE
    uid = config.USER_UID
    name = config.USER_NAME
    return f"""
cat > /etc/apt/sources.list <<EOF
deb {config.DEBIAN_MIRROR} {suite} main
deb {config.DEBIAN_MIRROR} {suite}-updates main
deb {config.DEBIAN_SECURITY_MIRROR} {suite}-security main
EOF
# Dpkg::Use-Pty=0: the chroot has no /dev/pts, and apt would complain it cannot open one.
apt="apt-get -y -qq -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confold"
$apt update
$apt upgrade >/dev/null
$apt install --no-install-recommends {" ".join(config.BASE_PACKAGES)} >/dev/null
groupadd -g {uid} {name}
useradd -u {uid} -g {uid} -m -d /home/{name} -s /bin/bash {name}
chmod 0777 /home/{name}
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/doc/*/changelog*
find /var/log -type f -delete
rm -f /etc/hostname
printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' > /etc/hosts
{DROP_PYCACHE.format("/usr/lib/python3.11 /usr/lib/python3/dist-packages")}
{COMPILE} /usr/lib/python3.11 /usr/lib/python3/dist-packages
"""


@dataclass(frozen=True)
class Base:
    rootfs: Path
    layer: oci.Layer
    key: str
    packages: str


def build_base(cache: Path) -> Base:
    """The Debian minbase root filesystem with python3, venv, tini; its layer; cached."""
    step = Step(cache, "base", _hash(_base_recipe()))
    rootfs = step.dir / "rootfs"
    if step.done:
        log(f"base: up to date ({step.key})")
        return Base(rootfs, step.layer, step.key, (step.dir / "packages.txt").read_text())
    require_root("building the base root filesystem")
    start = time.monotonic()
    log(f"base: debootstrap --variant=minbase {config.DEBIAN_SUITE} (about a minute)")
    step.begin()
    debootstrap(rootfs, suite=config.DEBIAN_SUITE, mirror=config.DEBIAN_MIRROR)
    log(f"base: apt-get install {' '.join(config.BASE_PACKAGES)}")
    with build_mounts(rootfs):
        chroot_run(rootfs, _base_script())
        packages = chroot_run(rootfs, "dpkg-query -W -f '${Package}=${Version}\\n'", capture=True)
    (step.dir / "packages.txt").write_text(packages)
    log("base: packing layer")
    layer = oci.pack_directory(
        rootfs,
        step.dir / "layer.tar.gz",
        empty_dirs=EMPTY_DIRS,
        created_by=f"debootstrap --variant=minbase {config.DEBIAN_SUITE} + "
        + " ".join(config.BASE_PACKAGES),
    )
    layer.save_metadata(step.dir / "layer.json")
    step.finish({"recipe": _base_recipe()})
    _timed("base")(start)
    return Base(rootfs, layer, step.key, packages)


# --------------------------------------------------------------------------------------------
# overlay stages


def _clean_upper(upper: Path) -> None:
    for rel in ("tmp", "var/tmp", "root/.cache", "home/dask/.cache"):
        d = upper / rel
        if d.is_dir() and not d.is_symlink():
            for child in d.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


def run_stage(
    step: Step,
    lowers: Sequence[Path],
    script: str,
    *,
    created_by: str,
    setup: Callable[[Path], None] | None = None,
) -> oci.Layer:
    """Run ``script`` in a chroot on an overlay of ``lowers`` (top first); pack the upper
    directory (what the script changed) into a layer."""
    require_root(f"building {step.kind}")
    start = time.monotonic()
    step.begin()
    upper = step.dir / "upper"
    with overlay(lowers, upper, step.dir / "work", step.dir / "merged") as merged:
        if setup is not None:
            setup(merged)
        with build_mounts(merged):
            chroot_run(merged, script)
            freeze = chroot_run(
                merged,
                "if [ -x /opt/venv/bin/pip ]; then /opt/venv/bin/pip freeze --all; fi",
                capture=True,
            )
    log(f"{step.kind}: chroot script done in {time.monotonic() - start:.1f}s; packing layer")
    (step.dir / "freeze.txt").write_text(freeze)
    safe_rmtree(step.dir / "merged")
    safe_rmtree(step.dir / "work")
    _clean_upper(upper)
    layer = oci.pack_directory(
        upper,
        step.dir / "layer.tar.gz",
        empty_dirs=EMPTY_DIRS,
        overlay_upper=True,
        created_by=created_by,
    )
    layer.save_metadata(step.dir / "layer.json")
    log(f"{step.kind}: layer {layer.size / 1e3:.0f} kB ({layer.digest[:19]})")
    return layer


def _requirements(names: Iterable[str]) -> str:
    return "".join(f"{name}=={config.PINS[name]}\n" for name in names)


def _constraints() -> str:
    return "".join(f"{name}=={version}\n" for name, version in sorted(config.PINS.items()))


def _venv_script(install: str, check: str) -> str:
    return f"""
python3 -m venv /opt/venv
{install}
{DROP_PYCACHE.format("/opt/venv/lib")}
/opt/venv/bin/{COMPILE} /opt/venv/lib
chmod -R a+rX /opt/venv
{check}
"""


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    path.chmod(mode)


def _labels(title: str, version: str, description: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.description": description,
        "org.opencontainers.image.source": "https://github.com/dask/dask-kubernetes",
        "org.opencontainers.image.licenses": "BSD-3-Clause",
    }


# --------------------------------------------------------------------------------------------
# archives


def _write_archive(
    cache: Path, name: str, key: str, image: oci.ImageBlobs, refs: Sequence[str]
) -> ImageArchive:
    out = cache / "archives" / f"{name}.tar"
    meta = cache / "archives" / f"{name}.json"
    if meta.exists() and out.exists():
        old = ImageArchive.from_json(json.loads(meta.read_text()))
        if (
            old.manifest_digest == image.manifest_digest
            and old.refs == tuple(refs)
            and out.stat().st_size == old.size
        ):
            log(f"{name}: archive up to date")
            return old
    log(f"{name}: writing archive {out}")
    oci.write_archive(image, refs, out)
    archive = ImageArchive(
        name=name,
        path=out,
        refs=tuple(refs),
        size=out.stat().st_size,
        manifest_digest=image.manifest_digest,
        key=key,
    )
    meta.write_text(json.dumps(archive.to_json(), indent=2) + "\n")
    return archive


# --------------------------------------------------------------------------------------------
# dask


#: distributed dropped the ``dask-scheduler`` and ``dask-worker`` commands (``dask scheduler``
#: and ``dask worker`` replace them); manifests and KubeCluster still run them, so the image has
#: them as thin wrappers.
LEGACY_COMMANDS = {
    f"dask-{role}": f"#!/bin/sh\n# Old name of `dask {role}`, kept for manifests that use it.\n"
    f'exec /opt/venv/bin/dask {role} "$@"\n'
    for role in ("scheduler", "worker")
}


def dask_refs() -> list[str]:
    return [f"{config.DASK_REPOSITORY}:{config.DASK_VERSION}", f"{config.DASK_REPOSITORY}:latest"]


def build_dask(cache: Path, base: Base) -> ImageArchive:
    requirements = _requirements(config.DASK_IMAGE_PACKAGES)
    prepare = PREPARE_SH.read_bytes()
    script = _venv_script(
        "/opt/venv/bin/pip install -q --no-compile -r /tmp/requirements.txt\n"
        "cp -p /tmp/legacy/* /opt/venv/bin/",
        "/opt/venv/bin/dask --version\n"
        "/opt/venv/bin/dask-scheduler --version\n"
        "/opt/venv/bin/dask-worker --version\n"
        "/opt/venv/bin/python -c 'import distributed, bokeh, pandas, numpy'",
    )
    step = Step(cache, "dask", _hash(base.key, requirements, prepare, script, LEGACY_COMMANDS))
    if step.done:
        log(f"dask: venv layer up to date ({step.key})")
        layer = step.layer
    else:
        start = time.monotonic()
        log(f"dask: pip install {' '.join(requirements.split())}")

        def setup(merged: Path) -> None:
            _write(merged / "tmp" / "requirements.txt", requirements)
            _write(merged / "usr" / "bin" / "prepare.sh", prepare, 0o755)
            for name, text in LEGACY_COMMANDS.items():
                _write(merged / "tmp" / "legacy" / name, text, 0o755)

        layer = run_stage(
            step,
            [base.rootfs],
            script,
            setup=setup,
            created_by="python3 -m venv /opt/venv && pip install " + " ".join(requirements.split()),
        )
        step.finish({"requirements": requirements})
        _timed("dask venv")(start)
    image_config = oci.ImageConfig(
        entrypoint=list(DASK_ENTRYPOINT),
        cmd=["python"],
        env={
            "PATH": VENV_PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "VIRTUAL_ENV": "/opt/venv",
        },
        working_dir="/home/dask",
        user="root",
        labels=_labels(
            "dask", config.DASK_VERSION, "Dask and distributed on Debian with a Python venv"
        ),
        exposed_ports=["8786/tcp", "8787/tcp"],
    )
    image = oci.make_image([base.layer, layer], image_config)
    return _write_archive(cache, "dask", step.key, image, dask_refs())


# --------------------------------------------------------------------------------------------
# operator

OPERATOR_PACKAGES = ("dask-crds", "dask-controller")


def operator_source_hash(repo: Path = config.REPO_ROOT) -> str:
    """Hash of what goes into the operator's wheels (their tests and the Dockerfile do not)."""
    return _hash(
        *(
            tree_hash(repo / "packages" / pkg, exclude_top=("tests", "Dockerfile"))
            for pkg in OPERATOR_PACKAGES
        )
    )


def wheel_build_python(cache: Path) -> str:
    """A cached venv with the packages' build backend, so wheels build without downloading it
    each time (``pip wheel --no-build-isolation``)."""
    step = Step(cache, "wheel-env", _hash(config.WHEEL_BUILD_REQUIREMENTS, sys.version))
    python = step.dir / "venv" / "bin" / "python"
    if step.done:
        return str(python)
    log(
        "operator: creating the wheel build environment: "
        + " ".join(config.WHEEL_BUILD_REQUIREMENTS)
    )
    step.begin()
    subprocess.run([sys.executable, "-m", "venv", str(step.dir / "venv")], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *config.WHEEL_BUILD_REQUIREMENTS], check=True
    )
    step.finish({"requirements": config.WHEEL_BUILD_REQUIREMENTS})
    return str(python)


def build_wheels(repo: Path, out: Path, python: str = sys.executable) -> list[Path]:
    """``pip wheel --no-deps`` of the operator's packages from this repository. With a
    ``python`` other than the running one, that environment's build backend is used."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out)]
    if python != sys.executable:
        cmd.append("--no-build-isolation")
    cmd += [str(repo / "packages" / pkg) for pkg in OPERATOR_PACKAGES]
    subprocess.run(cmd, check=True)
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != len(OPERATOR_PACKAGES):
        raise RuntimeError(f"expected {len(OPERATOR_PACKAGES)} wheels, got {wheels}")
    return wheels


def wheel_requirements(wheel: Path) -> tuple[str, str, list[str]]:
    """(name, version, runtime Requires-Dist) from a wheel's METADATA."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    requires = [r for r in msg.get_all("Requires-Dist") or [] if "extra ==" not in r]
    return str(msg["Name"]), str(msg["Version"]), requires


def _project_name(requirement: str) -> str:
    name = requirement
    for sep in "<>=!~;[( ":
        name = name.split(sep, 1)[0]
    return name.strip().lower().replace("_", "-")


def operator_tag(version: str) -> str:
    """A wheel version as an image tag (``+`` is not allowed in tags)."""
    return version.replace("+", "-")


def build_operator(cache: Path, base: Base, repo: Path = config.REPO_ROOT) -> ImageArchive:
    src_hash = operator_source_hash(repo)
    app = Step(cache, "operator-app", _hash(base.key, src_hash, _constraints(), COMPILE))
    if app.done:
        info = app.info()
        deps = Step(cache, "operator-deps", info["deps_key"])
    else:
        info = {}
        deps = Step(cache, "operator-deps", "missing")
    if app.done and deps.done:
        log(f"operator: layers up to date ({deps.key}, {app.key})")
    else:
        start = time.monotonic()
        log("operator: building wheels of " + ", ".join(OPERATOR_PACKAGES))
        with tempfile.TemporaryDirectory(prefix="dask-k8s-wheels-") as tmp:
            wheels = build_wheels(repo, Path(tmp), wheel_build_python(cache))
            metas = [wheel_requirements(w) for w in wheels]
            ours = {_project_name(n) for n, _, _ in metas}
            requires = sorted(
                {r for _, _, reqs in metas for r in reqs if _project_name(r) not in ours}
            )
            version = next(v for n, v, _ in metas if _project_name(n) == "dask-controller")
            constraints = _constraints()
            deps_script = _venv_script(
                "/opt/venv/bin/pip install -q --no-compile -c /tmp/constraints.txt"
                " -r /tmp/requirements.txt",
                "/opt/venv/bin/python -c 'import kopf, kubernetes_asyncio, distributed'",
            )
            deps = Step(cache, "operator-deps", _hash(base.key, requires, constraints, deps_script))
            if deps.done:
                log(f"operator: dependency layer up to date ({deps.key})")
            else:
                log("operator: pip install " + " ".join(requires))
                reqs_text = "".join(r + "\n" for r in requires)

                def deps_setup(merged: Path) -> None:
                    _write(merged / "tmp" / "requirements.txt", reqs_text)
                    _write(merged / "tmp" / "constraints.txt", constraints)

                run_stage(
                    deps,
                    [base.rootfs],
                    deps_script,
                    setup=deps_setup,
                    created_by="python3 -m venv /opt/venv && pip install " + " ".join(requires),
                )
                deps.finish({"requires": requires})
            wheel_names = [w.name for w in wheels]
            app_script = (
                "/opt/venv/bin/pip install -q --no-deps --no-compile "
                + " ".join(f"/tmp/wheels/{n}" for n in wheel_names)
                + "\nsite=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()"
                '["purelib"])\')\n'
                + f'/opt/venv/bin/{COMPILE} "$site/dask_crds" "$site/dask_controller"\n'
                + "/opt/venv/bin/dask-controller --version\n"
            )

            def app_setup(merged: Path) -> None:
                for w in wheels:
                    _write(merged / "tmp" / "wheels" / w.name, w.read_bytes())

            run_stage(
                app,
                [deps.dir / "upper", base.rootfs],
                app_script,
                setup=app_setup,
                created_by="pip install --no-deps " + " ".join(wheel_names),
            )
        info = {"deps_key": deps.key, "version": version, "wheels": wheel_names}
        app.finish(info)
        _timed("operator layers")(start)
    version = str(info["version"])
    refs = [
        f"{config.OPERATOR_REPOSITORY}:{operator_tag(version)}",
        f"{config.OPERATOR_REPOSITORY}:dev",
    ]
    image_config = oci.ImageConfig(
        entrypoint=list(OPERATOR_ENTRYPOINT),
        cmd=["run"],
        env={
            "PATH": VENV_PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "VIRTUAL_ENV": "/opt/venv",
            "HOME": "/tmp",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        },
        working_dir="/tmp",
        user=f"{config.USER_UID}:{config.USER_UID}",
        labels=_labels("dask-kubernetes-operator", version, "The Dask Kubernetes operator"),
    )
    image = oci.make_image([base.layer, deps.layer, app.layer], image_config)
    return _write_archive(cache, "operator", app.key, image, refs)


# --------------------------------------------------------------------------------------------
# pause


def _go_version() -> str:
    out = subprocess.run(
        [config.GO, "env", "GOVERSION"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
    )
    return out.stdout.strip()


def build_pause(cache: Path) -> ImageArchive:
    sources = {p.name: oci.file_sha256(p) for p in sorted(PAUSE_SRC.iterdir()) if p.is_file()}
    ldflags = f"-s -w -buildid= -X main.version={config.PAUSE_VERSION}"
    step = Step(cache, "pause", _hash(sources, _go_version(), ldflags, oci.MTIME))
    if step.done:
        log(f"pause: up to date ({step.key})")
        layer = step.layer
    else:
        start = time.monotonic()
        log(f"pause: go build ({_go_version()}, CGO_ENABLED=0)")
        step.begin()
        binary = step.dir / "pause"
        env = {
            **os.environ,
            "CGO_ENABLED": "0",
            "GOTOOLCHAIN": "local",
            "GOOS": "linux",
            "GOARCH": "amd64",
            "GOFLAGS": "-trimpath -mod=mod",
        }
        subprocess.run(
            [config.GO, "build", "-ldflags", ldflags, "-o", str(binary), "."],
            check=True,
            cwd=PAUSE_SRC,
            env=env,
        )
        info = tarfile.TarInfo("pause")
        info.mode = 0o755
        info.mtime = oci.MTIME
        layer = oci.write_layer(
            [(info, binary)], step.dir / "layer.tar.gz", created_by="go build ./ci/images/pause"
        )
        layer.save_metadata(step.dir / "layer.json")
        step.finish({"go": _go_version()})
        _timed("pause")(start)
    image_config = oci.ImageConfig(
        entrypoint=["/pause"],
        user="65535:65535",
        labels=_labels("pause", config.PAUSE_VERSION, "Pod sandbox (infra) container"),
    )
    image = oci.make_image([layer], image_config)
    return _write_archive(cache, "pause", step.key, image, config.PAUSE_TAGS)


# --------------------------------------------------------------------------------------------
# all


def build(names: Iterable[str] = IMAGES, cache_dir: Path | None = None) -> list[ImageArchive]:
    """Build the named images (``dask``, ``operator``, ``pause``); return their archives."""
    cache = Path(cache_dir) if cache_dir is not None else config.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in IMAGES]
    if unknown:
        raise ValueError(f"unknown images {unknown}; known: {IMAGES}")
    archives: list[ImageArchive] = []
    base: Base | None = None
    with _cache_lock(cache):
        for name in wanted:
            start = time.monotonic()
            if name == "pause":
                archives.append(build_pause(cache))
            else:
                base = base or build_base(cache)
                if name == "dask":
                    archives.append(build_dask(cache, base))
                else:
                    archives.append(build_operator(cache, base))
            _timed(f"image {name}")(start)
    return archives


@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    """One build at a time per cache directory (a second one waits for the first)."""
    with (cache / ".lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build using {cache}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_all(cache_dir: Path | None = None) -> list[ImageArchive]:
    """Build every image; return their archives (cached steps are reused)."""
    return build(IMAGES, cache_dir)


def list_archives(cache_dir: Path | None = None) -> list[ImageArchive]:
    """The archives built so far in ``cache_dir``."""
    cache = Path(cache_dir) if cache_dir is not None else config.default_cache_dir()
    out = []
    for meta in sorted((cache / "archives").glob("*.json")):
        archive = ImageArchive.from_json(json.loads(meta.read_text()))
        if archive.path.exists():
            out.append(archive)
    return out
