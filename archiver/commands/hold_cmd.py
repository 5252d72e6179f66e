"""``archiver hold``: place, list, release and close legal and public-records-request holds.

Every change is made under the retention lock, written to the store as a control fact and
audited (:mod:`archiver.holds`); afterwards the store's legal holds are brought in line with
the active holds (``hold sync`` does only that). Dates are local dates in ``[archiver]
time_zone``; "now" is :func:`archiver.clock.now` (``ARCHIVER_NOW`` rehearses a date).

Who may: create, close, list and sync: officer or legal; release: officer only.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from archiver import clock, holds
from archiver.app import App
from archiver.commands.accounts_cmd import WIDE
from archiver.commands.dates import DAY
from archiver.commands.search_cmd import local_range
from archiver.errors import StoreError
from archiver.holds import Change, HoldRecord, Recording, Scope, SyncReport

_MICROSECOND = timedelta(microseconds=1)


def _recording(app: App) -> Recording:
    # Control facts are written through a temporary file next to the spool's.
    app.spool_dir.mkdir(parents=True, exist_ok=True)
    return Recording(actor=app.actor.display, info=app.warc_info(), tmp_dir=app.spool_dir)


def _local_day(value: str, zone: ZoneInfo, option: str) -> datetime:
    """A local date (YYYY-MM-DD) as the UTC moment its day starts."""
    try:
        if not DAY.fullmatch(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from None
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(ZoneInfo("UTC"))


def _sync_line(report: SyncReport) -> str:
    line = (
        f"store legal holds: {report.held} of {report.files} stored files held "
        f"({len(report.placed)} placed, {len(report.lifted)} lifted now); "
        f"{report.covered_items} items covered by {report.active_holds} active hold(s)"
    )
    if report.approximated:
        line += (
            f"; {report.approximated} versions without recorded links were traced by capture run"
        )
    return line


def _finish(report: SyncReport, what: str) -> None:
    """Refuse (exit 6) when the store did not take every legal hold; the change stands."""
    if report.ok:
        return
    key, error = report.failed[0]
    raise StoreError(
        f"{what}, but the store refused the legal hold of {len(report.failed)} file(s) "
        f"(first: {key}: {error}); fix the store and run `archiver hold sync`"
    )


def _print_change(app: App, change: Change, verb: str, as_json: bool) -> None:
    now = clock.now()
    zone = app.config.archiver.zone
    if as_json:
        doc = {
            "hold": change.hold.as_json(now, zone),
            "fact": change.fact.key,
            "sync": change.sync.as_json(),
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        h = change.hold
        click.echo(f"hold {h.id} {verb} ({_kind(h)}, case {h.case}): {h.scope_text(zone)}")
        click.echo(f"status: {h.status(now, zone)}")
        click.echo(f"recorded in the store as {change.fact.key}")
        click.echo(_sync_line(change.sync))
    _finish(change.sync, f"hold {change.hold.id} is {verb}")


def _kind(h: HoldRecord) -> str:
    return "legal hold" if h.kind == "legal" else "public-records request"


@click.group()
def hold() -> None:
    """Legal holds and public-records-request holds: no item they cover is destroyed."""


@hold.command()
@click.option("--case", "case", required=True, metavar="ID", help="The case or request number.")
@click.option("--reason", required=True, metavar="TEXT", help="Why the records are held.")
@click.option(
    "--type",
    "kind",
    type=click.Choice(holds.KINDS),
    default="legal",
    show_default=True,
    help="legal: until released; prr: a public-records request, until granted or 60 days "
    "after a denial (Wis. Stat. § 19.35(5)).",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="ID",
    help="Only this account's items (repeatable; none: every account).",
)
@click.option(
    "--from",
    "date_from",
    metavar="DATE",
    help="Only items created on or after DATE (YYYY-MM-DD in the configured time zone; "
    "the first capture when the platform gives no creation date).",
)
@click.option("--to", "date_to", metavar="DATE", help="Only items created on or before DATE.")
@click.option(
    "--query",
    metavar="Q",
    help="Only items whose text, alt text or author match Q (the `archiver search` "
    "grammar), now or captured later.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the hold as JSON.")
@click.pass_obj
def create(
    app: App,
    case: str,
    reason: str,
    kind: str,
    accounts: tuple[str, ...],
    date_from: str | None,
    date_to: str | None,
    query: str | None,
    as_json: bool,
) -> None:
    """Place a hold: no item in its scope is destroyed while it is active, including items
    captured after it was placed. The stored files holding those items get a legal hold."""
    app.require("officer", "legal", command="hold create")
    zone = app.config.archiver.zone
    low, high = local_range(date_from, date_to, zone, ("--from", "--to"))
    scope = Scope(
        accounts=accounts,
        created_from=low,
        # The range is inclusive of --to's whole day: up to the last microsecond before
        # the next day starts.
        created_to=high - _MICROSECOND if high is not None else None,
        query=query,
    )
    scope.check()  # a mistyped query is refused before anything is opened
    change = holds.create(
        app.checked_catalog(),
        app.store,
        case=case,
        reason=reason,
        kind="prr" if kind == "prr" else "legal",
        scope=scope,
        recording=_recording(app),
        now=clock.now(),
        configured_accounts=[a.id for a in app.config.accounts],
    )
    _print_change(app, change, "placed", as_json)


@hold.command("list")
@click.option("--all", "everything", is_flag=True, help="Also released and ended holds.")
@click.option("--json", "as_json", is_flag=True, help="Print the holds as JSON.")
@click.pass_obj
def list_(app: App, everything: bool, as_json: bool) -> None:
    """List the active holds (every hold with --all)."""
    app.require("officer", "legal", command="hold list")
    now = clock.now()
    zone = app.config.archiver.zone
    found = holds.list_holds(app.checked_catalog(), now, everything=everything)
    if as_json:
        doc: dict[str, Any] = {
            "now": now.isoformat(),
            "all": everything,
            "holds": [h.as_json(now, zone) for h in found],
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)
    if not found:
        out.print("no holds" if everything else "no active holds (--all lists every hold)")
        return
    table = Table(title="holds" if everything else "active holds")
    table.add_column("id", justify="right", no_wrap=True)
    for name in ("case", "type", "scope", "created", "status"):
        table.add_column(name)
    for h in found:
        created = f"{h.created_at.astimezone(zone).strftime('%Y-%m-%d %H:%M %Z')} by {h.created_by}"
        table.add_row(
            str(h.id),
            Text(h.case),
            h.kind,
            Text(h.scope_text(zone)),
            Text(created),
            Text(h.status(now, zone)),
        )
    out.print(table)


@hold.command()
@click.argument("hold_id", metavar="ID", type=int)
@click.option("--reason", required=True, metavar="TEXT", help="Why the hold ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the hold as JSON.")
@click.pass_obj
def release(app: App, hold_id: int, reason: str, as_json: bool) -> None:
    """Release hold ID: its items may be destroyed again when their retention ends (unless
    another hold covers them). Officers only."""
    app.require("officer", command="hold release")
    change = holds.release(
        app.checked_catalog(),
        app.store,
        hold_id,
        reason=reason,
        recording=_recording(app),
        now=clock.now(),
    )
    _print_change(app, change, "released", as_json)


@hold.command()
@click.argument("hold_id", metavar="ID", type=int)
@click.option("--granted-on", metavar="DATE", help="The request was granted on DATE.")
@click.option("--denied-on", metavar="DATE", help="The request was denied on DATE.")
@click.option("--json", "as_json", is_flag=True, help="Print the hold as JSON.")
@click.pass_obj
def close(
    app: App, hold_id: int, granted_on: str | None, denied_on: str | None, as_json: bool
) -> None:
    """Record a public-records request's outcome (hold type prr): granted ends the hold;
    denied keeps it 60 more days (Wis. Stat. § 19.35(5))."""
    if (granted_on is None) == (denied_on is None):
        raise click.UsageError("give exactly one of --granted-on DATE and --denied-on DATE")
    app.require("officer", "legal", command="hold close")
    zone = app.config.archiver.zone
    change = holds.close(
        app.checked_catalog(),
        app.store,
        hold_id,
        granted_on=_local_day(granted_on, zone, "--granted-on") if granted_on else None,
        denied_on=_local_day(denied_on, zone, "--denied-on") if denied_on else None,
        recording=_recording(app),
        now=clock.now(),
    )
    _print_change(app, change, "closed", as_json)


@hold.command()
@click.option(
    "--check-store",
    is_flag=True,
    help="Ask the store for every file's legal hold instead of trusting the catalog (one "
    "request per file): repairs a store changed behind the catalog's back.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def sync(app: App, check_store: bool, as_json: bool) -> None:
    """Put the store's legal holds on every file an active hold needs, lift the rest.

    The daemon does this periodically; every hold change does it too.
    """
    app.require("officer", "legal", command="hold sync")
    report = holds.sync_legal_holds(
        app.checked_catalog(),
        app.store,
        clock.now(),
        actor=app.actor.display,
        check_store=check_store,
    )
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(_sync_line(report))
    _finish(report, "the sync is done")
