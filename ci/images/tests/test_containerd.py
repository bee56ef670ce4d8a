"""End to end: build the images (cached), import them into a containerd of our own, run them.

Needs root, containerd, ctr and runc (Debian: apt-get install containerd runc). Skipped with the
reason when they are missing. The containerd started here is a throwaway: its own root, state,
socket and config under a temporary directory, the CRI plugin disabled; it is stopped at the end.
Containers run with ``ctr run`` without ``--net-host``: an isolated network namespace, so
nothing leaves the machine.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ci.images import build_all, config, import_into_containerd
from ci.images.containerd import Containerd
from ci.images.recipes import DASK_ENTRYPOINT, OPERATOR_ENTRYPOINT, ImageArchive
from ci.images.rootfs import safe_rmtree

NS = "k8s.io"
MISSING = [tool for tool in ("containerd", "ctr", "runc") if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.containerd,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: containerd, runc, mount, chroot"),
    pytest.mark.skipif(bool(MISSING), reason=f"missing {MISSING}: apt-get install containerd runc"),
    # A cold build (debootstrap, pip) takes several minutes; a warm one seconds.
    pytest.mark.timeout(3600),
]

DASK_REF = f"{config.DASK_REPOSITORY}:{config.DASK_VERSION}"
OPERATOR_REF = f"{config.OPERATOR_REPOSITORY}:dev"
PAUSE_REF = "registry.k8s.io/pause:3.10"

_counter = iter(range(1_000_000))


@pytest.fixture(scope="module")
def archives() -> list[ImageArchive]:
    return build_all()


@pytest.fixture(scope="module")
def containerd(
    archives: list[ImageArchive], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Containerd]:
    # A short path: the socket path must fit in sun_path (108 bytes).
    workdir = Path(tmp_path_factory.mktemp("ctd", numbered=True))
    try:
        with Containerd(workdir) as c:
            import_into_containerd(archives, c.address, NS)
            yield c
    finally:
        # Its content store and snapshots take a gigabyte or so: do not leave them in /tmp.
        safe_rmtree(workdir)


def _ctr(c: Containerd, *args: str) -> list[str]:
    return ["ctr", "--address", c.address, "--namespace", NS, *args]


def run(
    c: Containerd,
    ref: str,
    *cmd: str,
    env: Sequence[str] = (),
    flags: Sequence[str] = (),
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """``ctr run --rm`` a container to completion; its own network namespace (no --net-host).

    ctr (unlike Kubernetes' ``args``) replaces the image's entrypoint with the command given, so
    tests that want the entrypoint pass it explicitly (``DASK_ENTRYPOINT``).
    """
    cid = f"t{os.getpid()}-{next(_counter)}"
    args = ["run", "--rm", *flags]
    for e in env:
        args += ["--env", e]
    return subprocess.run(
        _ctr(c, *args, ref, cid, *cmd), capture_output=True, text=True, timeout=timeout
    )


def test_all_references_imported(containerd: Containerd, archives: list[ImageArchive]) -> None:
    out = subprocess.run(
        _ctr(containerd, "images", "ls", "-q"), check=True, capture_output=True, text=True
    ).stdout.split()
    for archive in archives:
        assert set(archive.refs) <= set(out)
    assert f"{config.DASK_REPOSITORY}:latest" in out
    assert "registry.k8s.io/pause:3.6" in out  # containerd 1.6's default sandbox image


def test_dask_version(containerd: Containerd) -> None:
    result = run(containerd, DASK_REF, *DASK_ENTRYPOINT, "dask", "--version")
    assert result.returncode == 0, result.stderr
    assert config.DASK_VERSION in result.stdout


def test_dask_imports(containerd: Containerd) -> None:
    code = (
        "import distributed, bokeh, pandas, numpy, pyarrow, dask.dataframe;"
        " print(distributed.__version__)"
    )
    ref = f"{config.DASK_REPOSITORY}:latest"
    result = run(containerd, ref, *DASK_ENTRYPOINT, "python", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == config.DASK_VERSION


@pytest.mark.parametrize(
    "cmd",
    [
        ["dask-scheduler", "--version"],
        ["dask-worker", "--version"],
        ["dask", "scheduler", "--version"],
        ["dask", "worker", "--version"],
    ],
)
def test_dask_commands_of_the_manifests(containerd: Containerd, cmd: list[str]) -> None:
    result = run(containerd, DASK_REF, *DASK_ENTRYPOINT, *cmd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert config.DASK_VERSION in result.stdout + result.stderr


@pytest.mark.parametrize("uid", [1000, 12345])
def test_dask_as_non_root(containerd: Containerd, uid: int) -> None:
    # ctr 1.6 has no --user: drop to the uid inside. Files must be world-readable; 12345 is an
    # arbitrary uid with no passwd entry, as OpenShift-style platforms assign.
    code = "import os, distributed, bokeh, pandas; print(os.getuid(), distributed.__version__)"
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    result = run(containerd, DASK_REF, *cmd, *DASK_ENTRYPOINT, "python", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(uid), config.DASK_VERSION]


def test_extra_pip_packages_as_non_root_use_a_target_dir(containerd: Containerd) -> None:
    env = ["EXTRA_PIP_PACKAGES=nonexistent-package-for-test", "EXTRA_PIP_RETRIES=0"]
    cmd = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", *DASK_ENTRYPOINT]
    code = "import os; print(os.environ['PYTHONPATH'])"
    result = run(containerd, DASK_REF, *cmd, "python", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert "/opt/venv is not writable (uid 1000)" in result.stderr
    assert "Starting WITHOUT them" in result.stderr
    assert result.stdout.strip() == "/tmp/dask-extra-packages"


def test_extra_packages_without_network_are_logged_and_skipped(containerd: Containerd) -> None:
    env = [
        "EXTRA_PIP_PACKAGES=nonexistent-package-for-test",
        "EXTRA_APT_PACKAGES=curl",
        "EXTRA_CONDA_PACKAGES=numba",
        "PIP_DEFAULT_TIMEOUT=5",
        "EXTRA_PIP_RETRIES=0",
    ]
    result = run(
        containerd, DASK_REF, *DASK_ENTRYPOINT, "python", "-c", "print('started')", env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"
    assert "EXTRA_APT_PACKAGES='curl' is NOT installed" in result.stderr
    assert "EXTRA_CONDA_PACKAGES='numba' is NOT installed" in result.stderr
    assert "FAILED" in result.stderr
    assert "Starting WITHOUT them" in result.stderr


def test_operator_version_non_root_read_only(containerd: Containerd) -> None:
    result = run(containerd, OPERATOR_REF, *OPERATOR_ENTRYPOINT, "--version", flags=["--read-only"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dask-controller ")


def test_operator_runs_as_uid_1000(containerd: Containerd) -> None:
    code = "import os, dask_controller, kopf; print(os.getuid(), os.getgid())"
    result = run(containerd, OPERATOR_REF, "python", "-c", code, flags=["--read-only"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000", "1000"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_pause_stops_on_signal(containerd: Containerd, sig: str) -> None:
    cid = f"pause{os.getpid()}-{sig.lower()}"
    with subprocess.Popen(
        _ctr(containerd, "run", "--rm", PAUSE_REF, cid),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as pause:
        try:
            # pause prints this once its handlers are installed (the Go runtime would exit 2
            # on a signal that came earlier); the task's start event is not enough.
            early = _read_until(pause, "pause: ready", time.monotonic() + 60)
            assert pause.poll() is None, "pause exited on its own"
            subprocess.run(
                _ctr(containerd, "tasks", "kill", "--signal", sig, cid), check=True, timeout=30
            )
            out, err = pause.communicate(timeout=30)
        finally:
            if pause.poll() is None:
                subprocess.run(_ctr(containerd, "tasks", "kill", "-s", "SIGKILL", cid), timeout=30)
                pause.communicate(timeout=30)
    output = early + (out + err).decode(errors="replace")
    assert pause.returncode == 0, output
    assert "shutting down" in output


def test_cli_list_and_import(containerd: Containerd, capsys: pytest.CaptureFixture[str]) -> None:
    from ci.images.__main__ import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "ghcr.io/dask/dask:latest" in listed
    assert main(["import", "--address", containerd.address, "--namespace", NS, "pause"]) == 0
    captured = capsys.readouterr()
    assert "registry.k8s.io/pause:3.10" in captured.out
    assert "pause: already in" in captured.err  # same digest: not imported again
    args = ["import", "--address", containerd.address, "--namespace", NS, "--force", "pause"]
    assert main(args) == 0
    assert "import pause.tar" in capsys.readouterr().err


DASHBOARD_CHECK = """
import urllib.request
from distributed import Client, LocalCluster

# Everything on the container's own loopback: its network namespace has nothing else.
with LocalCluster(
    n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:8787",
) as cluster, Client(cluster) as client:
    assert client.submit(lambda x: x + 1, 41).result(timeout=60) == 42
    with urllib.request.urlopen("http://127.0.0.1:8787/status", timeout=30) as resp:
        assert resp.status == 200, resp.status
        assert b"bokeh" in resp.read().lower()
    print("dashboard ok")
"""


def test_dask_cluster_and_dashboard_inside_the_container(containerd: Containerd) -> None:
    result = run(containerd, DASK_REF, *DASK_ENTRYPOINT, "python", "-c", DASHBOARD_CHECK)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dashboard ok" in result.stdout


def _read_until(proc: subprocess.Popen[bytes], needle: str, deadline: float) -> str:
    """Read ``proc``'s stderr until a line contains ``needle``; poll with a deadline."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    buf = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536).decode(errors="replace")
        if not chunk:
            break
        buf += chunk
        if needle in buf:
            return buf
    raise TimeoutError(f"no {needle!r} in: {buf[-3000:]}")


def test_scheduler_stops_on_sigterm_through_tini(containerd: Containerd) -> None:
    cid = f"sched{os.getpid()}"
    cmd = [*DASK_ENTRYPOINT, "dask", "scheduler", "--host", "127.0.0.1", "--no-dashboard"]
    with subprocess.Popen(
        _ctr(containerd, "run", "--rm", DASK_REF, cid, *cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        try:
            _read_until(proc, "Scheduler at:", time.monotonic() + 120)
            subprocess.run(
                _ctr(containerd, "tasks", "kill", "--signal", "SIGTERM", cid),
                check=True,
                timeout=30,
            )
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                subprocess.run(_ctr(containerd, "tasks", "kill", "-s", "SIGKILL", cid), timeout=30)
                proc.wait(timeout=30)
    # tini (PID 1) forwards SIGTERM to the scheduler, which shuts down cleanly and exits 0.
    assert proc.returncode == 0, proc.returncode


def _probe_wheel(directory: Path) -> Path:
    """A tiny pure-Python wheel, to install offline with EXTRA_PIP_PACKAGES."""
    import base64
    import hashlib
    import zipfile

    files = {
        "extra_probe.py": b"VALUE = 42\n",
        "extra_probe-1.0.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: extra-probe\nVersion: 1.0\n"
        ),
        "extra_probe-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += "extra_probe-1.0.dist-info/RECORD,,\n"
    directory.mkdir(mode=0o755)
    wheel = directory / "extra_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("extra_probe-1.0.dist-info/RECORD", record)
    wheel.chmod(0o644)
    return wheel


@pytest.mark.parametrize("uid", [0, 1000])
def test_extra_pip_packages_are_installed(containerd: Containerd, tmp_path: Path, uid: int) -> None:
    wheel = _probe_wheel(tmp_path / "wheels")
    mount = f"type=bind,src={wheel.parent},dst=/wheels,options=rbind:ro"
    env = [f"EXTRA_PIP_PACKAGES=/wheels/{wheel.name}", "PIP_NO_INDEX=1"]
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid else []
    code = "import extra_probe; print(extra_probe.VALUE)"
    result = run(
        containerd,
        DASK_REF,
        *drop,
        *DASK_ENTRYPOINT,
        "python",
        "-c",
        code,
        env=env,
        flags=["--mount", mount],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    where = "/opt/venv" if uid == 0 else "/tmp/dask-extra-packages"
    assert f"installed EXTRA_PIP_PACKAGES into {where}" in result.stderr
