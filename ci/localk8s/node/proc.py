"""Commands, long-running daemons (no systemd here) and deadline-bounded waits."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[node] {msg}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float | None = 300,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output attached."""
    args = [str(a) for a in argv]
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.run(
        args,
        capture_output=capture,
        text=True,
        env=full_env,
        input=input_text,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        out = (proc.stdout or "") + (proc.stderr or "")
        raise RuntimeError(f"{shlex.join(args)} exited {proc.returncode}: {out.strip()[-2000:]}")
    return proc


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns something other than None/False, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except Exception as exc:  # the probe's failure is the reason we keep waiting
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


# -- daemons ---------------------------------------------------------------------------------

# Popen objects of the daemons this process started, kept process-wide: a running child's Popen
# must not be garbage-collected (ResourceWarning), and ``stop_daemon`` reaps it.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _pidfile(pid_dir: Path, name: str) -> Path:
    return pid_dir / f"{name}.json"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def daemon_pid(pid_dir: Path, name: str) -> int | None:
    """The pid of our daemon ``name`` if it is alive and still the process we started."""
    path = _pidfile(pid_dir, name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = int(data["pid"])
    cmd = _cmdline(pid)
    if not cmd or cmd[0] != data["exe"]:
        return None
    try:
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return None
    except (OSError, IndexError):
        return None
    return pid


def start_daemon(
    pid_dir: Path,
    name: str,
    argv: Sequence[str | Path],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``argv`` detached (own session), output appended to ``log_path``; idempotent."""
    existing = daemon_pid(pid_dir, name)
    if existing is not None:
        log(f"{name} already running (pid {existing})")
        return existing
    args = [str(a) for a in argv]
    pid_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"\n==== {time.strftime('%H:%M:%S')} {shlex.join(args)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    _pidfile(pid_dir, name).write_text(json.dumps({"pid": proc.pid, "exe": args[0]}))
    log(f"started {name} (pid {proc.pid}), log {log_path}")
    return proc.pid


def stop_daemon(pid_dir: Path, name: str, *, timeout: float = 20, group: bool = False) -> None:
    """SIGTERM our daemon (only if the pidfile still names it), SIGKILL after ``timeout``.

    ``group``: signal its whole process group (it leads its own session), e.g. socat's forks.
    """
    path = _pidfile(pid_dir, name)
    pid = daemon_pid(pid_dir, name)
    if pid is None:  # already exited: reap it if it was our child
        try:
            exited = _CHILDREN.pop(int(json.loads(path.read_text())["pid"]), None)
        except (OSError, ValueError, KeyError):
            exited = None
        if exited is not None:
            exited.wait(10)
    else:
        log(f"stopping {name} (pid {pid})")
        if group:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
        child = _CHILDREN.pop(pid, None)
        if child is not None:  # started by this process: wait on it (and reap it)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{name} ignored SIGTERM; sending SIGKILL")
                child.kill()
                child.wait(10)
        else:
            deadline = time.monotonic() + timeout
            while daemon_pid(pid_dir, name) is not None and time.monotonic() < deadline:
                time.sleep(0.1)  # polling interval of a deadline loop
            if daemon_pid(pid_dir, name) is not None:
                log(f"{name} ignored SIGTERM; sending SIGKILL")
                os.kill(pid, signal.SIGKILL)
                wait_for(f"{name} to exit", lambda: daemon_pid(pid_dir, name) is None, timeout=10)
    path.unlink(missing_ok=True)
