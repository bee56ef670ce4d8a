"""The OCI packer: deterministic layers, whiteouts, image JSON, archive layout."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ci.images import oci


def _tree(root: Path) -> Path:
    (root / "b" / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "b" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "b" / "run.sh").chmod(0o755)
    (root / "b" / "sub" / "z").write_bytes(b"\0" * 5000)
    (root / "b" / "link").symlink_to("run.sh")
    os.link(root / "a.txt", root / "hard.txt")
    (root / "tmp").mkdir()
    (root / "tmp" / "junk").write_text("junk")
    (root / "skipme").write_text("no")
    return root


def _members(layer: oci.Layer) -> list[tarfile.TarInfo]:
    with tarfile.open(layer.path, "r:gz") as tar:
        return tar.getmembers()


def test_layer_is_deterministic_and_complete(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    one = oci.pack_directory(root, tmp_path / "1.tar.gz", empty_dirs=["tmp"], skip=["skipme"])
    os.utime(root / "a.txt", (12345, 12345))  # mtimes on disk do not matter
    two = oci.pack_directory(root, tmp_path / "2.tar.gz", empty_dirs=["tmp"], skip=["skipme"])
    assert one.digest == two.digest
    assert one.diff_id == two.diff_id
    assert one.path.read_bytes() == two.path.read_bytes()

    assert one.digest == oci.file_sha256(one.path)
    assert one.size == one.path.stat().st_size
    raw = gzip.decompress(one.path.read_bytes())
    assert one.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()

    members = _members(one)
    names = [m.name for m in members]
    assert names == [
        "a.txt",
        "b",
        "b/link",
        "b/run.sh",
        "b/sub",
        "b/sub/z",
        "hard.txt",
        "tmp",
    ]
    by_name = {m.name: m for m in members}
    assert all(m.mtime == oci.MTIME for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)
    st = (root / "a.txt").stat()
    assert (by_name["a.txt"].uid, by_name["a.txt"].gid) == (st.st_uid, st.st_gid)
    assert by_name["b/run.sh"].mode == 0o755
    assert by_name["b/link"].issym()
    assert by_name["b/link"].linkname == "run.sh"
    assert by_name["hard.txt"].islnk()
    assert by_name["hard.txt"].linkname == "a.txt"
    assert by_name["b/sub/z"].size == 5000
    with tarfile.open(one.path, "r:gz") as tar:
        fh = tar.extractfile("b/run.sh")
        assert fh is not None
        assert fh.read() == b"#!/bin/sh\necho hi\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a whiteout and trusted.* xattrs need root")
def test_overlay_whiteouts_become_oci_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque" / "new").write_text("new")
    layer = oci.pack_directory(upper, tmp_path / "l.tar.gz", overlay_upper=True)
    names = [m.name for m in _members(layer)]
    assert names == ["etc", "etc/.wh.gone", "opaque", "opaque/.wh..wh..opq", "opaque/new"]


def test_image_index_and_archive(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    layer = oci.pack_directory(root, tmp_path / "l.tar.gz", created_by="test")
    cfg = oci.ImageConfig(
        entrypoint=["/bin/tini", "--"],
        cmd=["python"],
        env={"PATH": "/opt/venv/bin:/usr/bin"},
        working_dir="/work",
        user="1000:1000",
        labels={"b": "2", "a": "1"},
    )
    image = oci.make_image([layer], cfg)
    config = json.loads(image.config)
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id]}
    assert config["config"]["Entrypoint"] == ["/bin/tini", "--"]
    assert config["config"]["Env"] == ["PATH=/opt/venv/bin:/usr/bin"]
    assert config["config"]["User"] == "1000:1000"
    assert config["config"]["WorkingDir"] == "/work"
    manifest = json.loads(image.manifest)
    assert manifest["config"]["digest"] == image.config_digest
    assert manifest["layers"] == [layer.descriptor()]

    refs = ["ghcr.io/dask/dask:2026.8.0", "ghcr.io/dask/dask:latest"]
    out = tmp_path / "image.tar"
    oci.write_archive(image, refs, out)
    again = tmp_path / "again.tar"
    oci.write_archive(image, refs, again)
    assert out.read_bytes() == again.read_bytes()

    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert names[:2] == ["oci-layout", "index.json"]
        blobs = {}
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("blobs/sha256/"):
                fh = tar.extractfile(member)
                assert fh is not None
                data = fh.read()
                digest = member.name.removeprefix("blobs/sha256/")
                assert hashlib.sha256(data).hexdigest() == digest
                blobs["sha256:" + digest] = data
    assert set(blobs) == {layer.digest, image.config_digest, image.manifest_digest}
    index = oci.read_archive_index(out)
    assert [m["annotations"] for m in index["manifests"]] == [
        {oci.ANNOTATION_CONTAINERD_NAME: refs[0], oci.ANNOTATION_REF_NAME: "2026.8.0"},
        {oci.ANNOTATION_CONTAINERD_NAME: refs[1], oci.ANNOTATION_REF_NAME: "latest"},
    ]
    assert {m["digest"] for m in index["manifests"]} == {image.manifest_digest}
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}


def test_bytes_entries(tmp_path: Path) -> None:
    info = tarfile.TarInfo("hello")
    info.mode = 0o644
    layer = oci.write_layer([(info, b"hello\n")], tmp_path / "x.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(layer.path.read_bytes()), mode="r:gz") as tar:
        fh = tar.extractfile("hello")
        assert fh is not None
        assert fh.read() == b"hello\n"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ghcr.io/dask/dask:2026.8.0", ("ghcr.io/dask/dask", "2026.8.0")),
        ("registry.k8s.io/pause", ("registry.k8s.io/pause", "latest")),
        ("localhost:5000/pause", ("localhost:5000/pause", "latest")),
        ("localhost:5000/pause:dev", ("localhost:5000/pause", "dev")),
    ],
)
def test_split_reference(ref: str, expected: tuple[str, str]) -> None:
    assert oci.split_reference(ref) == expected
