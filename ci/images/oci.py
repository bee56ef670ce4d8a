"""Pack directories into OCI image layers and write OCI image archives, with nothing but the
standard library.

Layers are deterministic: entries sorted by name, every mtime fixed (:data:`MTIME`), owner
uid/gid as on disk (no user or group names), gzip without a name or time stamp. The same tree
gives the same layer digest byte for byte.

A directory can be an overlayfs upper directory: its whiteouts (character devices 0:0) become
``.wh.<name>`` entries and its opaque directories get a ``.wh..wh..opq`` entry, as the OCI image
spec describes.

The archive is the OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) in one
uncompressed tar, which ``ctr images import`` reads. Each tag is one entry of ``index.json``
carrying both ``io.containerd.image.name`` (the full reference; containerd names the image after
it) and ``org.opencontainers.image.ref.name`` (the tag, as the OCI spec wants).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

MTIME = 0
CREATED = "1970-01-01T00:00:00Z"

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

_CHUNK = 1 << 20


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to ``sink``."""

    def __init__(self, sink: IO[bytes] | gzip.GzipFile | None) -> None:
        super().__init__()
        self._sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.size += view.nbytes
        if self._sink is not None:
            self._sink.write(view)
        return view.nbytes


@dataclass(frozen=True)
class Layer:
    """A gzip-compressed layer tar on disk and what an image config and manifest need of it."""

    path: Path
    digest: str
    diff_id: str
    size: int
    created_by: str = ""

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": MEDIA_LAYER, "digest": self.digest, "size": self.size}

    def save_metadata(self, path: Path) -> None:
        data = asdict(self)
        data["path"] = str(self.path)
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load_metadata(cls, path: Path) -> Layer:
        data = json.loads(path.read_text())
        data["path"] = Path(data["path"])
        return cls(**data)


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return sorted(it, key=lambda e: e.name)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _has_redirect(path: Path) -> bool:
    for attr in ("trusted.overlay.redirect", "user.overlay.redirect"):
        try:
            os.getxattr(path, attr, follow_symlinks=False)
        except OSError:
            continue
        return True
    return False


def _tarinfo(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.uname = ""
    info.gname = ""
    info.mtime = MTIME
    return info


def iter_tree(
    root: Path,
    *,
    empty_dirs: Iterable[str] = (),
    skip: Iterable[str] = (),
    overlay_upper: bool = False,
) -> Iterator[tuple[tarfile.TarInfo, Path | None]]:
    """Yield (tar header, file to read or None) for every entry under ``root``, sorted.

    ``empty_dirs``: relative paths kept as directories whose contents are left out (``proc``,
    ``tmp``). ``skip``: relative paths left out entirely. ``overlay_upper``: translate overlayfs
    whiteouts and opaque directories into OCI whiteout entries.
    """
    empty = frozenset(empty_dirs)
    skipped = frozenset(skip)
    hardlinks: dict[tuple[int, int], str] = {}

    def walk(directory: Path, prefix: str) -> Iterator[tuple[tarfile.TarInfo, Path | None]]:
        for entry in _sorted_entries(directory):
            rel = f"{prefix}{entry.name}"
            if rel in skipped:
                continue
            path = Path(entry.path)
            st = path.lstat()
            mode = st.st_mode
            if overlay_upper and _is_whiteout(st):
                info = _tarinfo(f"{prefix}{WHITEOUT_PREFIX}{entry.name}", st, tarfile.REGTYPE)
                info.mode = 0o644
                info.uid = info.gid = 0
                yield info, None
            elif stat.S_ISDIR(mode):
                if overlay_upper and _has_redirect(path):
                    raise ValueError(f"{path}: overlayfs redirect_dir entries are not supported")
                yield _tarinfo(rel, st, tarfile.DIRTYPE), None
                if overlay_upper and _is_opaque(path):
                    info = _tarinfo(f"{rel}/{WHITEOUT_OPAQUE}", st, tarfile.REGTYPE)
                    info.mode = 0o644
                    info.uid = info.gid = 0
                    yield info, None
                if rel not in empty:
                    yield from walk(path, f"{rel}/")
            elif stat.S_ISLNK(mode):
                info = _tarinfo(rel, st, tarfile.SYMTYPE)
                info.linkname = os.readlink(path)
                yield info, None
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in hardlinks:
                    info = _tarinfo(rel, st, tarfile.LNKTYPE)
                    info.linkname = hardlinks[key]
                    yield info, None
                    continue
                if st.st_nlink > 1:
                    hardlinks[key] = rel
                info = _tarinfo(rel, st, tarfile.REGTYPE)
                info.size = st.st_size
                yield info, path
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info = _tarinfo(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
                info.devmajor = os.major(st.st_rdev)
                info.devminor = os.minor(st.st_rdev)
                yield info, None
            elif stat.S_ISFIFO(mode):
                yield _tarinfo(rel, st, tarfile.FIFOTYPE), None
            # sockets cannot be stored in a tar and mean nothing in an image: left out

    yield from walk(root, "")


def write_layer(
    entries: Iterable[tuple[tarfile.TarInfo, Path | bytes | None]],
    out: Path,
    *,
    created_by: str = "",
    compresslevel: int = 6,
) -> Layer:
    """Write ``entries`` as a tar.gz layer at ``out`` (atomically) and return its descriptor."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as raw:
        compressed = _HashingWriter(raw)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=compresslevel
        ) as gz:
            uncompressed = _HashingWriter(gz)
            with tarfile.open(
                fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
            ) as tar:
                for info, source in entries:
                    if isinstance(source, bytes):
                        info.size = len(source)
                        tar.addfile(info, io.BytesIO(source))
                    elif source is not None:
                        with source.open("rb") as fh:
                            info.size = os.fstat(fh.fileno()).st_size
                            tar.addfile(info, fh)
                    else:
                        tar.addfile(info)
    os.replace(tmp, out)
    return Layer(
        path=out,
        digest="sha256:" + compressed.sha256.hexdigest(),
        diff_id="sha256:" + uncompressed.sha256.hexdigest(),
        size=compressed.size,
        created_by=created_by,
    )


def pack_directory(
    root: Path,
    out: Path,
    *,
    empty_dirs: Iterable[str] = (),
    skip: Iterable[str] = (),
    overlay_upper: bool = False,
    created_by: str = "",
    compresslevel: int = 6,
) -> Layer:
    """Pack the tree under ``root`` into a layer (see :func:`iter_tree`)."""
    entries = iter_tree(root, empty_dirs=empty_dirs, skip=skip, overlay_upper=overlay_upper)
    return write_layer(entries, out, created_by=created_by, compresslevel=compresslevel)


@dataclass
class ImageConfig:
    """The runtime part of an OCI image config (``config`` in the JSON)."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = [f"{k}={v}" for k, v in self.env.items()]
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(sorted(self.labels.items()))
        return out


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ImageBlobs:
    """An image as JSON blobs plus its layers: what an archive is written from."""

    config: bytes
    manifest: bytes
    layers: tuple[Layer, ...]

    @property
    def manifest_digest(self) -> str:
        return _digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return _digest(self.config)


def make_image(
    layers: Sequence[Layer], config: ImageConfig, *, architecture: str = "amd64"
) -> ImageBlobs:
    """Build the image config and manifest for ``layers`` (bottom first)."""
    image_config = {
        "created": CREATED,
        "architecture": architecture,
        "os": "linux",
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": CREATED, "created_by": layer.created_by or "ci.images"} for layer in layers
        ],
    }
    config_bytes = _canonical(image_config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": _digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [layer.descriptor() for layer in layers],
    }
    return ImageBlobs(config=config_bytes, manifest=_canonical(manifest), layers=tuple(layers))


def split_reference(ref: str) -> tuple[str, str]:
    """``ghcr.io/dask/dask:1.0`` -> (``ghcr.io/dask/dask``, ``1.0``); the tag defaults to latest."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def make_index(image: ImageBlobs, refs: Sequence[str], *, architecture: str = "amd64") -> bytes:
    """An ``index.json`` with one entry per reference, all pointing at the same manifest."""
    manifests = []
    for ref in refs:
        _, tag = split_reference(ref)
        manifests.append(
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": image.manifest_digest,
                "size": len(image.manifest),
                "platform": {"architecture": architecture, "os": "linux"},
                "annotations": {ANNOTATION_CONTAINERD_NAME: ref, ANNOTATION_REF_NAME: tag},
            }
        )
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    return json.dumps(index, indent=2, sort_keys=True).encode() + b"\n"


def _archive_info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.mtime = MTIME
    info.uname = info.gname = ""
    return info


def write_archive(image: ImageBlobs, refs: Sequence[str], out: Path) -> None:
    """Write the OCI image layout of ``image`` tagged ``refs`` as one tar at ``out`` (atomic)."""
    if not refs:
        raise ValueError("an image archive needs at least one reference")
    blobs: dict[str, Path | bytes] = {}
    for layer in image.layers:
        blobs[layer.digest] = layer.path
    blobs[image.config_digest] = image.config
    blobs[image.manifest_digest] = image.manifest
    small: Mapping[str, bytes] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": make_index(image, refs),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in small.items():
            tar.addfile(_archive_info(name, len(data)), io.BytesIO(data))
        tar.addfile(_archive_info("blobs", 0, directory=True))
        tar.addfile(_archive_info("blobs/sha256", 0, directory=True))
        for digest in sorted(blobs):
            source = blobs[digest]
            name = "blobs/sha256/" + digest.removeprefix("sha256:")
            if isinstance(source, bytes):
                tar.addfile(_archive_info(name, len(source)), io.BytesIO(source))
            else:
                with source.open("rb") as fh:
                    tar.addfile(_archive_info(name, source.stat().st_size), fh)
    os.replace(tmp, out)


def read_archive_index(path: Path) -> dict[str, Any]:
    """The ``index.json`` of an OCI archive."""
    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{path}: no index.json")
        data: dict[str, Any] = json.loads(member.read())
        return data


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
