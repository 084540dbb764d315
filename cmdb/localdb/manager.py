"""Install, start, stop and inspect a project-local Neo4j Community server, without Docker.

The server jars come from Maven Central through a pinned pom (package data). Each named
instance ("dev", "test", "bench") has its own conf, data, logs, pid file and generated
password under ``<home>/instances/<name>``. Linux/macOS only (uses process groups and flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from neo4j import Driver, GraphDatabase
from neo4j.exceptions import AuthError, DriverError, TransientError

if TYPE_CHECKING:
    from cmdb.settings import Settings

NEO4J_VERSION = "5.26.30"
ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
# neo4j-admin's main class (in neo4j-command-line); offline dump and load of a database.
ADMIN_ENTRY_POINT = "org.neo4j.cli.AdminTool"
GRAPH_DATABASE = "neo4j"  # the database the API uses; users and passwords live in "system"
DEFAULT_USER = "neo4j"
_DEFAULT_PASSWORD = "neo4j"  # what a fresh Neo4j accepts (expired until changed)
_MARKER = "INSTALL_COMPLETE"

Echo = Callable[[str], None]

# What Neo4j's own launcher passes on Java 17 (server.jvm.additional in the stock neo4j.conf).
# Starting CommunityEntryPoint directly skips the launcher, so we must pass them ourselves.
JVM_FLAGS: tuple[str, ...] = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
)


@dataclass(frozen=True)
class InstanceSpec:
    name: str  # "dev", "test", "bench"
    bolt_port: int
    http_port: int
    heap: str  # JVM size, e.g. "2g"
    pagecache: str  # Neo4j size, e.g. "2g"


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    running: bool
    pid: int | None
    uri: str
    home: Path  # the instance directory (Neo4j's --home-dir)
    data_dir: Path
    logs_dir: Path


class LocalNeo4jError(RuntimeError):
    """A failure with a human-readable first line; later lines (if any) are log context."""


class AlreadyRunning(LocalNeo4jError):
    pass


class LocalNeo4j:
    def __init__(self, home: Path, spec: InstanceSpec) -> None:
        # Absolute, because the paths end up in neo4j.conf and the java command line.
        self.home = Path(home).expanduser().resolve()
        self.spec = spec
        self.install_dir = self.home / f"neo4j-{NEO4J_VERSION}"
        self.instance_dir = self.home / "instances" / spec.name
        self.conf_dir = self.instance_dir / "conf"
        self.data_dir = self.instance_dir / "data"
        self.logs_dir = self.instance_dir / "logs"
        self.run_dir = self.instance_dir / "run"
        self.pid_file = self.run_dir / "neo4j.pid"
        self.password_file = self.instance_dir / "password"
        # Generated but maybe not yet set on the server; see _settle_password.
        self.pending_password_file = self.instance_dir / "password.pending"

    # ----------------------------------------------------------------- properties

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.spec.bolt_port}"

    @property
    def user(self) -> str:
        return DEFAULT_USER

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise LocalNeo4jError(
                f"instance {self.spec.name!r} has no password yet; start it first"
            ) from None

    # ----------------------------------------------------------------- install

    def install(self, echo: Echo = print) -> Path:
        lib = self.install_dir / "lib"
        if (self.install_dir / _MARKER).is_file():
            return lib
        mvn = _require_tool("mvn", "Apache Maven (mvn)")
        _java()  # fail before a 120 MB download that could never run
        self.home.mkdir(parents=True, exist_ok=True)
        with _locked(self.home / f".neo4j-{NEO4J_VERSION}.lock"):
            if (self.install_dir / _MARKER).is_file():  # another process finished meanwhile
                return lib
            # The final dir only ever appears by rename of a complete one, but clear
            # leftovers (e.g. a hand-deleted marker, temp dirs of killed installs).
            shutil.rmtree(self.install_dir, ignore_errors=True)
            for stale in self.home.glob(f".neo4j-{NEO4J_VERSION}.tmp*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".neo4j-{NEO4J_VERSION}.tmp", dir=self.home))
            try:
                self._download(mvn, tmp, echo)
                tmp.rename(self.install_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # no-op after a successful rename
        echo(f"Neo4j {NEO4J_VERSION} installed in {self.install_dir}")
        return lib

    def _download(self, mvn: str, tmp: Path, echo: Echo) -> None:
        pom = tmp / "pom.xml"
        pom.write_bytes(resources.files("cmdb.localdb").joinpath("pom.xml").read_bytes())
        echo(f"Downloading Neo4j {NEO4J_VERSION} and its dependencies from Maven Central ...")
        t0 = time.monotonic()
        cmd = [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp / 'lib'}", "-DincludeScope=runtime",
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out = proc.stdout + proc.stderr
            errors = [ln for ln in out.splitlines() if ln.startswith("[ERROR]")] or [""]
            raise LocalNeo4jError(
                f"mvn failed with exit code {proc.returncode} {errors[0][:300]}\n"
                + _tail_text(out, 25)
            )
        jars = list((tmp / "lib").glob("*.jar"))
        if not (tmp / "lib" / f"neo4j-{NEO4J_VERSION}.jar").is_file():
            raise LocalNeo4jError(f"mvn succeeded but neo4j-{NEO4J_VERSION}.jar is missing")
        (tmp / _MARKER).write_text(f"neo4j {NEO4J_VERSION}\njars {len(jars)}\n")
        echo(f"Fetched {len(jars)} jars in {time.monotonic() - t0:.0f}s")

    # ----------------------------------------------------------------- conf

    def render_conf(self) -> str:
        s, d = self.spec, self.instance_dir
        lines = [
            f"# Generated by cmdb for instance {s.name!r}; rewritten on every start.",
            "server.default_listen_address=127.0.0.1",
            "server.default_advertised_address=127.0.0.1",
            f"server.bolt.listen_address=127.0.0.1:{s.bolt_port}",
            # Advertised = what routing (neo4j://) hands to clients; default would be :7687.
            f"server.bolt.advertised_address=127.0.0.1:{s.bolt_port}",
            "server.bolt.enabled=true",
            "server.http.enabled=true",
            f"server.http.listen_address=127.0.0.1:{s.http_port}",
            f"server.http.advertised_address=127.0.0.1:{s.http_port}",
            "server.https.enabled=false",
            f"server.directories.data={self.data_dir}",
            f"server.directories.logs={self.logs_dir}",
            f"server.directories.run={self.run_dir}",
            f"server.directories.plugins={d / 'plugins'}",
            f"server.directories.import={d / 'import'}",
            "dbms.usage_report.enabled=false",
            "dbms.security.auth_enabled=true",
            f"server.memory.pagecache.size={s.pagecache}",
            f"# Heap is -Xms/-Xmx{s.heap} on the java command line: heap settings here are",
            "# only honoured by Neo4j's launcher script, which we do not use.",
        ]
        return "\n".join(lines) + "\n"

    def java_command(self, java: str, lib: Path) -> list[str]:
        heap = self.spec.heap
        return [
            java, f"-Xms{heap}", f"-Xmx{heap}", *JVM_FLAGS,
            f"-XX:ErrorFile={self.logs_dir}/hs_err_pid%p.log",  # JVM crash dumps, not in cwd
            "-cp", f"{lib}/*", ENTRY_POINT,
            f"--home-dir={self.instance_dir}", f"--config-dir={self.conf_dir}",
        ]  # fmt: skip

    # ----------------------------------------------------------------- lifecycle

    def status(self) -> InstanceStatus:
        pid = self._live_pid()
        return InstanceStatus(
            name=self.spec.name,
            running=pid is not None,
            pid=pid,
            uri=self.uri,
            home=self.instance_dir,
            data_dir=self.data_dir,
            logs_dir=self.logs_dir,
        )

    def ensure_running(self, echo: Echo = print) -> bool:
        if self.status().running:
            return False
        try:
            self.start(echo=echo)
        except AlreadyRunning:
            if self.status().running:  # lost a race with a concurrent start
                return False
            raise
        return True

    def start(self, wait_s: float = 180, echo: Echo = print) -> InstanceStatus:
        lib = self.install(echo)
        java = _java()
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.instance_dir / ".lock"):
            pid = self._live_pid()
            if pid is not None:
                raise AlreadyRunning(
                    f"instance {self.spec.name!r} is already running (pid {pid}) at {self.uri}"
                )
            if _port_open(self.spec.bolt_port):
                raise AlreadyRunning(
                    f"something already listens on bolt port {self.spec.bolt_port} "
                    f"(not instance {self.spec.name!r} by its pid file)"
                )
            if _port_open(self.spec.http_port):
                raise LocalNeo4jError(f"http port {self.spec.http_port} is already in use")
            for sub in ("conf", "data", "logs", "run", "plugins", "import"):
                (self.instance_dir / sub).mkdir(parents=True, exist_ok=True)
            (self.conf_dir / "neo4j.conf").write_text(self.render_conf())
            self._password_candidate()  # persisted before the server can ever see it
            # Where this start's log output begins, to report only its own errors.
            log_offsets = {p: _size(p) for p in self._log_files()}

            echo(f"Starting Neo4j {NEO4J_VERSION} instance {self.spec.name!r} on {self.uri} ...")
            t0 = time.monotonic()
            console = self.logs_dir / "console.log"
            with console.open("a") as out:
                out.write(f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
            pid = _spawn_detached(self.java_command(java, lib), console)
            self.pid_file.write_text(f"{pid}\n")
            try:
                self._wait_ready(pid, wait_s, log_offsets)
            except BaseException:
                _kill_group(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                self.pid_file.unlink(missing_ok=True)
                raise
        echo(f"Neo4j is up after {time.monotonic() - t0:.0f}s (pid {pid}).")
        for line in self._new_lines(log_offsets, (" ERROR ",))[:5]:
            echo(f"warning: {line}")
        echo(f"  uri:      {self.uri} (user {self.user}, password in {self.password_file})")
        echo(f"  browser:  http://127.0.0.1:{self.spec.http_port}/")
        echo(f"  data:     {self.data_dir}")
        echo(f"  logs:     {self.logs_dir}")
        return self.status()

    def stop(self, timeout_s: float = 60, echo: Echo = print) -> bool:
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.instance_dir / ".lock"):
            pid = self._live_pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)  # stale after a crash or reboot
                echo(f"Instance {self.spec.name!r} is not running.")
                return False
            echo(f"Stopping instance {self.spec.name!r} (pid {pid}) ...")
            _kill_group(pid, signal.SIGTERM)  # Neo4j checkpoints and shuts down cleanly
            if not self._wait_gone(pid, timeout_s):
                echo(f"Still running after {timeout_s:.0f}s; killing it.")
                _kill_group(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 10):
                    raise LocalNeo4jError(f"pid {pid} survived SIGKILL")
            self.pid_file.unlink(missing_ok=True)
            echo("Stopped.")
            return True

    # ----------------------------------------------------------------- backup

    def admin_command(self, java: str, lib: Path, *args: str) -> list[str]:
        """``neo4j-admin <args>`` for this instance, run from the installed jars."""
        return [java, "-Xmx512m", "-Dfile.encoding=UTF-8", "-cp", f"{lib}/*",
                ADMIN_ENTRY_POINT, *args]

    def backup(self, to: Path | None = None, echo: Echo = print) -> Path:
        """Dump the graph database to ``to`` (default ``<home>/backups/<instance>-<time>.dump``)
        offline: a running instance is stopped for the dump and started again."""
        if not (self.data_dir / "databases" / GRAPH_DATABASE).is_dir():
            raise LocalNeo4jError(f"instance {self.spec.name!r} has no database to back up "
                                  "(start it once first)")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = Path(to or self.home / "backups" / f"{self.spec.name}-{stamp}.dump")
        target = target.expanduser().resolve()
        if target.exists():
            raise LocalNeo4jError(f"{target} already exists; choose another file")
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._offline(echo), tempfile.TemporaryDirectory(
                prefix=".dump-", dir=target.parent) as tmp:
            echo(f"Dumping database {GRAPH_DATABASE!r} of instance {self.spec.name!r} ...")
            self._admin("database", "dump", GRAPH_DATABASE, f"--to-path={tmp}")
            os.replace(Path(tmp) / f"{GRAPH_DATABASE}.dump", target)
        echo(f"Backup written to {target} ({_size(target)} bytes).")
        return target

    def restore(self, dump: Path, echo: Echo = print) -> None:
        """Replace the graph database with a dump made by ``backup``, offline: a running
        instance is stopped for the load and started again. Everything written since the
        dump is lost; users and passwords (the system database) are kept."""
        dump = Path(dump).expanduser().resolve()
        if not dump.is_file():
            raise LocalNeo4jError(f"no backup file at {dump}")
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        with self._offline(echo), tempfile.TemporaryDirectory(
                prefix=".load-", dir=self.instance_dir) as tmp:
            # neo4j-admin loads <database>.dump from a folder: link the file in under that name.
            os.symlink(dump, Path(tmp) / f"{GRAPH_DATABASE}.dump")
            echo(f"Loading {dump} into instance {self.spec.name!r} ...")
            self._admin("database", "load", GRAPH_DATABASE, f"--from-path={tmp}",
                        "--overwrite-destination=true")
        echo("Restore done.")

    @contextlib.contextmanager
    def _offline(self, echo: Echo) -> Iterator[None]:
        """Stopped while the block runs (and no one may start it); started again after it
        if it was running, whether or not the block succeeded."""
        was_running = self.status().running
        if was_running:
            self.stop(echo=echo)
        try:
            with _locked(self.instance_dir / ".lock"):
                if self._live_pid() is not None or _port_open(self.spec.bolt_port):
                    raise LocalNeo4jError(f"instance {self.spec.name!r} was started again by "
                                          "another process; nothing was done")
                yield
        finally:
            if was_running:
                self.start(echo=echo)

    def _admin(self, *args: str) -> None:
        lib = self.install()
        for sub in ("conf", "data", "logs", "run"):
            (self.instance_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "neo4j.conf").write_text(self.render_conf())
        env = {**os.environ, "NEO4J_HOME": str(self.instance_dir),
               "NEO4J_CONF": str(self.conf_dir)}
        proc = subprocess.run(self.admin_command(_java(), lib, *args), env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out = "\n".join(ln for ln in (proc.stdout + proc.stderr).splitlines()
                            if not ln.startswith("Files:"))
            errors = [ln for ln in out.splitlines() if "ERROR" in ln or "rror:" in ln] \
                or [ln for ln in out.splitlines() if ln.strip()][-1:] or [""]
            raise LocalNeo4jError(
                f"neo4j-admin {' '.join(args[:2])} failed with exit code {proc.returncode}: "
                f"{errors[0].strip()[:300]}\n{_tail_text(out, 25)}")

    # ----------------------------------------------------------------- internals

    def _live_pid(self) -> int | None:
        """The pid from the pid file if that process is alive and is *this* instance."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our dead child (else a zombie)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by someone else; the cmdline check decides
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return not Path("/proc/self").exists()  # no procfs (macOS): trust the pid
        except OSError:
            return False
        # Guards against pid reuse after a reboot or crash; a zombie has an empty cmdline.
        return ENTRY_POINT in cmdline and f"--config-dir={self.conf_dir}" in cmdline

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._is_ours(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def _wait_ready(self, pid: int, wait_s: float, log_offsets: dict[Path, int]) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            code = _exit_code(pid)
            failure = None
            if code is not None:
                failure = f"Neo4j exited with code {code} while starting"
            elif time.monotonic() >= deadline:
                failure = f"Neo4j did not answer on {self.uri} within {wait_s:g}s (killed it)"
            if failure:
                # First line names the cause, so a one-line CLI error is still useful.
                # JVM errors ("Error: Could not create the Java VM") carry no ERROR level.
                causes = self._new_lines(log_offsets, ("Exception", " ERROR ", "Error"))
                cause = f": {causes[0][:300]}" if causes else ""
                raise LocalNeo4jError(
                    f"{failure}{cause} (logs: {self.logs_dir})\n{self._log_tail()}"
                )
            if _port_open(self.spec.bolt_port):
                try:
                    self._settle_password()
                    with self._driver(self.password()) as driver:
                        driver.execute_query("RETURN 1")  # Bolt answers a real query
                    return
                except (DriverError, TransientError):
                    pass  # bolt is up but databases are still starting
            time.sleep(0.5)

    def _driver(self, password: str) -> Driver:
        return GraphDatabase.driver(
            self.uri, auth=(self.user, password), connection_timeout=5, max_connection_pool_size=1
        )

    def _password_candidate(self) -> str:
        """The confirmed password, else the pending one, else a new pending one (0600)."""
        for path in (self.password_file, self.pending_password_file):
            if path.is_file():
                return path.read_text().strip()
        pw = secrets.token_urlsafe(24)
        _write_private(self.pending_password_file, pw + "\n")
        return pw

    def _settle_password(self) -> None:
        """Make the server accept our stored password, then mark it confirmed.

        The pending file is written before the password is set on the server, so after a
        crash between the two the server may hold either the default or our password: try
        both. The likely one goes first, to avoid a failed login (Neo4j locks an account
        for a few seconds after 3 of them). A wiped data dir also gets its password back.
        """
        pw = self._password_candidate()
        fresh = not self.password_file.is_file()
        attempts = (
            (self._change_default, self._accepts)
            if fresh
            else (self._accepts, self._change_default)
        )
        if not any(attempt(pw) for attempt in attempts):
            raise LocalNeo4jError(
                f"Neo4j rejects both the stored password ({self.password_file}) and the "
                f"default one; to reset, stop the instance and delete {self.data_dir} "
                "(this deletes its data)"
            )
        if self.pending_password_file.exists():
            os.replace(self.pending_password_file, self.password_file)

    def _accepts(self, pw: str) -> bool:
        try:
            with self._driver(pw) as driver:
                driver.verify_connectivity()  # logs in, so a wrong password raises here
        except AuthError:
            return False
        return True

    def _change_default(self, pw: str) -> bool:
        # The default password is expired: the only thing it may do is change itself.
        try:
            with self._driver(_DEFAULT_PASSWORD) as driver:
                driver.execute_query(
                    "ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
                    old=_DEFAULT_PASSWORD,
                    new=pw,
                    database_="system",
                )
        except AuthError:
            return False
        return True

    def _log_files(self) -> list[Path]:
        return [self.logs_dir / n for n in ("console.log", "neo4j.log", "debug.log")]

    def _new_lines(self, offsets: dict[Path, int], markers: tuple[str, ...]) -> list[str]:
        """Log lines containing a marker written since ``offsets`` (Neo4j may log an ERROR
        and carry on, so a successful start still reports them)."""
        found: list[str] = []
        for path, offset in offsets.items():
            with contextlib.suppress(OSError), path.open("rb") as f:
                f.seek(offset if _size(path) >= offset else 0)  # rotated: read it all
                for raw in f:
                    line = raw.decode(errors="replace").strip()
                    if any(m in line for m in markers):
                        found.append(f"{path.name}: {line}")
        return found

    def _log_tail(self, lines: int = 25) -> str:
        parts = []
        for path in (self.logs_dir / "console.log", self.logs_dir / "neo4j.log"):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                parts.append(f"--- {path} ---\n{_tail_text(text, lines)}")
        return "\n".join(parts)


# --------------------------------------------------------------------- factory


def _test_memory() -> tuple[str, str]:
    """Heap and page cache of the test instances: 1g / 512m unless CMDB_TEST_NEO4J_HEAP or
    CMDB_TEST_NEO4J_PAGECACHE say otherwise (a benchmark on a test instance may need more).
    Read when the instance starts; a running instance keeps what it started with."""
    sizes = []
    for var, default in (("CMDB_TEST_NEO4J_HEAP", "1g"), ("CMDB_TEST_NEO4J_PAGECACHE", "512m")):
        value = os.environ.get(var, default).strip().lower()
        if not re.fullmatch(r"[1-9][0-9]*[kmg]", value):
            raise LocalNeo4jError(f"{var}={value!r} is not a size such as 512m or 2g")
        sizes.append(value)
    return sizes[0], sizes[1]


def instance_for(settings: Settings, name: str = "dev") -> LocalNeo4j:
    if name == "dev":
        spec = InstanceSpec(
            "dev",
            settings.local_neo4j_bolt_port,
            settings.local_neo4j_http_port,
            settings.local_neo4j_heap,
            settings.local_neo4j_pagecache,
        )
    elif name == "test":
        # Off the default ports so tests never touch a dev server; overridable for parallel CI.
        bolt = int(os.environ.get("CMDB_TEST_NEO4J_BOLT_PORT", "17687"))
        http = int(os.environ.get("CMDB_TEST_NEO4J_HTTP_PORT", "17474"))
        spec = InstanceSpec("test", bolt, http, *_test_memory())
    elif re.fullmatch(r"test-[1-9]", name):
        # Extra test instances, so parallel test runs on one machine do not share a graph.
        n = int(name[-1])
        spec = InstanceSpec(name, 17687 + 10 * n, 17474 + 10 * n, *_test_memory())
    elif name == "bench":
        spec = InstanceSpec("bench", 27687, 27474, "4g", "8g")
    else:
        raise LocalNeo4jError(f"unknown instance {name!r}; use dev, test, test-1..9 or bench")
    return LocalNeo4j(settings.home, spec)


# --------------------------------------------------------------------- helpers


def _require_tool(cmd: str, what: str) -> str:
    path = shutil.which(cmd)
    if path is None:
        raise LocalNeo4jError(f"{what} is required but '{cmd}' is not on PATH")
    return path


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require_tool("java", "Java 17 or 21")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise installs/starts/stops across processes (e.g. parallel test sessions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn_detached(argv: list[str], log: Path) -> int:
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


def _exit_code(pid: int) -> int | None:
    """Exit code of our child ``pid`` once it has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1  # not our child (any more): already reaped elsewhere
    return os.waitstatus_to_exitcode(status) if done else None


def _kill_group(pid: int, sig: signal.Signals) -> None:
    # The server leads its own session, hence its own process group.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically: never a half-written or world-readable password."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
