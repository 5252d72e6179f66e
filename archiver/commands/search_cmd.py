"""``archiver search``: find items by words and filters, a page at a time.

Matches every captured version of every item, including items deleted on the platform or
hidden by a moderator. Reading only: nothing is changed, so nothing is audited. Output is
a table on a terminal, or ``--json`` / ``--csv`` for other tools; a query that does not
follow the grammar is refused with one line saying what and where (exit 2).

Every result shows its records series, the active holds covering it (case ids) and its
retention decision now (:mod:`archiver.search.retention_view`; "now" is
:func:`archiver.clock.now`). ``--held``, ``--not-held`` and ``--retention`` filter on those
decisions, evaluating candidates in batches (:mod:`archiver.search.engine`).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from archiver import clock
from archiver.app import App
from archiver.catalog.models import Account, Item
from archiver.commands.dates import parse_moment
from archiver.errors import ArchiverError
from archiver.search import (
    KINDS,
    MAX_LIMIT,
    OUTCOMES,
    STATES,
    RetentionInfo,
    SearchFilters,
    SearchPage,
    SearchResult,
    parse,
)
from archiver.search import search as run_search
from archiver.search.retention_view import RetentionView

#: Columns used when the output is not a terminal.
WIDE = 240
#: Characters of an item's text shown in the table.
SNIPPET = 160
CSV_COLUMNS = (
    "id",
    "account",
    "platform",
    "kind",
    "platform_item_id",
    "author",
    "created_at",
    "state",
    "versions",
    "versions_matched",
    "permalink",
    "series",
    "hold",
    "retention",
    "eligible_on",
    "text",
)

GRAMMAR = """\b
QUERY grammar (case and diacritics are ignored; no stemming):
  snow plow           both words          snow OR ice      either word
  plow NOT Elm        plow without Elm    "Elm Street"     the words in this order
  pick*               words starting with pick
  (snow OR ice) "Main Street"             parentheses group
AND, OR and NOT are operators only in capitals. Without a QUERY, every item that meets the
filters is listed.
"""


def local_range(
    start: str | None,
    to: str | None,
    zone: ZoneInfo,
    options: tuple[str, str],
) -> tuple[datetime | None, datetime | None]:
    """``--...-from`` / ``--...-to`` values (local dates or ISO timestamps) as a half-open UTC
    range: ``[from, to + one day)`` for dates. ``options`` name the two options in errors."""
    low = parse_moment(start, zone, options[0]) if start else None
    high = parse_moment(to, zone, options[1], end=True) if to else None
    if low is not None and high is not None and low >= high:
        raise click.BadParameter(
            f"{options[0]} {start} is after {options[1]} {to}", param_hint=options[0]
        )
    return low, high


def _range(
    start: str | None, to: str | None, zone: ZoneInfo, what: str
) -> tuple[datetime | None, datetime | None]:
    return local_range(start, to, zone, (f"--{what}-from", f"--{what}-to"))


def _check_known(app: App, accounts: tuple[str, ...], platforms: tuple[str, ...]) -> None:
    """A misspelt account or platform would find nothing, silently: say so instead."""
    if not accounts and not platforms:
        return
    with app.checked_catalog().reader() as s:
        known = s.execute(select(Account.id, Account.platform)).all()
    ids = {r.id for r in known}
    names = {r.platform.lower() for r in known}
    for account in accounts:
        if account not in ids:
            raise ArchiverError(
                f"no account {account!r} in the catalog: `archiver accounts` lists them"
            )
    for platform in platforms:
        if platform.lower() not in names:
            raise ArchiverError(
                f"no account on platform {platform!r} in the catalog; its platforms are "
                f"{', '.join(sorted(names)) or 'none yet'}"
            )


def _check_series(app: App, series: tuple[str, ...], schedules: Mapping[str, Any]) -> None:
    """A misspelt series would find nothing, silently: say so instead."""
    if not series:
        return
    with app.checked_catalog().reader() as s:
        for code in series:
            if code in schedules:
                continue
            if s.scalar(select(Item.id).where(Item.series == code).limit(1)) is None:
                raise ArchiverError(
                    f"no series {code!r} in the retention schedules nor in the catalog; the "
                    f"schedules define {', '.join(schedules) or 'none'}"
                )


def retention_dict(info: RetentionInfo | None) -> dict[str, Any] | None:
    """A result's retention as ``--json`` gives it."""
    if info is None:
        return None
    return {
        "outcome": info.outcome,
        "eligible_on": info.eligible_on.isoformat() if info.eligible_on else None,
        "action": info.action,
        "reason": info.reason,
        "rule": info.rule,
        "disposed_at": info.disposed_at.isoformat() if info.disposed_at else None,
        "certificate": info.certificate,
    }


def as_dict(result: SearchResult) -> dict[str, Any]:
    """One result as ``--json`` gives it (a stable interface)."""
    info = result.retention
    return {
        "id": result.id,
        "account": result.account,
        "platform": result.platform,
        "kind": result.kind,
        "platform_item_id": result.platform_item_id,
        "permalink": result.permalink,
        "author": result.author,
        "created_at": result.created_at.isoformat() if result.created_at else None,
        "state": result.state,
        "versions": result.versions,
        "versions_matched": list(result.versions_matched),
        "series": result.series,
        "holds": [{"id": h.id, "case": h.case, "kind": h.kind} for h in info.holds] if info else [],
        "retention": retention_dict(info),
        "text": result.text,
    }


def _footer(page: SearchPage) -> str:
    line = f"page {page.page}, {len(page.results)} results shown"
    return line + (f", more: --page {page.page + 1}" if page.more else "")


def _print_json(query: str | None, filters: SearchFilters, page: SearchPage) -> None:
    report = {
        "query": query,
        "parsed": page.query,
        "filters": {
            "accounts": list(filters.accounts),
            "platforms": list(filters.platforms),
            "kinds": list(filters.kinds),
            "authors": list(filters.authors),
            "states": list(filters.states),
            **{
                name: value.isoformat() if value is not None else None
                for name, value in (
                    ("created_from", filters.created_from),
                    ("created_before", filters.created_before),
                    ("captured_from", filters.captured_from),
                    ("captured_before", filters.captured_before),
                )
            },
            "series": list(filters.series),
            "held": filters.held,
            "retention": list(filters.retention),
        },
        "page": page.page,
        "limit": page.limit,
        "offset": page.offset,
        "count": len(page.results),
        "more": page.more,
        "next_page": page.page + 1 if page.more else None,
        "results": [as_dict(r) for r in page.results],
    }
    click.echo(json.dumps(report, indent=2, ensure_ascii=False))


def _print_csv(page: SearchPage) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in page.results:
        d = as_dict(r)
        d["versions_matched"] = ";".join(str(n) for n in r.versions_matched)
        d["hold"] = ";".join(h["case"] for h in d["holds"])
        retention = d["retention"] or {}
        d["retention"] = retention.get("outcome")
        d["eligible_on"] = retention.get("eligible_on")
        writer.writerow(["" if d[c] is None else d[c] for c in CSV_COLUMNS])
    sys.stdout.flush()
    if page.more:  # stdout stays pure CSV
        click.echo(_footer(page), err=True)


def _snippet(text: str | None) -> Text:
    flat = " ".join((text or "").split())
    return Text(flat if len(flat) <= SNIPPET else flat[: SNIPPET - 1] + "…")


def retention_cell(info: RetentionInfo | None, zone: ZoneInfo) -> str:
    """``retained, eligible 2033-01-12``: the outcome and, when known, the eligible-on date."""
    if info is None:
        return ""
    if info.outcome is None:
        return "no schedule"
    if info.eligible_on is None:
        return info.outcome
    return f"{info.outcome}, eligible {info.eligible_on.astimezone(zone).strftime('%Y-%m-%d')}"


def _print_table(query: str | None, page: SearchPage, zone: ZoneInfo) -> None:
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)  # piped or logged: no need to squeeze into 80
    table = Table(title=Text(f"search: {query}" if query else "search: every item"))
    table.add_column("id", justify="right", no_wrap=True)
    for name in ("account", "kind", "author"):
        table.add_column(name)
    for name in ("created", "state", "versions", "series"):
        table.add_column(name, no_wrap=True)
    table.add_column("hold")
    table.add_column("retention")
    table.add_column("text", ratio=1)
    for r in page.results:
        created = (
            r.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if r.created_at else ""
        )
        matched = ",".join(str(n) for n in r.versions_matched)
        table.add_row(
            str(r.id),
            Text(r.account),
            r.kind,
            Text(r.author or ""),
            created,
            r.state,
            f"{matched} of {r.versions}" if matched else str(r.versions),
            Text(r.series),
            Text(", ".join(h.case for h in r.retention.holds) if r.retention else ""),
            retention_cell(r.retention, zone),
            _snippet(r.text),
        )
    if page.results:
        out.print(table)
    else:
        out.print("no items match" + (" on this page" if page.offset else ""))
    out.print(_footer(page))


@click.command(epilog=GRAMMAR)
@click.argument("query", required=False)
@click.option(
    "--account", "accounts", multiple=True, metavar="ID", help="Only this account (repeatable)."
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="NAME",
    help="Only accounts on this platform (repeatable).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="Only this kind of item (repeatable).",
)
@click.option(
    "--author",
    "authors",
    multiple=True,
    metavar="HANDLE",
    help="Only items by this author handle, without case or @ (repeatable).",
)
@click.option(
    "--created-from",
    metavar="DATE",
    help="Created on or after DATE (YYYY-MM-DD in the configured time zone, or an ISO timestamp).",
)
@click.option(
    "--created-to", metavar="DATE", help="Created on or before DATE (a date: the whole day)."
)
@click.option(
    "--captured-from", metavar="DATE", help="A matching version captured on or after DATE."
)
@click.option(
    "--captured-to", metavar="DATE", help="A matching version captured on or before DATE."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only items in this state (repeatable; removed is the same as hidden).",
)
@click.option(
    "--series",
    "series",
    multiple=True,
    metavar="CODE",
    help="Only items of this records series (repeatable).",
)
@click.option(
    "--held/--not-held",
    "held",
    default=None,
    help="Only items an active hold covers / only items no active hold covers.",
)
@click.option(
    "--retention",
    "outcomes",
    multiple=True,
    type=click.Choice(OUTCOMES),
    help="Only items whose retention decision now is this (repeatable).",
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, MAX_LIMIT),
    help="Results per page.",
)
@click.option(
    "--page", "page_no", default=1, show_default=True, type=click.IntRange(1), help="Which page."
)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the page as CSV (header row first).")
@click.pass_obj
def search(
    app: App,
    query: str | None,
    accounts: tuple[str, ...],
    platforms: tuple[str, ...],
    kinds: tuple[str, ...],
    authors: tuple[str, ...],
    created_from: str | None,
    created_to: str | None,
    captured_from: str | None,
    captured_to: str | None,
    states: tuple[str, ...],
    series: tuple[str, ...],
    held: bool | None,
    outcomes: tuple[str, ...],
    limit: int,
    page_no: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Find items whose text, media alt text or author matches QUERY, with filters.

    Every captured version is searched, including items since deleted on the platform or
    hidden by a moderator; an item is listed once, with the versions that matched.
    Results are newest first.
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    # Search shows what moderators hid and what was deleted: the same roles as `show`.
    app.require("officer", "legal", command="search")
    zone = app.config.archiver.zone
    created = _range(created_from, created_to, zone, "created")
    captured = _range(captured_from, captured_to, zone, "captured")
    filters = SearchFilters(
        accounts=accounts,
        platforms=platforms,
        kinds=kinds,
        authors=authors,
        states=states,
        created_from=created[0],
        created_before=created[1],
        captured_from=captured[0],
        captured_before=captured[1],
        series=series,
        held=held,
        retention=outcomes,
    )
    if query is not None and query.strip():
        parse(query)  # a mistyped query is reported before anything is opened
    catalog = app.checked_catalog()
    _check_known(app, accounts, platforms)
    _check_series(app, series, app.schedules)
    lens = RetentionView.load(catalog, app.config, app.schedules, clock.now())
    page = run_search(
        catalog, query, filters, limit=limit, offset=(page_no - 1) * limit, retention=lens
    )
    if as_json:
        _print_json(query, filters, page)
    elif as_csv:
        _print_csv(page)
    else:
        _print_table(query, page, zone)
