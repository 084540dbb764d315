"""The ``cmdb`` command: run, serve, local Neo4j, schema migrations, demo data; the
discovery, VDI and chargeback groups live in their own modules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from cmdb.cli import chargeback, discovery, vdi
from cmdb.cli.common import connect, connected_settings, fail, in_one_line
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
app.add_typer(vdi.app, name="vdi")
app.add_typer(discovery.app, name="discovery")
app.add_typer(chargeback.app, name="chargeback")


async def _with_db(settings: Settings, action: str) -> None:
    from cmdb.db.migrations import LATEST_VERSION, current_version, migrate

    db = connect(settings)
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
            from cmdb.rollup.repository import recompute_all

            items, changed = await recompute_all(db, echo=typer.echo)
            typer.echo(f"rolled up {items} items; {changed} changed state")
        if action == "demo":
            from cmdb.demo.loader import load_demo

            summary = await load_demo(db, settings, echo=typer.echo)
            typer.echo(summary)
    finally:
        await db.close()


def _run_db(action: str) -> None:
    in_one_line(lambda: asyncio.run(_with_db(connected_settings(), action)))


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
    from cmdb.api.schema import sdl

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
        raise fail("tokens come from the configured identity provider "
                    "(the development issuer is on only in development mode without "
                    "CMDB_AUTH_ISSUER)")
    wanted = [r.strip().lower() for r in roles.split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(ROLES))
    if unknown:
        raise fail(f"unknown roles: {', '.join(unknown)}; known: {', '.join(ROLES)}")
    if not user.strip() or len(user) > 200:
        raise fail("USER must be 1 to 200 characters")
    value = DevIssuer.load(settings).mint(user.strip(), wanted, ttl_s=ttl)
    typer.echo(f'{{"Authorization": "Bearer {value}"}}' if header else value)


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

