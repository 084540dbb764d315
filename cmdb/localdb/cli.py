"""``cmdb db ...``: manage the project-local Neo4j server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from cmdb.localdb.install import NEO4J_VERSION
from cmdb.localdb.manager import LocalNeo4j, instance_for
from cmdb.localdb.models import AlreadyRunning

app = typer.Typer(help=f"Manage the project-local Neo4j {NEO4J_VERSION} server (no Docker).")

InstanceOpt = typer.Option("dev", "--instance", "-i", help="Instance: dev, test or bench.")
WaitOpt = typer.Option(180, help="Seconds to wait for Bolt to answer.")
TimeoutOpt = typer.Option(60, help="Seconds before SIGTERM escalates to SIGKILL.")


def _echo(line: str) -> None:
    typer.echo(line)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn any failure into one clear line on stderr and exit 1, never a traceback."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # settings validation, OS errors, LocalNeo4jError, ...
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        typer.echo(f"error: {lines[0]}", err=True)
        raise typer.Exit(1) from None


def _instance(name: str) -> LocalNeo4j:
    from cmdb.settings import get_settings  # deferred: settings errors get the clean path

    return instance_for(get_settings(), name)


@app.command()
def install(instance: str = InstanceOpt) -> None:
    """Download the Neo4j server jars from Maven Central (cached; needs java and mvn)."""
    with _clean_errors():
        lib = _instance(instance).install(echo=_echo)
        typer.echo(f"Neo4j {NEO4J_VERSION} is installed: {lib}")


@app.command()
def start(instance: str = InstanceOpt, wait: float = WaitOpt) -> None:
    """Start the instance (installing first if needed) and wait until Bolt answers."""
    with _clean_errors():
        db = _instance(instance)
        try:
            db.start(wait_s=wait, echo=_echo)
        except AlreadyRunning:
            st = db.status()
            if not st.running:
                raise  # a foreign process holds the port: that is an error
            # Idempotent for scripts: the goal state is reached.
            typer.echo(f"Instance {instance!r} is already running (pid {st.pid}) at {st.uri}")


@app.command()
def stop(instance: str = InstanceOpt, timeout: float = TimeoutOpt) -> None:
    """Stop the instance (clean shutdown, killed after --timeout)."""
    with _clean_errors():
        _instance(instance).stop(timeout_s=timeout, echo=_echo)


@app.command()
def status(instance: str = InstanceOpt) -> None:
    """Show whether the instance runs, where it listens and where its files are."""
    with _clean_errors():
        db = _instance(instance)
        st = db.status()
        state = f"running (pid {st.pid})" if st.running else "stopped"
        typer.echo(f"instance: {st.name}: {state}")
        typer.echo(f"uri:      {st.uri} (user {db.user}, password in {db.password_file})")
        typer.echo(f"browser:  http://127.0.0.1:{db.spec.http_port}/")
        typer.echo(f"data:     {st.data_dir}")
        typer.echo(f"logs:     {st.logs_dir}")
        installed = (db.install_dir / "lib").is_dir()
        typer.echo(f"neo4j:    {NEO4J_VERSION} ({'installed' if installed else 'not installed'})")


@app.command()
def backup(
    instance: str = InstanceOpt,
    to: Path | None = typer.Option(
        None, "--to", help="Dump file to write (default .cmdb/backups/<instance>-<time>.dump)."),
) -> None:
    """Dump the graph to a file, offline: a running instance is stopped and started again."""
    with _clean_errors():
        _instance(instance).backup(to, echo=_echo)


@app.command()
def restore(
    file: Path = typer.Argument(..., help="A dump written by `cmdb db backup`."),
    instance: str = InstanceOpt,
) -> None:
    """Replace the graph with a backup, offline (stopped, loaded, started again). Everything
    written since the backup is lost; users and passwords of the server are kept."""
    with _clean_errors():
        _instance(instance).restore(file, echo=_echo)
