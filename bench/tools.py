"""The programs the benchmark drives besides Python: wrk (the load generator), node and npm (the
Neo4j GraphQL Library peer). scripts/setup installs them; a machine set up before it did gets
them here from Debian's packages, the way setup does, or is told exactly what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

# program -> Debian package that provides it
NEEDED = {"wrk": "wrk", "node": "nodejs", "npm": "npm"}


def missing(which: Callable[[str], str | None] = shutil.which,
            programs: tuple[str, ...] = tuple(NEEDED)) -> dict[str, str]:
    return {prog: NEEDED[prog] for prog in programs if which(prog) is None}


def _apt_prefix() -> list[str] | None:
    """How to run apt-get as root here without a prompt, or None."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    return None


def advice(absent: dict[str, str]) -> str:
    pkgs = " ".join(sorted(set(absent.values())))
    return (f"the benchmark needs {', '.join(sorted(absent))}, not found on PATH.\n"
            f"Install them with ./scripts/setup (which installs them), or with:\n"
            f"    sudo apt-get install {pkgs}\n"
            "(wrk is the load generator; node and npm run the @neo4j/graphql peer.)")


def ensure(install: bool = True, which: Callable[[str], str | None] = shutil.which,
           programs: tuple[str, ...] = tuple(NEEDED)) -> None:
    """Return when every program is on PATH; install the missing ones with apt-get when
    ``install`` and this user can; otherwise print what to install and exit with status 2."""
    absent = missing(which, programs)
    if not absent:
        return
    prefix = _apt_prefix() if install else None
    if prefix is not None:
        pkgs = sorted(set(absent.values()))
        print(f"bench.run: installing {' '.join(pkgs)} with apt-get (missing: "
              f"{', '.join(sorted(absent))})", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        ok = subprocess.run([*prefix, "apt-get", "update", "-qq"], env=env).returncode == 0
        ok = ok and subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", *pkgs],
                                   env=env).returncode == 0
        absent = missing(which, programs)
        if ok and not absent:
            return
    print(advice(absent), file=sys.stderr)
    raise SystemExit(2)
