"""Operating-system helpers of the local Neo4j manager: tools on PATH, file locks, ports,
detached processes and private files. Linux/macOS only (process groups and flock)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

from cmdb.localdb.models import LocalNeo4jError


def require_tool(cmd: str, what: str) -> str:
    path = shutil.which(cmd)
    if path is None:
        raise LocalNeo4jError(f"{what} is required but '{cmd}' is not on PATH")
    return path


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return require_tool("java", "Java 17 or 21")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise installs/starts/stops across processes (e.g. parallel test sessions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def spawn_detached(argv: list[str], log: Path) -> int:
    """Run argv in its own session (it outlives us and ignores our Ctrl-C), stdin from
    /dev/null, stdout+stderr appended to ``log``; return its pid.

    posix_spawn rather than Popen: an abandoned Popen whose child still runs emits a
    ResourceWarning when collected, which breaks test runs with -W error.
    """
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        return os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(fd)


def exit_code(pid: int) -> int | None:
    """Exit code of our child ``pid`` once it has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1  # not our child (any more): already reaped elsewhere
    return os.waitstatus_to_exitcode(status) if done else None


def kill_group(pid: int, sig: signal.Signals) -> None:
    # The server leads its own session, hence its own process group.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically: never a half-written or world-readable password."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
