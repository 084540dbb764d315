"""``cmdb discovery``: register and list sources, import a file of discovered CIs, sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cmdb.cli.common import cli_principal, fail, run_with_db
from cmdb.settings import Settings

if TYPE_CHECKING:
    from cmdb.discovery.parsers import Parsed

app = typer.Typer(help="Discovery sources, imports and the staleness sweep.",
                  no_args_is_help=True)


@app.command("source")
def discovery_source(
    name: str = typer.Argument(..., help="Source name, e.g. nmap-dc1."),
    kind: str = typer.Option("OTHER", help="SCANNER, HYPERVISOR, CLOUD, AGENT, SPREADSHEET, "
                             "VDI_BROKER or OTHER."),
    trust: int = typer.Option(50, help="0-100: how far the source is trusted."),
    attribute_trust: list[str] = typer.Option(
        [], "--attribute-trust", "-a",
        help="Trust for one attribute, e.g. -a attributes.os=90 -a serialNumber=100."),
    description: str | None = typer.Option(None),
) -> None:
    """Register a discovery source, or change its trust."""
    per: dict[str, int] = {}
    for pair in attribute_trust:
        key, sep, value = pair.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise fail(f"--attribute-trust {pair!r} must look like attributes.os=90")
        per[key.strip()] = int(value)

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.discovery.service import DiscoveryService

        src = await DiscoveryService(db, settings).register_source(cli_principal(), {
            "name": name, "kind": kind.upper(), "trust": trust, "attribute_trust": per,
            "description": description})
        typer.echo(f"source {src.name}: {src.kind.value}, trust {src.trust}"
                   + (f", per attribute {src.attribute_trust}" if src.attribute_trust else ""))

    run_with_db(work)


@app.command("sources")
def discovery_sources() -> None:
    """List the registered discovery sources."""

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.discovery.service import DiscoveryService

        for src in await DiscoveryService(db, settings).sources():
            typer.echo(f"{src.name:24} {src.kind.value:12} trust {src.trust:3}  "
                       f"{src.attribute_trust or ''}")

    run_with_db(work)


def _parse_discovered(file: Path, format: str, mapping: list[str], mapping_file: Path | None,
                      ci_class: str | None, cluster: str | None) -> Parsed:
    """The records of a discovery file, options checked; a bad option or file stops here."""
    from cmdb.discovery.parsers import Format, ParseError, parse, parse_mapping
    from cmdb.items.models import CIClass

    try:
        fmt = Format(format.lower())
    except ValueError:
        raise fail(f"--format must be one of {', '.join(f.value for f in Format)}") from None
    cls = None
    if ci_class:
        key = ci_class.upper()
        found = CIClass[key] if key in CIClass.__members__ else next(
            (c for c in CIClass if c.value.lower() == ci_class.lower()), None)
        if found is None:
            raise fail(f"--class {ci_class!r} is not a CI class")
        cls = found
    try:
        text = file.read_text(encoding="utf-8")
        columns = parse_mapping(mapping) if mapping else None
        if mapping_file is not None:
            loaded = json.loads(mapping_file.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict) or not all(
                isinstance(v, str) for v in loaded.values()
            ):
                raise ParseError(f"{mapping_file} must be a JSON object of column -> field")
            columns = {str(k): v for k, v in loaded.items()}
        return parse(fmt, text, mapping=columns, ci_class=cls, cluster=cluster)
    except (ParseError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(f"{file}: {e}") from None


@app.command("import")
def discovery_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    source: str = typer.Option(..., "--source", "-s", help="A registered source."),
    format: str = typer.Option(..., "--format", "-f",
                               help="nmap (-oX XML), csv, kubectl (get nodes,pods -o json), "
                               "json (the batch payload) or ndjson."),
    mapping: list[str] = typer.Option(
        [], "--map", "-m",
        help="CSV: Column=field[:int|float|bool|list], e.g. -m 'Serial=identifiers."
        "serialNumber' -m 'CPUs=attributes.cpu:int'. Without it headers are field names."),
    mapping_file: Path | None = typer.Option(
        None, "--mapping-file", exists=True, dir_okay=False,
        help="CSV: a JSON object of column -> field[:type], instead of --map."),
    ci_class: str | None = typer.Option(None, "--class", help="CI class for records without "
                                        "one (nmap: default SERVER; csv; kubectl nodes)."),
    cluster: str | None = typer.Option(None, help="kubectl: the cluster's name, recorded on "
                                       "every record."),
    batch_size: int = typer.Option(5000, help="Records per transaction (all or nothing)."),
    no_merge: bool = typer.Option(False, "--no-merge", help="Reject duplicates instead of "
                                  "merging them."),
) -> None:
    """Import a file of discovered CIs: progress as it goes, counts at the end."""
    parsed = _parse_discovered(file, format, mapping, mapping_file, ci_class, cluster)
    for problem in parsed.problems:
        typer.secho(f"warning: {problem}", fg=typer.colors.YELLOW, err=True)

    def progress(done: int, total: int) -> None:
        typer.echo(f"  {done:,}/{total:,} records", err=True)

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.discovery.service import DiscoveryService

        typer.echo(f"{file.name}: {len(parsed.items):,} items, {len(parsed.relations):,} "
                   f"relations from {source}", err=True)
        result = await DiscoveryService(db, settings).ingest(
            cli_principal(), source, parsed.items, parsed.relations,
            merge_duplicates=not no_merge, batch_size=batch_size, progress=progress)
        c = result.counts()
        typer.echo(f"created {c['created']}, updated {c['updated']}, unchanged "
                   f"{c['unchanged']}, merged {c['merged']}, rejected {c['rejected']} "
                   f"(values kept from more trusted sources: {c['suppressed']}); relations "
                   f"created {c['relationsCreated']}, updated {c['relationsUpdated']}, "
                   f"unchanged {c['relationsUnchanged']}")
        for r in result.rejected:
            where = f" [{r.field}]" if r.field else ""
            typer.echo(f"  rejected {r.record} {r.index}{where}: {r.reason}")

    run_with_db(work)


@app.command("sweep")
def discovery_sweep(
    stale_after_days: float | None = typer.Option(None, help="Default: "
                                                  "CMDB_DISCOVERY_STALE_AFTER_DAYS (7)."),
    retire_after_days: float | None = typer.Option(None, help="Default: "
                                                   "CMDB_DISCOVERY_RETIRE_AFTER_DAYS (30)."),
) -> None:
    """Mark CIs no source has seen for a while stale, and retire long-stale ones."""
    from datetime import timedelta

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.discovery.service import DiscoveryService

        r = await DiscoveryService(db, settings).sweep(
            cli_principal(),
            timedelta(days=stale_after_days) if stale_after_days else None,
            timedelta(days=retire_after_days) if retire_after_days else None)
        typer.echo(f"stale {r.stale}, retired {r.retired}; relations stale "
                   f"{r.relations_stale}, retired {r.relations_retired}")

    run_with_db(work)
