"""``archiver verify``: re-read stored files and check them against the catalog (fixity).

Each file is read once from the store: its whole-file SHA-256 and size are compared with the
catalog, and for a WARC every record's block and payload digests are recomputed and
compared with the record's header and the catalog's record rows
(:func:`archiver.fixity.verify_file`, the function the daemon's fixity sampling uses too).
Each check is recorded as a fixity event attributed to the person running the command, and
the run as one ``fixity.verify`` audit entry.

Which files: ``--all``, ``--sample N`` (random), or ``--file ID`` (repeatable). With none
of them a random sample of :data:`DEFAULT_SAMPLE` files is checked: a quick spot check, as
the daemon does; ``--all`` reads the whole store and can take hours on a large one.

Who: officer, legal (a custodian checks the evidence before handing it over) and admin.
The command changes no record: it only adds fixity events and an audit entry.

Exit codes: 0 when every checked file passed, 90 (``IntegrityError``) when any failed or is
missing from the store, 6 when the store cannot be reached (the files checked until then
keep their events), 2 for an unknown file id.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from sqlalchemy import func, select

from archiver import fixity
from archiver.app import App
from archiver.catalog.db import Catalog
from archiver.catalog.models import StoredFile
from archiver.errors import ArchiverError, IntegrityError, StoreError
from archiver.logging import configure_logging

#: Files checked when no selection is given.
DEFAULT_SAMPLE = 10
#: Files checked at once at most; the store and the cores set the useful number.
MAX_WORKERS = 4
#: Failed file ids kept in the audit entry (the fixity events name every one).
AUDIT_IDS = 100
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Selection:
    """Which stored files a run checks, and how they were chosen."""

    how: str  # "all", "sample", "files"
    ids: tuple[str, ...]
    sizes: int  # catalogued bytes of the chosen files, for the progress bar
    stored: int  # stored files in the catalog


@dataclass
class Tally:
    """What a run found, in the order files finished."""

    results: list[fixity.FixityResult]
    seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def bytes(self) -> int:
        return sum(r.size for r in self.results)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else 0.0

    @property
    def bad(self) -> list[fixity.FixityResult]:
        return [r for r in self.results if not r.ok]


def workers() -> int:
    """Files checked at once: one per usable core (zlib and hashlib run outside the GIL)."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def select_files(
    catalog: Catalog, *, check_all: bool, sample: int | None, file_ids: Sequence[str]
) -> Selection:
    """The files to check; an unknown or disposed ``--file`` id is refused before any is."""
    with catalog.reader() as s:
        stored = s.scalar(
            select(func.count()).select_from(StoredFile).where(StoredFile.state == "stored")
        )
        if file_ids:
            wanted = list(dict.fromkeys(file_ids))
            rows = {
                row.id: row
                for row in s.scalars(select(StoredFile).where(StoredFile.id.in_(wanted)))
            }
            for file_id in wanted:
                row = rows.get(file_id)
                if row is None:
                    raise ArchiverError(
                        f"no stored file {file_id!r} in the catalog: a file id is the name of "
                        "a WARC or Parquet file in the store without its extension "
                        "(warc/<series>/<account>/<month>/<id>.warc.gz)"
                    )
                if row.state != "stored":
                    when = row.disposed_at.isoformat() if row.disposed_at else "earlier"
                    raise ArchiverError(
                        f"stored file {file_id} was disposed of ({when}): there is nothing "
                        "left to verify"
                    )
            return Selection(
                "files", tuple(wanted), sum(rows[i].size for i in wanted), int(stored or 0)
            )
        if check_all:
            pairs = s.execute(
                select(StoredFile.id, StoredFile.size)
                .where(StoredFile.state == "stored")
                .order_by(StoredFile.key)
            ).all()
            return Selection(
                "all", tuple(p.id for p in pairs), sum(p.size for p in pairs), int(stored or 0)
            )
    ids = fixity.sample(catalog, DEFAULT_SAMPLE if sample is None else sample)
    with catalog.reader() as s:
        sizes = s.scalar(
            select(func.coalesce(func.sum(StoredFile.size), 0)).where(StoredFile.id.in_(ids))
        )
    return Selection("sample", tuple(ids), int(sizes or 0), int(stored or 0))


@click.command()
@click.option("--all", "check_all", is_flag=True, help="Check every stored file.")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    metavar="N",
    help=f"Check N stored files picked at random (the default, with N={DEFAULT_SAMPLE}).",
)
@click.option(
    "--file",
    "file_ids",
    multiple=True,
    metavar="ID",
    help="Check this stored file, by its id (the file name without .warc.gz or .parquet); "
    "give it again for more files.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(
    app: App, check_all: bool, sample: int | None, file_ids: tuple[str, ...], as_json: bool
) -> None:
    """Re-read stored files and check their SHA-256 and every WARC record's digests.

    Exits 0 when every file checked passed, 90 when any is damaged or missing.
    """
    app.require("officer", "legal", command="verify")
    if sum((check_all, sample is not None, bool(file_ids))) > 1:
        raise click.UsageError("use only one of --all, --sample N and --file ID")
    cfg = app.config
    configure_logging(cfg.logging.level, cfg.logging.format)
    catalog = app.checked_catalog()
    chosen = select_files(catalog, check_all=check_all, sample=sample, file_ids=file_ids)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    tally = Tally([])
    started = time.monotonic()
    try:
        with (
            _quiet(fixity.__name__),
            _progress(err, chosen, enabled=err.is_terminal and not as_json) as advance,
        ):
            for result in fixity.verify_files(
                catalog,
                app.store,
                chosen.ids,
                actor=app.actor.display,
                progress=advance,
                workers=workers(),
            ):
                tally.results.append(result)
                if not result.ok:
                    err.print(escape(failure_line(result)))
    except (StoreError, KeyboardInterrupt) as exc:
        tally.seconds = time.monotonic() - started
        _audit(app, chosen, tally, stopped=str(exc) or type(exc).__name__)
        raise
    tally.seconds = time.monotonic() - started
    _audit(app, chosen, tally, stopped=None)
    if as_json:
        click.echo(json.dumps(report(chosen, tally), indent=2))
    else:
        for line in summary(chosen, tally):
            click.echo(line)
    bad = tally.bad
    if bad:
        raise IntegrityError(
            f"{len(bad)} of {len(tally.results)} files failed the fixity check (each is "
            "recorded as a fixity event): restore them from the City's backup copy of the "
            "store, then run `archiver verify --file ID` for each"
        )


def failure_line(result: fixity.FixityResult) -> str:
    """One line naming the file id, key and, inside a WARC, the first bad record and offset."""
    return f"{result.outcome.upper()} {result.file_id} {result.detail or result.key}"


def summary(chosen: Selection, tally: Tally) -> list[str]:
    """The human-readable report."""
    how = {
        "all": "every stored file",
        "sample": f"a random sample of {chosen.stored} stored files",
        "files": "the files asked for",
    }[chosen.how]
    lines = [
        f"checked {len(tally.results)} files ({how}): {tally.bytes / MB:.1f} MB in "
        f"{tally.seconds:.1f} s ({tally.mb_per_s:.1f} MB/s)",
        f"{tally.count(fixity.PASS)} passed, {tally.count(fixity.FAIL)} failed, "
        f"{tally.count(fixity.MISSING)} missing",
    ]
    with_orphans = [r for r in tally.results if r.orphans]
    if with_orphans:
        lines.append(
            f"{sum(len(r.orphans) for r in with_orphans)} records in {len(with_orphans)} files "
            "are not in the catalog (left by an interrupted capture; not a failure)"
        )
    return lines


def report(chosen: Selection, tally: Tally) -> dict[str, Any]:
    """The ``--json`` report (a stable interface); files in the order they were chosen."""
    order = {file_id: n for n, file_id in enumerate(chosen.ids)}
    return {
        "ok": not tally.bad,
        "selection": chosen.how,
        "stored_files": chosen.stored,
        "checked": len(tally.results),
        "passed": tally.count(fixity.PASS),
        "failed": tally.count(fixity.FAIL),
        "missing": tally.count(fixity.MISSING),
        "bytes": tally.bytes,
        "seconds": round(tally.seconds, 3),
        "mb_per_s": round(tally.mb_per_s, 1),
        "files": [r.as_dict() for r in sorted(tally.results, key=lambda r: order[r.file_id])],
    }


def _audit(app: App, chosen: Selection, tally: Tally, *, stopped: str | None) -> None:
    app.record(
        "fixity.verify",
        subject=chosen.how,
        detail={
            "requested": len(chosen.ids),
            "checked": len(tally.results),
            "passed": tally.count(fixity.PASS),
            "failed": tally.count(fixity.FAIL),
            "missing": tally.count(fixity.MISSING),
            "bytes": tally.bytes,
            "seconds": round(tally.seconds, 3),
            "bad_files": [r.file_id for r in tally.bad][:AUDIT_IDS],
            "files": list(chosen.ids[:AUDIT_IDS]) if chosen.how == "files" else None,
            "stopped": stopped,
        },
    )


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence a logger for the run: each failure is printed by the command, and the
    per-file log lines (meant for the daemon's journal) would only repeat them."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


@contextmanager
def _progress(console: Console, chosen: Selection, *, enabled: bool) -> Iterator[fixity.Progress]:
    """A progress bar with throughput on a terminal; nothing otherwise."""
    if not enabled:
        yield lambda n: None
        return
    columns = (
        TextColumn("verifying"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task: TaskID = bar.add_task("verify", total=chosen.sizes or None)
        yield lambda n: bar.advance(task, n)
