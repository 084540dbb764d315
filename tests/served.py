"""The product as users start it: ``cmdb serve`` (or ``cmdb run``) in a process of its own, on a
free loopback port, against the session's test Neo4j.

Tests of what a user reaches over the network (HTTP, websockets, GraphiQL in a browser, two
replicas) talk to such a process over a real socket, never to the app in-process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from cmdb.localdb.manager import LocalNeo4j

ROOT = Path(__file__).resolve().parent.parent
CMDB = Path(sys.executable).parent / "cmdb"  # the console script the README runs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def neo4j_env(instance: LocalNeo4j) -> dict[str, str]:
    """The settings that point a served process at the test Neo4j."""
    return {"CMDB_NEO4J_URI": instance.uri, "CMDB_NEO4J_USER": instance.user,
            "CMDB_NEO4J_PASSWORD": instance.password()}


class Served:
    """One API process. ``url`` is its base URL; its output is kept in ``log_path``."""

    def __init__(self, command: str, env: Mapping[str, str], port: int, log_path: Path,
                 process: subprocess.Popen[bytes]) -> None:
        self.command = command
        self.env = dict(env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/graphql"
        self.log_path = log_path
        self.process = process

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"`cmdb {self.command}` exited with {self.process.returncode}:"
                                   f"\n{self.log()[-4000:]}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.2)
        raise TimeoutError(f"`cmdb {self.command}` not ready in {timeout_s} s ({last}):\n"
                           f"{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            # Ctrl-C, as a user stops it; the whole group, so uvicorn's workers go too.
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@contextlib.contextmanager
def served(instance: LocalNeo4j, command: str = "serve", *, env: Mapping[str, str] | None = None,
           home: Path | None = None, args: tuple[str, ...] = (),
           ready_timeout_s: float = 120) -> Iterator[Served]:
    """Start ``cmdb <command>`` on a free port against ``instance``; stop it afterwards.

    ``home`` is the process's CMDB_HOME (default: the project's ``.cmdb``, so tokens from
    ``tests.auth`` are trusted by it); ``env`` adds or overrides settings.
    """
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CMDB_")}
    full_env.update({"CMDB_HOME": str(home or ROOT / ".cmdb"), "CMDB_API_HOST": "127.0.0.1",
                     "CMDB_API_PORT": str(port), "CMDB_LOG_JSON": "true",
                     **neo4j_env(instance), **(env or {})})
    with tempfile.NamedTemporaryFile(prefix=f"cmdb-{command}-", suffix=".log",
                                     delete=False) as log_file:
        log_path = Path(log_file.name)
        process = subprocess.Popen([str(CMDB), command, *args], cwd=ROOT, env=full_env,
                                   stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Served(command, full_env, port, log_path, process)
    try:
        server.wait_ready(ready_timeout_s)
        yield server
    finally:
        server.stop()
        log_path.unlink(missing_ok=True)
