"""Local Neo4j manager: pure unit tests, plus integration tests on the running test instance."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest

from cmdb.localdb.manager import (
    ENTRY_POINT,
    NEO4J_VERSION,
    AlreadyRunning,
    InstanceSpec,
    LocalNeo4j,
    LocalNeo4jError,
    instance_for,
)
from cmdb.settings import Settings

SPEC = InstanceSpec("unit", bolt_port=45687, http_port=45474, heap="768m", pagecache="256m")


@pytest.fixture
def db(tmp_path: Path) -> LocalNeo4j:
    return LocalNeo4j(tmp_path / "state", SPEC)


def _conf(db: LocalNeo4j) -> dict[str, str]:
    lines = [ln for ln in db.render_conf().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


# ----------------------------------------------------------------------------- conf


def test_conf_ports_on_loopback(db: LocalNeo4j) -> None:
    conf = _conf(db)
    assert conf["server.default_listen_address"] == "127.0.0.1"
    assert conf["server.bolt.listen_address"] == "127.0.0.1:45687"
    assert conf["server.bolt.advertised_address"] == "127.0.0.1:45687"
    assert conf["server.http.listen_address"] == "127.0.0.1:45474"
    assert conf["server.https.enabled"] == "false"
    assert db.uri == "bolt://127.0.0.1:45687"


def test_conf_dirs_are_absolute_and_per_instance(db: LocalNeo4j, tmp_path: Path) -> None:
    conf = _conf(db)
    inst = tmp_path / "state" / "instances" / "unit"
    for key, sub in [
        ("data", "data"),
        ("logs", "logs"),
        ("run", "run"),
        ("plugins", "plugins"),
        ("import", "import"),
    ]:
        assert conf[f"server.directories.{key}"] == str(inst / sub)
    assert db.data_dir == inst / "data"


def test_conf_memory_usage_report_and_auth(db: LocalNeo4j) -> None:
    conf = _conf(db)
    assert conf["server.memory.pagecache.size"] == "256m"
    assert conf["dbms.usage_report.enabled"] == "false"
    assert conf["dbms.security.auth_enabled"] == "true"
    # Heap belongs on the java command line: the conf value would be ignored.
    assert not any(k.startswith("server.memory.heap") for k in conf)


def test_java_command_heap_and_entry_point(db: LocalNeo4j, tmp_path: Path) -> None:
    cmd = db.java_command("/usr/bin/java", tmp_path / "lib")
    assert cmd[0] == "/usr/bin/java"
    assert "-Xms768m" in cmd and "-Xmx768m" in cmd
    assert "--add-opens=java.base/java.nio=ALL-UNNAMED" in cmd
    assert cmd[cmd.index("-cp") + 1] == f"{tmp_path / 'lib'}/*"
    # JVM options before the main class, Neo4j options after it.
    assert cmd.index("-Xmx768m") < cmd.index(ENTRY_POINT) < cmd.index(f"--config-dir={db.conf_dir}")
    assert all(a.startswith("--") for a in cmd[cmd.index(ENTRY_POINT) + 1 :])
    assert f"--config-dir={db.conf_dir}" in cmd


def test_pom_pins_the_same_version() -> None:
    pom = resources.files("cmdb.localdb").joinpath("pom.xml").read_text()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.fromstring(pom)
    assert root.findtext("m:packaging", namespaces=ns) == "pom"
    deps = root.findall("m:dependencies/m:dependency", ns)
    assert [(d.findtext("m:artifactId", namespaces=ns)) for d in deps] == ["neo4j"]
    assert deps[0].findtext("m:version", namespaces=ns) == NEO4J_VERSION


# ----------------------------------------------------------------------------- instance_for


def test_instance_for_dev_uses_settings(tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path,
        local_neo4j_bolt_port=1111,
        local_neo4j_http_port=2222,
        local_neo4j_heap="3g",
        local_neo4j_pagecache="4g",
    )
    db = instance_for(s)
    assert db.spec == InstanceSpec("dev", 1111, 2222, "3g", "4g")
    assert db.home == tmp_path.resolve()


def test_instance_for_test_and_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMDB_TEST_NEO4J_BOLT_PORT", raising=False)
    monkeypatch.delenv("CMDB_TEST_NEO4J_HTTP_PORT", raising=False)
    s = Settings(home=tmp_path)
    assert instance_for(s, "test").spec == InstanceSpec("test", 17687, 17474, "1g", "512m")
    assert instance_for(s, "bench").spec == InstanceSpec("bench", 27687, 27474, "4g", "8g")
    monkeypatch.setenv("CMDB_TEST_NEO4J_BOLT_PORT", "18687")
    monkeypatch.setenv("CMDB_TEST_NEO4J_HTTP_PORT", "18474")
    spec = instance_for(s, "test").spec
    assert (spec.bolt_port, spec.http_port) == (18687, 18474)
    with pytest.raises(LocalNeo4jError, match="unknown instance"):
        instance_for(s, "prod")


# ----------------------------------------------------------------------------- passwords


def test_password_before_first_start_is_an_error(db: LocalNeo4j) -> None:
    with pytest.raises(LocalNeo4jError, match="start it first"):
        db.password()


def test_candidate_is_pending_private_and_stable(db: LocalNeo4j) -> None:
    db.instance_dir.mkdir(parents=True)
    pw = db._password_candidate()
    assert len(pw) >= 24
    assert db.pending_password_file.read_text().strip() == pw
    assert stat.S_IMODE(db.pending_password_file.stat().st_mode) == 0o600
    assert not db.password_file.exists()  # not confirmed until the server accepted it
    # A crash before confirmation must not lose it: the next start reuses it.
    assert db._password_candidate() == pw
    assert not list(db.instance_dir.glob(".*.tmp"))


def test_confirmed_password_wins(db: LocalNeo4j) -> None:
    db.instance_dir.mkdir(parents=True)
    db.password_file.write_text("confirmed\n")
    assert db._password_candidate() == "confirmed"
    assert not db.pending_password_file.exists()
    assert db.password() == "confirmed"


def _fake_server(db: LocalNeo4j, monkeypatch: pytest.MonkeyPatch, server_pw: str) -> list[str]:
    """Stub the two login paths with a fake server whose current password is server_pw."""
    calls: list[str] = []
    state = {"pw": server_pw}

    def accepts(pw: str) -> bool:
        calls.append("accepts")
        return state["pw"] == pw

    def change_default(pw: str) -> bool:
        calls.append("change_default")
        if state["pw"] != "neo4j":
            return False
        state["pw"] = pw
        return True

    monkeypatch.setattr(db, "_accepts", accepts)
    monkeypatch.setattr(db, "_change_default", change_default)
    return calls


def test_first_start_changes_default_then_confirms(
    db: LocalNeo4j, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.instance_dir.mkdir(parents=True)
    calls = _fake_server(db, monkeypatch, server_pw="neo4j")
    pw = db._password_candidate()
    db._settle_password()
    assert calls == ["change_default"]  # no failed login on a fresh server
    assert db.password() == pw
    assert not db.pending_password_file.exists()
    assert stat.S_IMODE(db.password_file.stat().st_mode) == 0o600


def test_crash_after_set_before_confirm_recovers(
    db: LocalNeo4j, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.instance_dir.mkdir(parents=True)
    pw = db._password_candidate()
    calls = _fake_server(db, monkeypatch, server_pw=pw)  # set, but still only pending
    db._settle_password()
    assert calls == ["change_default", "accepts"]
    assert db.password() == pw


def test_wiped_data_gets_stored_password_back(
    db: LocalNeo4j, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.instance_dir.mkdir(parents=True)
    db.password_file.write_text("kept\n")
    calls = _fake_server(db, monkeypatch, server_pw="neo4j")
    db._settle_password()
    assert calls == ["accepts", "change_default"]
    assert db.password() == "kept"


def test_unknown_server_password_is_a_clear_error(
    db: LocalNeo4j, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.instance_dir.mkdir(parents=True)
    pw = db._password_candidate()
    _fake_server(db, monkeypatch, server_pw="someone-elses")
    with pytest.raises(LocalNeo4jError, match="rejects both"):
        db._settle_password()
    assert db.pending_password_file.read_text().strip() == pw  # kept for a retry
    assert not db.password_file.exists()


# ----------------------------------------------------------------------------- install


def _fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mvn_body: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in [("mvn", mvn_body), ("java", "exit 0")]:
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    # Fakes first; the system dirs only for the coreutils the fake mvn uses.
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.delenv("JAVA_HOME", raising=False)


def test_install_is_skipped_when_marked_complete(
    db: LocalNeo4j, monkeypatch: pytest.MonkeyPatch
) -> None:
    (db.install_dir / "lib").mkdir(parents=True)
    (db.install_dir / "INSTALL_COMPLETE").write_text("ok\n")
    monkeypatch.setenv("PATH", "/nonexistent")  # would fail if it tried mvn
    assert db.install(echo=lambda _: None) == db.install_dir / "lib"


def test_install_needs_mvn(db: LocalNeo4j, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LocalNeo4jError, match="mvn"):
        db.install(echo=lambda _: None)


def test_failed_install_never_looks_complete(
    db: LocalNeo4j, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tools(tmp_path, monkeypatch, 'echo "[ERROR] boom"; exit 1')
    with pytest.raises(LocalNeo4jError, match=r"mvn failed with exit code 1 \[ERROR\] boom"):
        db.install(echo=lambda _: None)
    assert not db.install_dir.exists()
    assert not list(db.home.glob(".neo4j-*.tmp*"))


def test_install_renames_a_complete_dir(
    db: LocalNeo4j, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fake mvn: put the main jar where -DoutputDirectory says.
    body = (
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${a#*=}";; esac; done\n'
        f'mkdir -p "$d" && : > "$d/neo4j-{NEO4J_VERSION}.jar"'
    )
    _fake_tools(tmp_path, monkeypatch, body)
    lib = db.install(echo=lambda _: None)
    assert lib == db.install_dir / "lib"
    assert (lib / f"neo4j-{NEO4J_VERSION}.jar").is_file()
    assert (db.install_dir / "INSTALL_COMPLETE").is_file()
    assert (db.install_dir / "pom.xml").is_file()
    assert not list(db.home.glob(".neo4j-*.tmp*"))


# ----------------------------------------------------------------------------- status / stop


def test_status_without_pid_file(db: LocalNeo4j) -> None:
    st = db.status()
    assert (st.running, st.pid, st.uri) == (False, None, "bolt://127.0.0.1:45687")
    assert st.home == db.instance_dir and st.logs_dir == db.logs_dir


def test_stale_pid_of_another_process_is_not_running(db: LocalNeo4j) -> None:
    # Our own pid is alive but is not this Neo4j (pid reuse after a reboot looks like this).
    db.run_dir.mkdir(parents=True)
    db.pid_file.write_text(f"{os.getpid()}\n")
    assert not db.status().running
    assert db.stop(echo=lambda _: None) is False
    assert not db.pid_file.exists()


# ----------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_start_on_running_instance_raises(neo4j_instance: LocalNeo4j) -> None:
    with pytest.raises(AlreadyRunning):
        neo4j_instance.start(wait_s=5, echo=lambda _: None)


@pytest.mark.integration
def test_status_reports_running_with_pid(neo4j_instance: LocalNeo4j) -> None:
    st = neo4j_instance.status()
    assert st.running
    assert st.pid is not None and st.pid == int(neo4j_instance.pid_file.read_text())
    assert st.uri == neo4j_instance.uri
    assert (st.data_dir / "databases").is_dir()
    assert (st.logs_dir / "neo4j.log").is_file()


@pytest.mark.integration
def test_ensure_running_is_a_no_op(neo4j_instance: LocalNeo4j) -> None:
    assert neo4j_instance.ensure_running(echo=lambda _: None) is False


@pytest.mark.integration
def test_generated_password_works_and_auth_is_on(neo4j_instance: LocalNeo4j) -> None:
    from neo4j import GraphDatabase
    from neo4j.exceptions import AuthError

    assert stat.S_IMODE(neo4j_instance.password_file.stat().st_mode) == 0o600
    auth = (neo4j_instance.user, neo4j_instance.password())
    with GraphDatabase.driver(neo4j_instance.uri, auth=auth) as driver:
        records, _, _ = driver.execute_query("RETURN 1 AS one")
        assert records[0]["one"] == 1
    with (
        GraphDatabase.driver(neo4j_instance.uri, auth=("neo4j", "neo4j")) as driver,
        pytest.raises(AuthError),
    ):
        driver.verify_connectivity()
