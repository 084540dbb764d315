"""Install the Neo4j Community server from Maven Central through a pinned pom (package data),
once per version under the manager's home."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

from cmdb.localdb.models import Echo, LocalNeo4jError
from cmdb.localdb.system import java_binary, locked, require_tool, tail_text

NEO4J_VERSION = "5.26.30"
_MARKER = "INSTALL_COMPLETE"


def install_server(home: Path, echo: Echo) -> Path:
    """Install Neo4j under ``home`` once (other processes wait for it); return its jars."""
    install_dir = home / f"neo4j-{NEO4J_VERSION}"
    lib = install_dir / "lib"
    if (install_dir / _MARKER).is_file():
        return lib
    mvn = require_tool("mvn", "Apache Maven (mvn)")
    java_binary()  # fail before a 120 MB download that could never run
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / f".neo4j-{NEO4J_VERSION}.lock"):
        if (install_dir / _MARKER).is_file():  # another process finished meanwhile
            return lib
        # The final dir only ever appears by rename of a complete one, but clear
        # leftovers (e.g. a hand-deleted marker, temp dirs of killed installs).
        shutil.rmtree(install_dir, ignore_errors=True)
        for stale in home.glob(f".neo4j-{NEO4J_VERSION}.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".neo4j-{NEO4J_VERSION}.tmp", dir=home))
        try:
            _download(mvn, tmp, echo)
            tmp.rename(install_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # no-op after a successful rename
    echo(f"Neo4j {NEO4J_VERSION} installed in {install_dir}")
    return lib


def _download(mvn: str, tmp: Path, echo: Echo) -> None:
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
            + tail_text(out, 25)
        )
    jars = list((tmp / "lib").glob("*.jar"))
    if not (tmp / "lib" / f"neo4j-{NEO4J_VERSION}.jar").is_file():
        raise LocalNeo4jError(f"mvn succeeded but neo4j-{NEO4J_VERSION}.jar is missing")
    (tmp / _MARKER).write_text(f"neo4j {NEO4J_VERSION}\njars {len(jars)}\n")
    echo(f"Fetched {len(jars)} jars in {time.monotonic() - t0:.0f}s")
