"""containerd helpers: import archives with ``ctr``, run a throwaway containerd for tests."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ci.images.recipes import ImageArchive
from ci.images.rootfs import log, unmount_all


def ctr(address: str, namespace: str, *args: str, timeout: float = 600) -> str:
    cmd = ["ctr", "--address", address, "--namespace", namespace, *args]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)
    return result.stdout


def image_names(address: str, namespace: str = "k8s.io") -> list[str]:
    return ctr(address, namespace, "images", "ls", "-q").split()


def image_digests(address: str, namespace: str = "k8s.io") -> dict[str, str]:
    """Reference -> manifest digest of every image in the namespace."""
    out: dict[str, str] = {}
    for line in ctr(address, namespace, "images", "ls").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            out[fields[0]] = fields[2]
    return out


def import_into_containerd(
    archives: Iterable[ImageArchive],
    address: str,
    namespace: str = "k8s.io",
    *,
    skip_present: bool = True,
) -> list[str]:
    """``ctr images import`` every archive; check each of its references arrived; return them.

    With ``skip_present`` an archive whose references all already name its manifest digest in
    containerd is not imported again (an import of the Dask image takes about half a minute).
    """
    todo = list(archives)
    imported: list[str] = []
    present = image_digests(address, namespace) if skip_present else {}
    for archive in todo:
        if skip_present and all(present.get(r) == archive.manifest_digest for r in archive.refs):
            log(f"{archive.name}: already in {address} ({namespace})")
        else:
            log(f"import {archive.path.name} into {address} ({namespace})")
            ctr(address, namespace, "images", "import", "--all-platforms", str(archive.path))
        imported += archive.refs
    have = image_digests(address, namespace)
    wrong = sorted(
        f"{ref} ({have.get(ref, 'missing')})"
        for archive in todo
        for ref in archive.refs
        if have.get(ref) != archive.manifest_digest
    )
    if wrong:
        raise RuntimeError(
            f"containerd at {address} lacks the archives' images after import: {wrong}"
        )
    return imported


def missing_images(refs: Sequence[str], address: str, namespace: str = "k8s.io") -> list[str]:
    have = set(image_names(address, namespace))
    return [r for r in refs if r not in have]


class Containerd:
    """A throwaway containerd of our own: own root, state, socket and config under ``workdir``;
    the CRI plugin disabled. Not the machine's containerd. Use as a context manager."""

    def __init__(self, workdir: Path, *, binary: str = "containerd") -> None:
        self.workdir = workdir
        self.binary = binary
        self.address = str(workdir / "containerd.sock")
        self.log_path = workdir / "containerd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        w = self.workdir
        return f"""version = 2
root = "{w / "root"}"
state = "{w / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.address}"

[ttrpc]
  address = "{self.address}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
"""

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "config.toml"
        cfg.write_text(self.config_text())
        with self.log_path.open("wb") as logfh:
            self._proc = subprocess.Popen(
                [self.binary, "--config", str(cfg)],
                stdout=logfh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(self._proc, timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {proc.returncode}: {self.log_tail()}")
            # ctr itself waits up to --connect-timeout for the socket: that paces this loop.
            probe = subprocess.run(
                ["ctr", "--address", self.address, "--connect-timeout", "1s", "version"],
                capture_output=True,
                timeout=30,
            )
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"containerd not ready in {timeout}s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        # containerd-shim processes of containers still running would outlive it; tests remove
        # their containers (ctr run --rm), so none are expected. Unmount what is left.
        unmount_all(self.workdir)

    def __enter__(self) -> Containerd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
