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


# --- profile "replicas": two API replicas behind nginx (docs/scaling.md) -----------------

REPLICAS = ("api-1", "api-2")
NGINX_CONF = ROOT / "deploy" / "nginx-replicas.conf"


def _nginx_conf() -> str:
    """The proxy's config without comments."""
    return "\n".join(line.split("#", 1)[0] for line in
                     NGINX_CONF.read_text(encoding="utf-8").splitlines())


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, f"not an nginx time: {value!r}"
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(int(match.group(1)) * factor)


def _size_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG])?", value)
    assert match, f"not an nginx size: {value!r}"
    unit = (match.group(2) or "").lower()
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def _directive(conf: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"(?m)^\s*{name}\s+([^;]+);", conf)]


def test_replicas_run_the_api_service_as_it_is() -> None:
    api = _service("api")
    assert "profiles" not in api, "the single api service starts without a profile"
    for name in REPLICAS:
        replica = _service(name)
        assert replica.get("profiles") == ["replicas"], name
        for key in ("image", "command", "environment", "healthcheck"):
            assert replica.get(key) == api.get(key), f"{name}.{key} differs from api.{key}"
        assert not replica.get("ports"), f"{name} must be reached through the proxy only"
    first = _service("api-1").get("depends_on") or {}
    assert (first.get("neo4j") or {}).get("condition") == "service_healthy"
    # The second starts once the first is healthy (it has migrated the schema by then).
    second = _service("api-2").get("depends_on") or {}
    assert (second.get("api-1") or {}).get("condition") == "service_healthy"


def test_replicas_proxy_balances_both_and_passes_websocket_upgrades() -> None:
    proxy = _service("proxy")
    assert proxy.get("profiles") == ["replicas"]
    assert str(proxy.get("image", "")).startswith("nginx:")
    depends = proxy.get("depends_on") or {}
    for name in REPLICAS:
        assert (depends.get(name) or {}).get("condition") == "service_healthy", name
    ports = [str(p) for p in proxy.get("ports") or []]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
    mounts = [str(v) for v in proxy.get("volumes") or []]
    assert any(m.startswith("./deploy/nginx-replicas.conf:/etc/nginx/conf.d/")
               and m.split(":")[1].endswith(".conf") for m in mounts), mounts
    assert (proxy.get("healthcheck") or {}).get("test"), "proxy needs a healthcheck"

    conf = _nginx_conf()
    api_port = str(_service("api")["environment"]["CMDB_API_PORT"])
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream, "no upstream block"
    servers = re.findall(r"server\s+([\w.-]+):(\d+)", upstream.group(2))
    assert servers == [(name, api_port) for name in REPLICAS], servers
    assert _directive(conf, "proxy_pass") == [f"http://{upstream.group(1)}"]
    listen = _directive(conf, "listen")
    assert listen and all(p.rsplit(":", 1)[1] == listen[0] for p in ports), (listen, ports)

    # Websockets (GraphQL subscriptions): HTTP/1.1 upstream with Upgrade and Connection passed.
    assert _directive(conf, "proxy_http_version") == ["1.1"]
    headers = dict(h.split(None, 1) for h in _directive(conf, "proxy_set_header"))
    assert headers.get("Upgrade") == "$http_upgrade", headers
    connection = headers.get("Connection", "")
    mapped = re.search(r"map\s+\$http_upgrade\s+\$(\w+)\s*\{([^}]*)\}", conf)
    assert mapped and connection == f"${mapped.group(1)}", (connection, mapped)
    assert re.search(r"default\s+upgrade\s*;", mapped.group(2)), mapped.group(2)
    # A quiet subscription carries only the server's websocket pings (uvicorn's default
    # interval, which `cmdb serve` keeps): the proxy must wait longer than that.
    import inspect

    import uvicorn

    ping_s = inspect.signature(uvicorn.Config).parameters["ws_ping_interval"].default
    [read_timeout] = _directive(conf, "proxy_read_timeout")
    assert _seconds(read_timeout) > ping_s, (read_timeout, ping_s)

    # Every body an endpoint accepts passes the proxy.
    from cmdb.alarms import http as alarms_http
    from cmdb.chargeback import http as chargeback_http
    from cmdb.discovery import http as discovery_http
    from cmdb.vdi import http as vdi_http

    largest = max(m.MAX_BODY_BYTES for m in (alarms_http, chargeback_http, discovery_http,
                                             vdi_http))
    [body] = _directive(conf, "client_max_body_size")
    assert _size_bytes(body) >= largest, (body, largest)
