"""The ``cmdb`` command: run, serve, local Neo4j, schema migrations, demo data."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from cmdb.localdb.cli import app as db_app
from cmdb.settings import Settings, get_settings

if TYPE_CHECKING:
    from cmdb.db.driver import Database
    from cmdb.discovery.parsers import Parsed

T = TypeVar("T")

app = typer.Typer(help="CMDB and service-catalogue API.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
schema_app = typer.Typer(help="Graph schema migrations and the GraphQL SDL.",
                         no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
health_app = typer.Typer(help="Health roll-up.", no_args_is_help=True)
discovery_app = typer.Typer(help="Discovery sources, imports and the staleness sweep.",
                            no_args_is_help=True)
app.add_typer(db_app, name="db", help="The project-managed local Neo4j.")
app.add_typer(schema_app, name="schema")
app.add_typer(demo_app, name="demo")
app.add_typer(health_app, name="health")
vdi_app = typer.Typer(help="Virtual desktops: the broker's session feed.", no_args_is_help=True)
app.add_typer(vdi_app, name="vdi")
app.add_typer(discovery_app, name="discovery")
chargeback_app = typer.Typer(help="Chargeback: usage files, period calculation, exports.",
                             no_args_is_help=True)
app.add_typer(chargeback_app, name="chargeback")


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


def _in_one_line(run: Callable[[], T], by_field: bool = False) -> T:
    """``run()``, an error reported as one line, not a traceback; ``by_field``: a domain
    error as its fields and messages."""
    from cmdb.core.models import DomainError

    try:
        return run()
    except typer.Exit:
        raise
    except Exception as e:
        if by_field and isinstance(e, DomainError):
            raise _fail("; ".join((f"{x.field}: " if x.field else "") + x.message
                                  for x in e.errors)) from None
        raise _fail(f"{type(e).__name__}: {e}") from None


def _connect(settings: Settings) -> Database:
    from cmdb.db.driver import Database

    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    return Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                            settings.neo4j_database, settings.neo4j_tx_timeout_s)


async def _with_db(settings: Settings, action: str) -> None:
    from cmdb.db.migrations import LATEST_VERSION, current_version, migrate

    db = _connect(settings)
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
    _in_one_line(lambda: asyncio.run(_with_db(connected_settings(), action)))


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
    db = _connect(settings)
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
    code = _in_one_line(lambda: asyncio.run(_vdi_import(connected_settings(), path, format,
                                                         user)))
    raise typer.Exit(code)


def _run_with_db(work: Any) -> None:
    """Connect (migrating first), run ``work(db, settings)``, close; errors as one line."""
    from cmdb.db.migrations import migrate

    async def main(settings: Settings) -> None:
        db = _connect(settings)
        try:
            await migrate(db)
            await work(db, settings)
        finally:
            await db.close()

    _in_one_line(lambda: asyncio.run(main(connected_settings())), by_field=True)


# The command line runs with the database's own credentials: it acts as an administrator.
def _cli_principal() -> Any:
    from cmdb.identity.principal import Principal

    return Principal(user=f"cli:{os.environ.get('USER', 'local')}", roles=frozenset({"admin"}))


@discovery_app.command("source")
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
            raise _fail(f"--attribute-trust {pair!r} must look like attributes.os=90")
        per[key.strip()] = int(value)

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.discovery.service import DiscoveryService

        src = await DiscoveryService(db, settings).register_source(_cli_principal(), {
            "name": name, "kind": kind.upper(), "trust": trust, "attribute_trust": per,
            "description": description})
        typer.echo(f"source {src.name}: {src.kind.value}, trust {src.trust}"
                   + (f", per attribute {src.attribute_trust}" if src.attribute_trust else ""))

    _run_with_db(work)


@discovery_app.command("sources")
def discovery_sources() -> None:
    """List the registered discovery sources."""

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.discovery.service import DiscoveryService

        for src in await DiscoveryService(db, settings).sources():
            typer.echo(f"{src.name:24} {src.kind.value:12} trust {src.trust:3}  "
                       f"{src.attribute_trust or ''}")

    _run_with_db(work)


def _parse_discovered(file: Path, format: str, mapping: list[str], mapping_file: Path | None,
                      ci_class: str | None, cluster: str | None) -> Parsed:
    """The records of a discovery file, options checked; a bad option or file stops here."""
    from cmdb.discovery.parsers import Format, ParseError, parse, parse_mapping
    from cmdb.items.models import CIClass

    try:
        fmt = Format(format.lower())
    except ValueError:
        raise _fail(f"--format must be one of {', '.join(f.value for f in Format)}") from None
    cls = None
    if ci_class:
        key = ci_class.upper()
        found = CIClass[key] if key in CIClass.__members__ else next(
            (c for c in CIClass if c.value.lower() == ci_class.lower()), None)
        if found is None:
            raise _fail(f"--class {ci_class!r} is not a CI class")
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
        raise _fail(f"{file}: {e}") from None


@discovery_app.command("import")
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
            _cli_principal(), source, parsed.items, parsed.relations,
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

    _run_with_db(work)


@discovery_app.command("sweep")
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
            _cli_principal(),
            timedelta(days=stale_after_days) if stale_after_days else None,
            timedelta(days=retire_after_days) if retire_after_days else None)
        typer.echo(f"stale {r.stale}, retired {r.retired}; relations stale "
                   f"{r.relations_stale}, retired {r.relations_retired}")

    _run_with_db(work)


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


@chargeback_app.command("import-usage")
def chargeback_import_usage(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    format: str | None = typer.Option(None, "--format", "-f", help="json, ndjson or csv "
                                      "(default: from the file's extension)."),
    batch_size: int = typer.Option(5000, help="Records per transaction (all or nothing)."),
) -> None:
    """Import a usage file: progress as it goes, counts and rejections at the end."""
    from cmdb.chargeback.usagefile import UsageFormat, iter_usage

    ext = file.suffix.lower().lstrip(".")
    name = (format or {"jsonl": "ndjson"}.get(ext, ext)).lower()
    try:
        fmt = UsageFormat(name)
    except ValueError:
        raise _fail(f"--format must be one of {', '.join(f.value for f in UsageFormat)}") \
            from None
    if not 1 <= batch_size <= 50_000:
        raise _fail("--batch-size must be between 1 and 50000")
    # CSV and NDJSON are read a batch at a time, so a file of millions of records needs the
    # memory of one batch; the total for the progress line comes from counting lines first.
    try:
        with file.open(encoding="utf-8") as f:
            total = sum(1 for line in f if line.strip()) - (fmt is UsageFormat.CSV)
    except UnicodeDecodeError as e:
        raise _fail(f"{file}: {e}") from None

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.chargeback.service import ChargebackService

        svc = ChargebackService(db, settings)
        typer.echo(f"{file.name}: {total:,} usage records", err=True)
        created = duplicates = late = done = 0
        rejected: list[Any] = []
        with file.open(encoding="utf-8") as f:
            batch: list[Any] = []
            records = iter_usage(fmt, f)
            while True:
                batch = list(itertools.islice(records, batch_size))
                if not batch:
                    break
                result = await svc.ingest_usage(_cli_principal(), batch, batch_size=batch_size)
                created, duplicates = created + result.created, duplicates + result.duplicates
                late += result.late
                rejected.extend(r.model_copy(update={"index": r.index + done})
                                for r in result.rejected)
                done += len(batch)
                typer.echo(f"  {done:,}/{max(total, done):,} records", err=True)
        typer.echo(f"created {created}, duplicates {duplicates}, late {late}, rejected "
                   f"{len(rejected)}")
        for r in rejected:
            typer.echo(f"  rejected {r.index} ({r.record_id or '-'}): {r.reason}")

    # A malformed line met half way stops the import there; the batches before it are stored
    # (each batch is one transaction) and a rerun skips them as duplicates.
    _run_with_db(work)


@chargeback_app.command("calculate")
def chargeback_calculate(
    period: str = typer.Argument(..., help="The month, YYYY-MM."),
    close: bool = typer.Option(False, "--close", help="Freeze the period afterwards."),
) -> None:
    """Calculate (and optionally close) a charge period; prints its totals."""

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.chargeback.service import ChargebackService

        svc = ChargebackService(db, settings)
        result = await (svc.close if close else svc.calculate)(_cli_principal(), period)
        await svc.settle()
        state = "closed" if result.period.status == "CLOSED" else "open"
        typer.echo(f"{period} ({state}): {result.lines:,} lines, total {result.total} "
                   f"{result.period.currency}, allocated {result.allocated}, unallocated "
                   f"{result.unallocated}{'' if result.changed else ' (unchanged)'}")
        for w in result.warnings:
            typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)

    _run_with_db(work)


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
