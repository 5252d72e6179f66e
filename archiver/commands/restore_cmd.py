"""``archiver restore ITEM... --to DIR``: items exactly as captured, verified, audited.

Each ITEM (a catalog id, ``ACCOUNT/PLATFORM_ITEM_ID`` or a permalink; see
:mod:`archiver.items`), and every item matching ``--query`` (:func:`archiver.search.search`),
is restored by :func:`archiver.restore.restore_item` into its own
folder ``DIR/item-<id>-v<version>/``. Every restore, and every failed one, is an
``item.restore`` entry in the audit log. With several items, one that fails (a damaged
record, an existing folder) does not stop the others; the exit code is then that of the
first failure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from archiver import items
from archiver.app import App
from archiver.catalog.db import Catalog
from archiver.errors import ArchiverError
from archiver.restore import RestoreResult, parse_as_of, restore_item
from archiver.search import search

#: Search results fetched per query (``--query``).
QUERY_PAGE = 1000


@click.command()
@click.argument("refs", metavar="ITEM...", nargs=-1)
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The directory to restore into (created if missing); each item gets its own folder.",
)
@click.option(
    "--version",
    "version_no",
    type=click.IntRange(min=1),
    help="Restore this version number (as `archiver show` lists them).",
)
@click.option(
    "--as-of",
    "as_of",
    metavar="TIME",
    help="Restore the latest version captured at or before TIME (ISO 8601; a date alone "
    "means the end of that day; without an offset, in the configured time zone).",
)
@click.option(
    "--query",
    metavar="QUERY",
    help="Also restore every item matching QUERY (the grammar of `archiver search`: words, "
    '"phrases", OR, NOT, prefix*), newest first.',
)
@click.option("--overwrite", is_flag=True, help="Replace an item folder that already exists.")
@click.option("--json", "as_json", is_flag=True, help="Print what was restored as JSON.")
@click.pass_obj
def restore(
    app: App,
    refs: tuple[str, ...],
    target: Path,
    version_no: int | None,
    as_of: str | None,
    query: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Restore each ITEM into DIR exactly as captured: the normalized JSON, the raw
    response it came from and its media, each verified against the stored SHA-256 digests
    before anything is written, with a manifest.json saying where every byte came from.

    ITEM is the catalog id shown by `archiver search` (1234), ACCOUNT/PLATFORM_ITEM_ID
    (split at the first '/', so at:// ids work), or the item's permalink; --query adds
    every item a search finds. Each item goes into its own folder DIR/item-<id>-v<version>.
    """
    app.require("officer", "legal", command="restore")
    if not refs and query is None:
        raise click.UsageError("give at least one ITEM, or --query, to restore")
    if query is not None and not query.strip():
        raise click.UsageError("--query needs words to search for (a blank one matches everything)")
    if version_no is not None and as_of is not None:
        raise click.UsageError("give --version or --as-of, not both")
    catalog = app.checked_catalog()
    moment = parse_as_of(as_of, app.config.archiver.zone) if as_of is not None else None
    # Every reference is resolved before anything is restored: a typo fails the whole run.
    found = [items.resolve(catalog, ref) for ref in refs]
    if query is not None:
        found += _matching(catalog, query)
    ids = list(dict.fromkeys(found))
    done: list[RestoreResult] = []
    failed: list[tuple[int, ArchiverError]] = []
    with _progress(len(ids), quiet=as_json) as advance:
        for item_id in ids:
            subject = f"item:{item_id}"
            try:
                result = restore_item(
                    catalog,
                    app.store,
                    item_id,
                    target,
                    restored_by=app.actor.display,
                    version=version_no,
                    as_of=moment,
                    overwrite=overwrite,
                )
            except ArchiverError as exc:
                app.record("item.restore", subject=subject, detail=_failure(exc, target, moment))
                failed.append((item_id, exc))
            else:
                detail = result.audit_detail()
                detail["requested"] = {"version": version_no, "as_of": as_of}
                app.record("item.restore", subject=subject, detail=detail)
                done.append(result)
            advance()
    if as_json:
        click.echo(json.dumps(_report(done, failed), indent=2, ensure_ascii=False))
    else:
        for r in done:
            click.echo(
                f"restored item {r.item_id} version {r.version_no} to {r.directory} "
                f"({len(r.files)} files; manifest sha256 {r.manifest_sha256})"
                + (" (replaced the earlier restore)" if r.overwrote else "")
            )
    if len(ids) == 1 and failed:
        raise failed[0][1]  # one item: the error as any command reports it
    for item_id, error in failed:
        click.echo(f"error: item {item_id}: {error}", err=True)
    if failed:
        sys.exit(failed[0][1].exit_code)


def _matching(catalog: Catalog, query: str) -> list[int]:
    """The catalog ids of every item matching ``query``, newest first (page by page)."""
    ids: list[int] = []
    while True:
        page = search(catalog, query, limit=QUERY_PAGE, offset=len(ids))
        ids += [r.id for r in page.results]
        if not page.more or not page.results:
            return ids


def _failure(exc: ArchiverError, target: Path, as_of: datetime | None) -> dict[str, Any]:
    return {
        "outcome": "failed",
        "error": exc.message,
        "exit_code": exc.exit_code,
        "target": str(target),
        "as_of": as_of.isoformat() if as_of else None,
    }


def _report(done: list[RestoreResult], failed: list[tuple[int, ArchiverError]]) -> dict[str, Any]:
    return {
        "restored": [
            {
                "item": r.item_id,
                "version": r.version_no,
                "directory": str(r.directory),
                "manifest_sha256": r.manifest_sha256,
                "overwrote": r.overwrote,
                "files": [f.entry() for f in r.files],
            }
            for r in done
        ],
        "failed": [
            {"item": item_id, "error": error.message, "exit_code": error.exit_code}
            for item_id, error in failed
        ],
    }


@contextmanager
def _progress(total: int, *, quiet: bool) -> Iterator[Callable[[], None]]:
    """A progress bar on a terminal's stderr for more than one item; otherwise nothing."""
    console = Console(stderr=True)
    if quiet or total < 2 or not console.is_terminal:
        yield lambda: None
        return
    bar = Progress(
        TextColumn(escape("restoring")),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("restore", total=total)
        yield lambda: bar.advance(task)
