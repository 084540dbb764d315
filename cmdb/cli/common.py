"""What every ``cmdb`` command shares: the settings of a reachable Neo4j, a connection, the
caller the command line acts as, and errors reported in one line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from cmdb.settings import Settings, get_settings

if TYPE_CHECKING:
    from cmdb.db.driver import Database

T = TypeVar("T")


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


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def in_one_line(run: Callable[[], T], by_field: bool = False) -> T:
    """``run()``, an error reported as one line, not a traceback; ``by_field``: a domain
    error as its fields and messages."""
    from cmdb.core.models import DomainError

    try:
        return run()
    except typer.Exit:
        raise
    except Exception as e:
        if by_field and isinstance(e, DomainError):
            raise fail("; ".join((f"{x.field}: " if x.field else "") + x.message
                                  for x in e.errors)) from None
        raise fail(f"{type(e).__name__}: {e}") from None


def connect(settings: Settings) -> Database:
    from cmdb.db.driver import Database

    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    return Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                            settings.neo4j_database, settings.neo4j_tx_timeout_s)


def run_with_db(work: Callable[[Database, Settings], Awaitable[None]]) -> None:
    """Connect (migrating first), run ``work(db, settings)``, close; errors as one line."""
    from cmdb.db.migrations import migrate

    async def main(settings: Settings) -> None:
        db = connect(settings)
        try:
            await migrate(db)
            await work(db, settings)
        finally:
            await db.close()

    in_one_line(lambda: asyncio.run(main(connected_settings())), by_field=True)


# The command line runs with the database's own credentials: it acts as an administrator.
def cli_principal() -> Any:
    from cmdb.identity.principal import Principal

    return Principal(user=f"cli:{os.environ.get('USER', 'local')}", roles=frozenset({"admin"}))
