"""``archiver retention report | reports | approve | transfer | receipt``: before disposal.

- ``report`` (officer): evaluate every item now and store a report of what is eligible,
  grouped by series and creation month, with sizes and notice status; it expires after
  ``[retention] report_ttl``.
- ``reports`` (officer or legal): the reports made so far and where each stands.
- ``approve REPORT`` (officer): a second officer's approval, required by
  ``[retention] require_approval`` (the officer who executes cannot approve their own).
- ``transfer REPORT --out DIR`` (officer): a BagIt bag of the report's items in a transfer
  series, for the receiving archive.
- ``receipt REPORT --reference --received-on`` (officer): the receiving archive's receipt;
  only then does ``dispose`` destroy the transferred items.

Every one of them is audited; refusals (a role missing, a report expired) too.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from archiver import clock
from archiver.app import App
from archiver.commands.accounts_cmd import WIDE, local_time
from archiver.commands.dates import parse_moment
from archiver.disposition import report as reports_mod
from archiver.disposition import transfer as transfer_mod
from archiver.errors import ArchiverError, RetentionError
from archiver.evaluate import load_context


def _console() -> Console:
    # No markup: series titles and notice references are text, whatever brackets they hold.
    out = Console(highlight=False, markup=False)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)
    return out


def size_text(size: int) -> str:
    """``1.4 MiB``: bytes for people (the JSON keeps exact bytes)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _when(value: str | None, zone: ZoneInfo) -> str:
    if not value:
        return "-"
    return local_time(datetime.fromisoformat(value), zone)


def _day(value: str | None, zone: ZoneInfo) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d")


def _status(view: reports_mod.ReportView, now: datetime) -> str:
    return reports_mod.EXPIRED if view.expired(now) else view.status


def report_json(view: reports_mod.ReportView, now: datetime) -> dict[str, Any]:
    """A report as ``--json`` gives it (a stable interface)."""
    return {
        "report": view.id,
        "created_at": view.created_at.isoformat(),
        "created_by": view.created_by,
        "expires_at": view.expires_at.isoformat(),
        "status": _status(view, now),
        "approvals": view.approvals,
        "item_ids": view.item_ids,
        "summary": view.summary,
    }


def _notice_text(notice: dict[str, Any], zone: ZoneInfo) -> str:
    if not notice.get("required"):
        return "not required"
    parts = []
    if notice.get("satisfied_by"):
        parts.append("satisfied by " + ", ".join(notice["satisfied_by"]))
    waiting = notice.get("awaiting")
    if waiting:
        text = f"{waiting['items']} items await {notice['days']} days' notice to {notice['to']}"
        if waiting.get("proceed_from"):
            text += f"; may proceed from {_when(waiting['proceed_from'], zone)}"
        elif waiting.get("pending_notices"):
            text += "; a recorded notice covers only some of them"
        else:
            text += (
                f"; none recorded: if sent today, from {_when(waiting['if_sent_now'], zone)} "
                "(at once with a waiver)"
            )
        parts.append(text)
    return "; ".join(parts) or notice.get("status", "")


def _print_report(view: reports_mod.ReportView, zone: ZoneInfo, require_approval: bool) -> None:
    out = _console()
    summary = view.summary
    series = summary.get("series", {})
    scope = summary.get("scope", {}).get("series")
    totals = summary.get("totals", {})
    eligible = totals.get("eligible", {"items": 0, "bytes": 0})
    out.print(
        f"disposition report {view.id} as of {_when(summary.get('as_of'), zone)}"
        + (f" (series {scope} only)" if scope else "")
    )
    groups = Table(
        "series", "month", "items", "size", "action", "created", "notice", title="eligible now"
    )
    for g in summary.get("groups", []):
        refs = g.get("notice") or []
        notice = series.get(g["series"], {}).get("notice", {})
        groups.add_row(
            Text(g["series"]),
            Text(g["month"]),
            Text(str(g["items"])),
            Text(size_text(g["bytes"])),
            Text(g["action"]),
            Text(f"{_day(g['earliest_created'], zone)} to {_day(g['latest_created'], zone)}"),
            Text(
                ("notice " + ", ".join(refs))
                if refs
                else ("not required" if not notice.get("required") else "-")
            ),
        )
    if groups.row_count:
        out.print(groups)
    else:
        out.print("nothing is eligible for disposition now")
    out.print(f"eligible: {eligible['items']} items, {size_text(eligible['bytes'])}")
    awaiting = summary.get("awaiting_notice", [])
    if awaiting:
        table = Table("series", "month", "items", "size", "eligible since", title="awaiting notice")
        for a in awaiting:
            table.add_row(
                Text(a["series"]),
                Text(a["month"]),
                Text(str(a["items"])),
                Text(size_text(a["bytes"])),
                Text(_day(a["earliest_eligible"], zone)),
            )
        out.print(table)
    if series:
        table = Table("series", "title", "action", "items", "notice", title="series")
        for code, info in series.items():
            table.add_row(
                Text(code),
                Text(info.get("title", "")),
                Text(info.get("action", "")),
                Text(str(info.get("items", 0))),
                Text(_notice_text(info.get("notice", {}), zone)),
            )
        out.print(table)
        for code, info in series.items():
            what = (info.get("notice", {}).get("awaiting") or {}).get("what_to_do")
            if what:
                out.print(Text(f"{code}: {what}"))
    kept = summary.get("kept", {})
    if kept:
        out.print(
            "kept: " + ", ".join(f"{count} {outcome}" for outcome, count in sorted(kept.items()))
        )
    out.print(f"report {view.id} expires {local_time(view.expires_at, zone)}")
    if view.item_ids:
        if require_approval:
            out.print("it needs a second officer's approval: archiver retention approve " + view.id)
        transfers = [code for code, info in series.items() if info.get("action") == "transfer"]
        if transfers:
            out.print(
                f"items of series {', '.join(transfers)} are transferred, not destroyed: "
                f"archiver retention transfer "
                f"{view.id} --out DIR, then record the receipt"
            )
        out.print(f"to carry it out: archiver retention dispose {view.id}")


@click.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--series", "series", metavar="CODE", help="Only the items of this series.")
@click.pass_obj
def report(app: App, as_json: bool, series: str | None) -> None:
    """Make a disposition report: the items eligible now, grouped by series and month,
    with sizes and notice status. It expires after [retention] report_ttl."""
    app.require("officer", command="retention report")
    catalog = app.checked_catalog()
    now = clock.now()
    # Evaluate in a reader (captures go on meanwhile), then store in one short transaction.
    with catalog.reader() as s:
        ctx = load_context(s, app.config, app.schedules)
        computed = reports_mod.compute_report(s, ctx, now, series=series)
    with catalog.session() as s:
        report_id = reports_mod.store_report(
            s, computed, app.actor.display, app.config.retention.report_ttl
        )
    with catalog.reader() as s:
        view = reports_mod.load_report(s, report_id)
    if as_json:
        click.echo(json.dumps(report_json(view, now), indent=2, ensure_ascii=False))
        return
    _print_report(view, app.config.archiver.zone, app.config.retention.require_approval)


@click.command("reports")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_obj
def reports(app: App, as_json: bool) -> None:
    """List the disposition reports: when made, by whom, until when, approvals, status."""
    app.require("officer", "legal", command="retention reports")
    now = clock.now()
    with app.checked_catalog().reader() as s:
        views = reports_mod.list_reports(s)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "report": v.id,
                        "created_at": v.created_at.isoformat(),
                        "created_by": v.created_by,
                        "expires_at": v.expires_at.isoformat(),
                        "status": _status(v, now),
                        "items": v.summary.get("report_items", 0),
                        "approvals": v.approvals,
                        "series": v.summary.get("scope", {}).get("series"),
                        "transfer_receipt": v.summary.get("transfer_receipt"),
                    }
                    for v in views
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not views:
        click.echo("no disposition report yet: make one with `archiver retention report`")
        return
    zone = app.config.archiver.zone
    # The id is what officers copy into the next command: never shortened.
    table = Table(
        Column("report", no_wrap=True, min_width=26),
        *("made", "by", "expires", "status", "items", "approved by", "receipt"),
    )
    for v in views:
        receipt = v.summary.get("transfer_receipt") or {}
        table.add_row(
            Text(v.id),
            Text(local_time(v.created_at, zone)),
            Text(v.created_by),
            Text(local_time(v.expires_at, zone)),
            Text(_status(v, now)),
            Text(str(v.summary.get("report_items", 0))),
            Text(", ".join(v.approvals) or "-"),
            Text(receipt.get("reference") or "-"),
        )
    _console().print(table)


@click.command("approve")
@click.argument("report_id", metavar="REPORT")
@click.option("--note", help="Why, or what was checked (kept in the audit log).")
@click.pass_obj
def approve(app: App, report_id: str, note: str | None) -> None:
    """Approve disposition report REPORT (a second officer, not the one who executes it)."""
    app.require("officer", command="retention approve")
    catalog = app.checked_catalog()
    now = clock.now()
    with catalog.session() as s:
        reports_mod.approve(s, report_id, app.actor.display, now, note)
    click.echo(f"report {report_id} approved by {app.actor.display}")


@click.command("transfer")
@click.argument("report_id", metavar="REPORT")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the BagIt bag to (must not exist, or be empty).",
)
@click.pass_obj
def transfer(app: App, report_id: str, out: Path) -> None:
    """Write a BagIt bag of REPORT's items in transfer series, for the receiving archive."""
    app.require("officer", command="retention transfer")
    bag = transfer_mod.make_bag(
        app.checked_catalog(),
        app.store,
        report_id,
        out,
        operator=app.config.archiver.operator,
        actor=app.actor.display,
        now=clock.now(),
        zone=app.config.archiver.zone,
    )
    click.echo(
        f"bag {bag.path}: {len(bag.items)} items of series {', '.join(bag.series)}, "
        f"{bag.records} records, {bag.media} media files (Payload-Oxum {bag.payload_oxum})"
    )
    click.echo(
        "deliver it to the receiving archive; once it confirms receipt: archiver retention "
        f"receipt {report_id} --reference REF --received-on YYYY-MM-DD"
    )


def parse_day(value: str, zone: ZoneInfo, option: str) -> datetime:
    """``2031-05-02`` (the start of that day in ``zone``) or an ISO time with offset, in UTC."""
    try:
        return parse_moment(value, zone, option)
    except click.BadParameter:
        raise ArchiverError(f"{option} {value!r} is not a date such as 2031-05-02") from None


@click.command("receipt")
@click.argument("report_id", metavar="REPORT")
@click.option("--reference", required=True, help="The receiving archive's receipt reference.")
@click.option(
    "--received-on", "received_on", required=True, metavar="DATE", help="When it was received."
)
@click.pass_obj
def receipt(app: App, report_id: str, reference: str, received_on: str) -> None:
    """Record the receiving archive's receipt of REPORT's transfer bag; only then does
    `archiver retention dispose REPORT` destroy the transferred items."""
    app.require("officer", command="retention receipt")
    zone = app.config.archiver.zone
    when = parse_day(received_on, zone, "--received-on")
    now = clock.now()
    if when > now:
        raise RetentionError(f"--received-on {received_on} is in the future")
    if not reference.strip():
        raise RetentionError("--reference must name the receiving archive's receipt")
    with app.checked_catalog().session() as s:
        recorded = reports_mod.record_receipt(
            s, report_id, reference=reference, received_on=when, actor=app.actor.display, now=now
        )
    click.echo(
        f"receipt {reference} recorded for report {report_id}: {len(recorded['items'])} "
        f"transferred items may now be disposed of with `archiver retention dispose {report_id}`"
    )
