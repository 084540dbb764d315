"""The ``cmdb`` command: run, serve, local Neo4j, schema migrations, demo data."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import typer

from cmdb.localdb.cli import app as db_app
from cmdb.settings import Settings, get_settings

app = typer.Typer(help="CMDB and service-catalogue API.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
schema_app = typer.Typer(help="Graph schema migrations and the GraphQL SDL.",
                         no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
health_app = typer.Typer(help="Health roll-up.", no_args_is_help=True)
app.add_typer(db_app, name="db", help="The project-managed local Neo4j.")
app.add_typer(schema_app, name="schema")
app.add_typer(demo_app, name="demo")
app.add_typer(health_app, name="health")
vdi_app = typer.Typer(help="Virtual desktops: the broker's session feed.", no_args_is_help=True)
app.add_typer(vdi_app, name="vdi")


def connected_settings(start_local: bool = True) -> Settings:
    """Settings pointing at a Neo4j: the configured one, else the local development instance.

    The local instance's URI and password go into the environment so that API worker
    processes read the same settings.
    """
    settings = get_settings()
    if settings.neo4j_uri is not None:
        return settings
    from cmdb.localdb.manager import instance_for

    instance = instance_for(settings, "dev")
    if start_local:
        instance.ensure_running(echo=typer.echo)
    os.environ["CMDB_NEO4J_URI"] = instance.uri
    os.environ["CMDB_NEO4J_USER"] = instance.user
    os.environ["CMDB_NEO4J_PASSWORD"] = instance.password()
    get_settings.cache_clear()
    return get_settings()


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


async def _with_db(settings: Settings, action: str) -> None:
    from cmdb.db.driver import Database
    from cmdb.db.migrations import LATEST_VERSION, current_version, migrate

    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    db = Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                          settings.neo4j_database, settings.neo4j_tx_timeout_s)
    try:
        if action in ("migrate", "demo"):
            applied = await migrate(db)
            for m in applied:
                typer.echo(f"applied migration {m.version}: {m.name}")
            typer.echo(f"schema at version {await current_version(db)} (latest {LATEST_VERSION})")
        if action == "status":
            from cmdb.db.migrations import pending

            have = await current_version(db)
            todo = await pending(db)
            typer.echo(f"schema at version {have}; latest is {LATEST_VERSION}"
                       + (f" ({len(todo)} pending: run `cmdb schema migrate`)" if todo else ""))
        if action == "recompute":
            from cmdb.health.repository import recompute_all

            items, changed = await recompute_all(db, echo=typer.echo)
            typer.echo(f"rolled up {items} items; {changed} changed state")
        if action == "demo":
            from cmdb.demo.loader import load_demo

            summary = await load_demo(db, settings, echo=typer.echo)
            typer.echo(summary)
    finally:
        await db.close()


def _run_db(action: str) -> None:
    try:
        settings = connected_settings()
        asyncio.run(_with_db(settings, action))
    except typer.Exit:
        raise
    except Exception as e:  # one clear line, not a traceback
        raise _fail(f"{type(e).__name__}: {e}") from None


@schema_app.command("migrate")
def schema_migrate() -> None:
    """Apply pending graph-schema migrations (constraints and indexes)."""
    _run_db("migrate")


@schema_app.command("status")
def schema_status() -> None:
    """Show the applied schema version."""
    _run_db("status")


@schema_app.command("export")
def schema_export(path: Path = typer.Argument(Path("schema.graphql"))) -> None:
    """Write the GraphQL SDL (the committed schema.graphql)."""
    from cmdb.schema import sdl

    path.write_text(sdl())
    typer.echo(f"wrote {path}")


@health_app.command("recompute")
def health_recompute() -> None:
    """Roll up every item's health from scratch (after a bulk load or an upgrade)."""
    _run_db("recompute")


@demo_app.command("load")
def demo_load() -> None:
    """Load the demo enterprise through the service layer (idempotent)."""
    _run_db("demo")


@app.command()
def token(
    user: str = typer.Argument(..., help="The user the token is for (its preferred_username)."),
    roles: str = typer.Option("", help="Comma-separated roles, e.g. operator,approver."),
    ttl: int | None = typer.Option(None, help="Lifetime in seconds (default 8 hours)."),
    header: bool = typer.Option(False, help="Print a GraphiQL Headers JSON instead."),
) -> None:
    """Print a development bearer token for USER with ROLES (development mode only)."""
    from cmdb.identity.devissuer import DevIssuer
    from cmdb.identity.principal import ROLES

    settings = get_settings()
    if not settings.uses_dev_issuer:
        raise _fail("tokens come from the configured identity provider "
                    "(the development issuer is on only in development mode without "
                    "CMDB_AUTH_ISSUER)")
    wanted = [r.strip().lower() for r in roles.split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(ROLES))
    if unknown:
        raise _fail(f"unknown roles: {', '.join(unknown)}; known: {', '.join(ROLES)}")
    if not user.strip() or len(user) > 200:
        raise _fail("USER must be 1 to 200 characters")
    value = DevIssuer.load(settings).mint(user.strip(), wanted, ttl_s=ttl)
    typer.echo(f'{{"Authorization": "Bearer {value}"}}' if header else value)


async def _vdi_import(settings: Settings, path: Path, fmt: str | None, user: str) -> int:
    from cmdb.db.driver import Database
    from cmdb.db.migrations import migrate
    from cmdb.identity.principal import Principal
    from cmdb.vdi import feed
    from cmdb.vdi.service import VdiService

    kind = feed.FeedFormat(fmt) if fmt else feed.format_for_path(path.name)
    try:
        records = feed.parse(path.read_text(encoding="utf-8"), kind)
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"cannot read {path}: {e}") from None
    except feed.FeedError as e:
        raise _fail(f"{path}: {e}") from None
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    db = Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                          settings.neo4j_database, settings.neo4j_tx_timeout_s)
    try:
        await migrate(db)
        # The command line acts as a discovery agent (ingest only).
        principal = Principal(user=user, roles=frozenset({"discovery_agent"}))
        report = await VdiService(db, settings).ingest(records, principal)
    finally:
        await db.close()
    for r in report.rejections:
        where = f"line {r.index + 2}" if kind is feed.FeedFormat.CSV else f"record {r.index}"
        typer.echo(f"rejected {where}" + (f" (event {r.event_id})" if r.event_id else "")
                   + f": {r.field + ': ' if r.field else ''}{r.reason}")
    counts = report.counts
    typer.echo(f"{path.name}: {len(report.results)} records; {counts['stored']} stored, "
               f"{counts['duplicate']} duplicate, {counts['rejected']} rejected")
    return 1 if counts["rejected"] else 0


@vdi_app.command("import")
def vdi_import(
    path: Path = typer.Argument(..., help="The feed: .csv, .json or .ndjson/.jsonl."),
    format: str | None = typer.Option(None, "--format", help="csv, json or ndjson "
                                      "(default: from the file name)."),
    user: str = typer.Option("cmdb-cli", help="Who the import is recorded as."),
) -> None:
    """Ingest a VDI broker session feed (logon/logoff events), idempotently. Exits 1 when
    any record was rejected (each is listed with its reason)."""
    if format is not None and format not in ("csv", "json", "ndjson"):
        raise _fail("--format must be csv, json or ndjson")
    try:
        settings = connected_settings()
        code = asyncio.run(_vdi_import(settings, path, format, user))
    except typer.Exit:
        raise
    except Exception as e:  # one clear line, not a traceback
        raise _fail(f"{type(e).__name__}: {e}") from None
    raise typer.Exit(code)


def _serve(host: str | None, port: int | None, workers: int | None, banner: bool) -> None:
    import uvicorn

    settings = get_settings()
    host = host or settings.api_host
    port = port or settings.api_port
    workers = workers or settings.api_workers
    if banner:
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/graphql"
        typer.secho(f"\nCMDB API: {url}" + ("  (GraphiQL: open it in a browser)"
                                          if settings.is_development else ""),
                    fg=typer.colors.GREEN)
        if settings.uses_dev_issuer:
            from cmdb.identity.devissuer import DevIssuer

            token = DevIssuer.load(settings).mint("admin", ["admin"])
            typer.echo("Every call needs a bearer token. For GraphiQL's Headers tab (an admin; "
                       "`cmdb token USER --roles ...` makes others):")
            typer.echo(f'{{"Authorization": "Bearer {token}"}}\n')
    uvicorn.run("cmdb.app:create_app_from_env", factory=True, host=host, port=port,
                workers=workers, log_config=None, access_log=False)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Listen address (CMDB_API_HOST)."),
    port: int | None = typer.Option(None, help="Port (CMDB_API_PORT)."),
    workers: int | None = typer.Option(None, help="Worker processes (CMDB_API_WORKERS)."),
) -> None:
    """Serve the API; migrates the schema first. Uses the local Neo4j if no URI is set."""
    _run_db("migrate")
    _serve(host, port, workers, banner=True)


@app.command()
def run(
    host: str | None = typer.Option(None),
    port: int | None = typer.Option(None),
    workers: int | None = typer.Option(None),
) -> None:
    """Everything at once: local Neo4j, migrations, demo data, then the API with GraphiQL."""
    _run_db("demo")
    _serve(host, port, workers, banner=True)


if __name__ == "__main__":
    app()
