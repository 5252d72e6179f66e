"""``archiver catalog``: schema upgrade, rebuild from the store, and row-level comparison."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from archiver.app import App
from archiver.catalog import Catalog, require_current
from archiver.catalog import upgrade as upgrade_schema
from archiver.catalog.db import redacted
from archiver.catalog.schema import schema_state
from archiver.errors import ArchiverError, IntegrityError
from archiver.rebuild import compare as compare_catalogs
from archiver.rebuild import rebuild as rebuild_catalog
from archiver.rebuild.compare import Comparison
from archiver.rebuild.render import comparison_lines, rebuild_lines
from archiver.store import ensure_layout

#: ``--compare`` given without a URL: compare with the configured (live) catalog.
CONFIGURED = "\0configured"


@click.group()
def catalog() -> None:
    """Manage the catalog database."""


@catalog.command()
@click.pass_obj
def upgrade(app: App) -> None:
    """Create or migrate the catalog schema (serialized by a lock) and initialise the store."""
    app.require("admin", command="catalog upgrade")
    store = app.checked_store()
    before = schema_state(app.catalog)
    after = upgrade_schema(app.catalog)
    ensure_layout(store, create=True)
    app.record(
        "catalog.upgrade",
        subject=redacted(app.catalog.engine.url),
        detail={"from": before.current, "to": after.current},
    )
    if before.current == after.current:
        click.echo(f"catalog already at schema revision {after.current}")
    else:
        click.echo(f"catalog upgraded from {before.current or 'empty'} to {after.current}")


@catalog.command()
@click.option(
    "--into",
    "into",
    required=True,
    metavar="URL",
    help="An empty database to rebuild into (sqlite:///path or postgresql://user@host/db); "
    "its schema is created, and one that holds anything is refused.",
)
@click.option(
    "--compare",
    "compare_with",
    is_flag=False,
    flag_value=CONFIGURED,
    default=None,
    metavar="[URL]",
    help="Then compare the rebuilt catalog row by row with the catalog at URL (without URL: "
    "the configured one); exit 1 on any difference.",
)
@click.option(
    "--skip-damaged",
    is_flag=True,
    help="Leave out files that fail verification (each is listed; exit 1) instead of "
    "stopping with nothing written (exit 90).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_obj
def rebuild(
    app: App, into: str, compare_with: str | None, skip_damaged: bool, as_json: bool
) -> None:
    """Recreate every catalog fact from the store alone, into an empty database.

    Items, versions, media, states, record pointers and stored files are rebuilt from the
    WARC, Parquet and control objects, each verified against its SHA-256 on the way;
    orphan records (written, never committed) are dropped. Runs, checkpoints, leases,
    fixity events and audit entries are operational state and are not rebuilt.
    """
    app.require("admin", command="catalog rebuild")
    where = redacted(into)
    target = Catalog.open(into)
    try:
        app.spool_dir.mkdir(parents=True, exist_ok=True)
        try:
            with _progress(not as_json) as progress:
                report = rebuild_catalog(
                    app.store,
                    target,
                    actor=app.actor.display,
                    accounts=app.config.accounts,
                    skip_damaged=skip_damaged,
                    tmp_dir=app.spool_dir,
                    progress=progress,
                )
        except IntegrityError as exc:
            _audit(app, "catalog.rebuild", where, {"outcome": "refused", "problem": str(exc)})
            raise
        comparison, live_where = None, None
        if compare_with is not None:
            comparison, live_where = _compare(app, compare_with, target)
        detail: dict[str, Any] = {"outcome": "rebuilt", **report.summary()}
        if comparison is not None:
            detail["compared_with"] = live_where
            detail["differences"] = len(comparison.differences)
        _audit(app, "catalog.rebuild", where, detail)
    finally:
        target.dispose()
    if as_json:
        out = {
            "into": where,
            "rebuild": report.as_dict(),
            "comparison": None if comparison is None else comparison.as_dict(),
            "compared_with": live_where,
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    else:
        for line in rebuild_lines(report, where):
            click.echo(line)
        if comparison is not None and live_where is not None:
            for line in comparison_lines(comparison, live_where, where):
                click.echo(line)
    if report.damaged or report.problems or (comparison is not None and not comparison.clean):
        sys.exit(1)


@catalog.command(name="compare")
@click.argument("other", metavar="URL")
@click.option(
    "--live",
    "live_url",
    metavar="URL",
    default=None,
    help="The catalog to compare against (default: the configured one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_obj
def compare(app: App, other: str, live_url: str | None, as_json: bool) -> None:
    """Compare the catalog at URL (a rebuilt one) with the live catalog, row by row.

    Rows are matched on natural keys, never on each database's integer ids. Exits 1 when
    there is any difference.
    """
    app.require("admin", command="catalog compare")
    where = redacted(other)
    rebuilt = Catalog.open(other)
    try:
        require_current(rebuilt)
        comparison, live_where = _compare(app, live_url or CONFIGURED, rebuilt)
    finally:
        rebuilt.dispose()
    _audit(
        app,
        "catalog.compare",
        where,
        {"compared_with": live_where, "differences": len(comparison.differences)},
    )
    if as_json:
        out = {"live": live_where, "rebuilt": where, **comparison.as_dict()}
        click.echo(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    else:
        for line in comparison_lines(comparison, live_where, where):
            click.echo(line)
    if not comparison.clean:
        sys.exit(1)


def _compare(app: App, live_url: str, rebuilt: Catalog) -> tuple[Comparison, str]:
    """Compare ``rebuilt`` with the catalog at ``live_url`` (or the configured one)."""
    if live_url == CONFIGURED:
        return compare_catalogs(app.checked_catalog(), rebuilt), redacted(app.catalog.engine.url)
    live = Catalog.open(live_url)
    try:
        require_current(live)
        return compare_catalogs(live, rebuilt), redacted(live_url)
    finally:
        live.dispose()


def _audit(app: App, action: str, subject: str, detail: Mapping[str, Any]) -> None:
    """Record in the configured catalog; a rebuild is often run because that one is lost."""
    try:
        app.record(action, subject=subject, detail=detail)
    except ArchiverError as exc:
        click.echo(
            f"warning: {action} could not be recorded in the configured catalog's audit log "
            f"({exc}); the rebuilt catalog's own first audit entry records the rebuild",
            err=True,
        )


@contextmanager
def _progress(wanted: bool) -> Iterator[Callable[[int, int, str], None] | None]:
    """A progress bar on a terminal (stderr), or nothing."""
    console = Console(stderr=True)
    if not wanted or not console.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("reading the store"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    )
    task = bar.add_task("", total=None)

    def update(done: int, total: int, key: str) -> None:
        bar.update(task, completed=done, total=total, description=key.rsplit("/", 1)[-1])

    with bar:
        yield update
