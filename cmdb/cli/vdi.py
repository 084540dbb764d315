"""``cmdb vdi``: ingest a VDI broker's session feed from a file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from cmdb.cli.common import connect, connected_settings, fail, in_one_line
from cmdb.settings import Settings

app = typer.Typer(help="Virtual desktops: the broker's session feed.", no_args_is_help=True)


async def _vdi_import(settings: Settings, path: Path, fmt: str | None, user: str) -> int:
    from cmdb.db.migrations import migrate
    from cmdb.identity.principal import Principal
    from cmdb.vdi import feed
    from cmdb.vdi.service import VdiService

    kind = feed.FeedFormat(fmt) if fmt else feed.format_for_path(path.name)
    try:
        records = feed.parse(path.read_text(encoding="utf-8"), kind)
    except (OSError, UnicodeDecodeError) as e:
        raise fail(f"cannot read {path}: {e}") from None
    except feed.FeedError as e:
        raise fail(f"{path}: {e}") from None
    db = connect(settings)
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


@app.command("import")
def vdi_import(
    path: Path = typer.Argument(..., help="The feed: .csv, .json or .ndjson/.jsonl."),
    format: str | None = typer.Option(None, "--format", help="csv, json or ndjson "
                                      "(default: from the file name)."),
    user: str = typer.Option("cmdb-cli", help="Who the import is recorded as."),
) -> None:
    """Ingest a VDI broker session feed (logon/logoff events), idempotently. Exits 1 when
    any record was rejected (each is listed with its reason)."""
    if format is not None and format not in ("csv", "json", "ndjson"):
        raise fail("--format must be csv, json or ndjson")
    code = in_one_line(lambda: asyncio.run(_vdi_import(connected_settings(), path, format,
                                                         user)))
    raise typer.Exit(code)
