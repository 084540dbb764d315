"""``cmdb chargeback``: import a usage file, calculate (and close) a charge period."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import typer

from cmdb.cli.common import cli_principal, fail, run_with_db
from cmdb.settings import Settings

app = typer.Typer(help="Chargeback: usage files, period calculation, exports.",
                  no_args_is_help=True)


@app.command("import-usage")
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
        raise fail(f"--format must be one of {', '.join(f.value for f in UsageFormat)}") \
            from None
    if not 1 <= batch_size <= 50_000:
        raise fail("--batch-size must be between 1 and 50000")
    # CSV and NDJSON are read a batch at a time, so a file of millions of records needs the
    # memory of one batch; the total for the progress line comes from counting lines first.
    try:
        with file.open(encoding="utf-8") as f:
            total = sum(1 for line in f if line.strip()) - (fmt is UsageFormat.CSV)
    except UnicodeDecodeError as e:
        raise fail(f"{file}: {e}") from None

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
                result = await svc.ingest_usage(cli_principal(), batch, batch_size=batch_size)
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
    run_with_db(work)


@app.command("calculate")
def chargeback_calculate(
    period: str = typer.Argument(..., help="The month, YYYY-MM."),
    close: bool = typer.Option(False, "--close", help="Freeze the period afterwards."),
) -> None:
    """Calculate (and optionally close) a charge period; prints its totals."""

    async def work(db: Any, settings: Settings) -> None:
        from cmdb.chargeback.service import ChargebackService

        svc = ChargebackService(db, settings)
        result = await (svc.close if close else svc.calculate)(cli_principal(), period)
        await svc.settle()
        state = "closed" if result.period.status == "CLOSED" else "open"
        typer.echo(f"{period} ({state}): {result.lines:,} lines, total {result.total} "
                   f"{result.period.currency}, allocated {result.allocated}, unallocated "
                   f"{result.unallocated}{'' if result.changed else ' (unchanged)'}")
        for w in result.warnings:
            typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)

    run_with_db(work)
