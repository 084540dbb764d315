"""Static checks of the Docker route: docker-compose.yml, Dockerfile.

Docker itself is not needed: ``docker-compose config`` only validates and interpolates
the file. Absence of the ``docker-compose`` binary skips that one test locally, but is a
failure under CI (``CI=true``), where the test script installs it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmdb.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
POM = ROOT / "cmdb" / "localdb" / "pom.xml"

# Used only while neither cmdb.localdb.manager nor its pom.xml can tell us the pin.
DEFAULT_NEO4J_PIN = "5.26"
REQUIRED_CONNECTION_VARS = (
    "CMDB_NEO4J_URI",
    "CMDB_NEO4J_USER",
    "CMDB_NEO4J_PASSWORD",
    "CMDB_NEO4J_DATABASE",
)


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def _service(name: str) -> dict[str, Any]:
    services = _compose().get("services") or {}
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service = services[name]
    assert isinstance(service, dict)
    return service


def _env_names(service: dict[str, Any]) -> set[str]:
    """Variable names of a service's ``environment`` (mapping or ``KEY=value`` list)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k) for k in env}
    return {str(item).split("=", 1)[0] for item in env}


def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _neo4j_version_from_pom(pom: Path) -> str | None:
    """The Neo4j version pom.xml pins: a ``*neo4j*version`` property, else the version
    of an ``org.neo4j*`` dependency (``${property}`` references resolved)."""
    root = ET.fromstring(pom.read_text(encoding="utf-8"))
    props: dict[str, str] = {}
    for el in root.iter():
        if _strip_ns(el.tag) == "properties":
            for prop in el:
                props[_strip_ns(prop.tag)] = (prop.text or "").strip()

    def resolve(value: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: props.get(m.group(1), m.group(0)), value)

    candidates = [
        value
        for name, value in props.items()
        if "neo4j" in name.lower() and name.lower().endswith("version")
    ]
    for el in root.iter():
        if _strip_ns(el.tag) not in {"dependency", "artifactItem", "plugin"}:
            continue
        fields = {_strip_ns(child.tag): (child.text or "").strip() for child in el}
        if fields.get("groupId", "").startswith("org.neo4j") and fields.get("version"):
            candidates.append(fields["version"])
    for candidate in candidates:
        version = resolve(candidate)
        if re.match(r"\d+\.\d+", version):
            return version
    return None


def _pinned_neo4j_version() -> str:
    """The Neo4j version of the local route: cmdb.localdb.manager, else its pom.xml."""
    try:
        manager = importlib.import_module("cmdb.localdb.manager")
        return str(manager.NEO4J_VERSION)
    except Exception:  # absent, half-written or broken: fall back, never fail on it
        pass
    if POM.is_file():
        version = _neo4j_version_from_pom(POM)
        assert version, f"{POM} exists but names no Neo4j version"
        return version
    return DEFAULT_NEO4J_PIN


def _major_minor(version: str) -> str:
    match = re.match(r"(\d+)\.(\d+)", version)
    assert match, f"not a Neo4j version: {version!r}"
    return f"{match.group(1)}.{match.group(2)}"


# --- docker-compose config -------------------------------------------------------------


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f docker-compose.yml config -q``; skip/fail if it is missing."""
    binary = shutil.which("docker-compose")
    if binary is None:
        reason = "docker-compose binary not found (Debian package: docker-compose)"
        if _on_ci():
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    return subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_config_is_valid() -> None:
    proc = _compose_config({**os.environ, "CMDB_NEO4J_PASSWORD": "compose-config-check-7f3a"})
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stdout}\n{proc.stderr}"


def test_compose_requires_password() -> None:
    proc = _compose_config({k: v for k, v in os.environ.items() if k != "CMDB_NEO4J_PASSWORD"})
    assert proc.returncode != 0, "compose must refuse to start without CMDB_NEO4J_PASSWORD"
    assert "CMDB_NEO4J_PASSWORD" in proc.stdout + proc.stderr


# --- structure -------------------------------------------------------------------------


def test_neo4j_image_matches_local_pin() -> None:
    image = str(_service("neo4j").get("image", ""))
    name, _, tag = image.partition(":")
    assert name == "neo4j", image
    expected = f"{_major_minor(_pinned_neo4j_version())}-community"
    assert tag == expected, f"neo4j image tag {tag!r} != {expected!r} (local route's pin)"


def test_neo4j_has_healthcheck_and_local_ports() -> None:
    neo4j = _service("neo4j")
    healthcheck = neo4j.get("healthcheck") or {}
    assert healthcheck.get("test"), "neo4j needs a healthcheck"
    assert not healthcheck.get("disable"), "neo4j healthcheck is disabled"
    for port in neo4j.get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), f"neo4j port {port!r} not bound to loopback"
    assert "NEO4J_AUTH" in _env_names(neo4j)


def test_api_waits_for_healthy_neo4j() -> None:
    depends_on = _service("api").get("depends_on")
    assert isinstance(depends_on, dict), "api.depends_on must use the long form with a condition"
    assert "neo4j" in depends_on
    condition = (depends_on["neo4j"] or {}).get("condition")
    assert condition == "service_healthy", f"api waits for neo4j {condition!r}, not healthy"


def test_api_environment_uses_settings_names() -> None:
    api = _service("api")
    names = _env_names(api)
    known = {f"CMDB_{field.upper()}" for field in Settings.model_fields}
    unknown = sorted(n for n in names if n.startswith("CMDB_") and n not in known)
    assert not unknown, f"api environment names not in cmdb.settings.Settings: {unknown}"
    missing = [n for n in REQUIRED_CONNECTION_VARS if n not in names]
    assert not missing, f"api environment lacks {missing}"
    for port in api.get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), f"api port {port!r} not bound to loopback"
    assert (api.get("healthcheck") or {}).get("test"), "api needs a healthcheck"


# --- Dockerfile ------------------------------------------------------------------------


def _dockerfile_cmd() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical = re.sub(r"\\\r?\n", " ", text)
    cmds = [
        line.strip()[3:].strip()
        for line in logical.splitlines()
        if line.strip().upper().startswith("CMD ")
    ]
    assert cmds, "Dockerfile has no CMD"
    cmd = json.loads(cmds[-1])  # the last CMD wins; require the exec (JSON) form
    assert isinstance(cmd, list) and cmd and all(isinstance(p, str) for p in cmd)
    return cmd


def test_dockerfile_cmd_is_a_project_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    cmd = _dockerfile_cmd()
    assert cmd[0] in scripts, f"Dockerfile CMD {cmd!r} is not in [project.scripts] {scripts}"
    command = _service("api").get("command")
    if command is not None:
        parts = command.split() if isinstance(command, str) else list(command)
        assert parts[0] in scripts, f"api command {parts!r} is not in [project.scripts]"
