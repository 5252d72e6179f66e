"""``archiver retention``: records series, assignments, events, notices and disposition.

This module holds the group and the commands about series and what starts or allows their
disposition: ``schedules`` (the series in force), ``reassign`` (apply changed assignment
rules to every item), ``event record|list`` (an account's closure and other events that
start event-triggered periods) and ``notice record|list`` (notice to, or a waiver from, the
historical society). The disposition commands (``report``, ``approve``, ``dispose``, …) are
defined in :mod:`archiver.commands.disposition_cmd` and added to this group by the CLI.

Every change is attributed to the acting person, written to the store as a control fact
before the catalog commit that records it (so a rebuilt catalog keeps it), and audited;
refusals by role are audited by :meth:`App.require`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver import clock, locks
from archiver.app import App
from archiver.assignment import (
    Assigner,
    ReassignPlan,
    account_series,
    apply_moves,
    plan_reassign,
    record_moves,
)
from archiver.catalog.models import RetentionEvent, RetentionNotice
from archiver.commands.dates import parse_moment
from archiver.evaluate import policy_of
from archiver.retention import NoticeKind, Series
from archiver.retention_records import (
    LOCK_WAIT,
    Recorder,
    effective_from,
    record_event,
    record_notice,
)

#: Columns used when the output is not a terminal.
WIDE = 160


@click.group()
def retention() -> None:
    """Retention schedules, series assignments, events, notices and disposition."""


# --- helpers ------------------------------------------------------------------------------------


def _not_future(moment: datetime, now: datetime, option: str, what: str) -> None:
    if moment > now:
        raise click.BadParameter(
            f"{moment.isoformat()} is in the future; record {what} once it has happened",
            param_hint=option,
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _local(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _holder(app: App) -> str:
    return f"{app.config.archiver.node}:{os.getpid()}"


def _console() -> Console:
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=WIDE)
    return out


def _tmp_dir(app: App) -> Path:
    # Control facts are written through a temporary file next to the spool's.
    app.spool_dir.mkdir(parents=True, exist_ok=True)
    return app.spool_dir


# --- schedules ----------------------------------------------------------------------------------


def _trigger(series: Series) -> str:
    if series.disposition == "permanent":
        return "kept permanently"
    if series.trigger == "created":
        start = "creation (first capture when unknown)"
    elif series.trigger == "captured":
        start = "first capture"
    elif series.trigger == "cutoff":
        start = f"the end of the {series.cutoff or 'calendar'} year of creation"
    else:
        start = f"event {series.event!r} (`archiver retention event record`)"
    return f"{series.period} after {start}"


def _notice(series: Series) -> str:
    if not series.notice.required:
        return "not required"
    return f"{series.notice.days} days' written notice to the {series.notice.to}, or its waiver"


def series_dict(series: Series, accounts: list[str], rules: list[str]) -> dict[str, Any]:
    """One series as ``retention schedules --json`` gives it (a stable interface)."""
    return {
        "code": series.code,
        "title": series.title,
        "description": series.description,
        "example": series.example,
        "confirm": series.confirm,
        "default": series.default,
        "period": {
            "years": series.period.years,
            "months": series.period.months,
            "days": series.period.days,
        },
        "trigger": series.trigger,
        "cutoff": series.cutoff,
        "event": series.event,
        "retention": _trigger(series),
        "disposition": series.disposition,
        "notice": {
            "required": series.notice.required,
            "days": series.notice.days,
            "to": series.notice.to,
        },
        "authority": series.authority,
        "source": series.source,
        "accounts": accounts,
        "rules": rules,
    }


@retention.command()
@click.option("--json", "as_json", is_flag=True, help="Print the series as JSON.")
@click.pass_obj
def schedules(app: App, as_json: bool) -> None:
    """List every records series in force: period, trigger, disposition, notice, authority.

    Series marked EXAMPLE illustrate a schedule and must be confirmed by the City's records
    officer before any account or rule uses them.
    """
    loaded = app.schedules
    cfg = app.config
    rows = [
        series_dict(
            s,
            [a.id for a in cfg.accounts if a.series == s.code],
            [r.name for r in cfg.retention.rules if r.series == s.code],
        )
        for s in loaded.values()
    ]
    if as_json:
        click.echo(json.dumps({"files": [str(f) for f in loaded.files], "series": rows}, indent=2))
        return
    click.echo(f"Retention schedules: {', '.join(str(f) for f in loaded.files)}")
    for s, row in zip(loaded.values(), rows, strict=True):
        marks = []
        if s.example:
            marks.append("EXAMPLE: confirm before use")
        if s.default:
            marks.append("default")
        click.echo("")
        click.echo(f"{s.code}  {s.title}" + (f"  [{'; '.join(marks)}]" if marks else ""))
        click.echo(f"  retention:   {row['retention']}")
        click.echo(f"  disposition: {s.disposition}")
        click.echo(f"  notice:      {_notice(s)}")
        click.echo(f"  authority:   {' '.join(s.authority.split())}")
        if s.example and s.confirm:
            click.echo(f"  EXAMPLE:     {' '.join(s.confirm.split())}")
        used = [f"account {a}" for a in row["accounts"]] + [f"rule {r}" for r in row["rules"]]
        click.echo(f"  used by:     {', '.join(used) or 'nothing configured'}")
        click.echo(f"  defined at:  {s.source}")
    examples = [s.code for s in loaded.values() if s.example]
    in_use = [
        s.code
        for s, row in zip(loaded.values(), rows, strict=True)
        if s.example and (row["accounts"] or row["rules"])
    ]
    if in_use:
        click.echo("")
        click.echo(
            f"warning: the configuration uses EXAMPLE series ({', '.join(in_use)}); confirm "
            "each with the City's records officer, then copy it to the City's own schedule "
            "([retention] schedules_dir) without `example = true`"
        )
    elif examples:
        click.echo("")
        click.echo(f"{len(examples)} EXAMPLE series are illustrations only; none is in use.")


# --- reassign -----------------------------------------------------------------------------------


def _plan(app: App, session: Session) -> ReassignPlan:
    assigner = Assigner.of(app.config, app.schedules, session)
    return plan_reassign(session, assigner, account_series(session, app.config))


@retention.command()
@click.option("--dry-run", is_flag=True, help="Report what would move; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def reassign(app: App, dry_run: bool, as_json: bool) -> None:
    """Re-evaluate every item's records series against the current rules, and move those
    whose series changes (after [[retention.rules]] or an account's series changed).

    Every move is written to the store, recorded in the catalog and audited. Records already
    stored stay where they are; an item's retention follows its series from now on.
    """
    app.require("officer", command="retention reassign")
    catalog = app.checked_catalog()
    facts: list[str] = []
    if dry_run:
        with catalog.reader() as s:
            plan = _plan(app, s)
    else:
        now = clock.now()
        with (
            locks.held(catalog, locks.RETENTION, _holder(app), wait=LOCK_WAIT) as generation,
            catalog.session() as s,
        ):
            # Planned under the lock: a disposition re-checks series only after this commits.
            plan = _plan(app, s)
            written = record_moves(
                app.store,
                s,
                plan.moves,
                cause="reassign",
                actor=app.actor.display,
                info=app.warc_info(),
                at=now,
                tmp_dir=_tmp_dir(app),
                subject=None,
                detail={"evaluated": plan.evaluated, "groups": plan.summary()},
            )
            apply_moves(s, plan.moves)
            # The lock's expiry runs on the wall clock, whatever time decisions are made at.
            locks.fence(s, locks.RETENTION, generation, datetime.now(UTC))
            facts = [f.key for f in written]
    groups = plan.groups()
    if as_json:
        doc = {
            "dry_run": dry_run,
            "evaluated": plan.evaluated,
            "moved": len(plan.moves),
            "groups": [g.as_dict() for g in groups],
            "facts": facts,
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    verb = "would move" if dry_run else "moved"
    click.echo(
        f"{plan.evaluated} items re-evaluated against {len(app.config.retention.rules)} "
        f"rule(s): {len(plan.moves)} {verb}"
        + (" (dry run: nothing was changed)" if dry_run else "")
    )
    zone = app.config.archiver.zone
    for g in groups:
        by = "the account's series" if g.rule == "default" else f"rule {g.rule!r}"
        click.echo(f"  {g.from_series} → {g.to_series} by {by}: {g.count}")
        for m in g.examples:
            created = _local(m.created_at, zone) if m.created_at else "creation unknown"
            click.echo(f"    e.g. item {m.item_id} ({m.kind} of {m.account}, {created})")
    if facts:
        click.echo(f"recorded in the store as {', '.join(facts)}")


# --- events -------------------------------------------------------------------------------------


def _recorder(app: App) -> Recorder:
    return Recorder(
        catalog=app.checked_catalog(),
        store=app.store,
        actor=app.actor.display,
        info=app.warc_info(),
        tmp_dir=app.spool_dir,
        now=clock.now(),
        holder=_holder(app),
    )


@retention.group()
def event() -> None:
    """Events that start event-triggered retention periods (e.g. an account's closure)."""


@event.command("record")
@click.option("--kind", required=True, help="The event, e.g. account-closed.")
@click.option("--account", help="The account it happened to (default: every account).")
@click.option(
    "--on",
    "on",
    required=True,
    metavar="DATE",
    help="When it happened: YYYY-MM-DD in the configured time zone, or an ISO timestamp.",
)
@click.option("--note", help="Why, or where the decision is documented.")
@click.pass_obj
def event_record(app: App, kind: str, account: str | None, on: str, note: str | None) -> None:
    """Record an event (e.g. --kind account-closed --account ID --on DATE) that starts the
    retention period of event-triggered series, and extend their stored files' locks."""
    app.require("officer", command="retention event record")
    zone = app.config.archiver.zone
    occurred = parse_moment(on, zone, "--on")
    rec = _recorder(app)
    _not_future(occurred, rec.now, "--on", "the event")
    done = record_event(
        rec,
        app.schedules,
        policy_of(app.config),
        kind=kind,
        account=account,
        occurred_at=occurred,
        note=note,
        configured_accounts={a.id for a in app.config.accounts},
    )
    whom = f"account {account}" if account else "every account"
    said = "was already recorded as" if done.already else "recorded as"
    click.echo(f"event {kind} of {whom} on {_local(occurred, zone)} {said} event {done.id}")
    if done.extended:
        latest = max(e.after for e in done.extended)
        click.echo(
            f"object locks of {len(done.extended)} stored file(s) extended (latest until "
            f"{_local(latest, zone)})"
        )
    else:
        click.echo("no stored file needed a longer lock")


@event.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@click.pass_obj
def event_list(app: App, as_json: bool) -> None:
    """List the recorded events, oldest first."""
    app.require("officer", "legal", command="retention event list")
    with app.checked_catalog().reader() as s:
        rows = s.scalars(select(RetentionEvent).order_by(RetentionEvent.occurred_at)).all()
    if as_json:
        docs = [
            {
                "id": r.id,
                "kind": r.kind,
                "account": r.account_id,
                "occurred_at": _iso(r.occurred_at),
                "recorded_at": _iso(r.recorded_at),
                "recorded_by": r.recorded_by,
                "note": r.note,
            }
            for r in rows
        ]
        click.echo(json.dumps(docs, indent=2, ensure_ascii=False))
        return
    zone = app.config.archiver.zone
    table = Table("id", "event", "account", "on", "recorded", "by", "note")
    for r in rows:
        table.add_row(
            str(r.id),
            r.kind,
            r.account_id or "every account",
            _local(r.occurred_at, zone),
            _local(r.recorded_at, zone),
            r.recorded_by,
            r.note or "",
        )
    _console().print(table if rows else "no events recorded")


# --- notices ------------------------------------------------------------------------------------


@retention.group()
def notice() -> None:
    """Notices of intended destruction sent to, or waivers from, the historical society."""


@notice.command("record")
@click.option("--series", "code", required=True, help="The records series the notice covers.")
@click.option("--sent-on", metavar="DATE", help="The day the notice was sent.")
@click.option("--waiver-on", metavar="DATE", help="The day the waiver was received.")
@click.option("--reference", required=True, help="The letter's or waiver's reference.")
@click.option("--note", help="Anything else worth keeping with it.")
@click.pass_obj
def notice_record(
    app: App,
    code: str,
    sent_on: str | None,
    waiver_on: str | None,
    reference: str,
    note: str | None,
) -> None:
    """Record a notice sent to (--sent-on) or a waiver from (--waiver-on) the historical
    society for a series' records whose retention has ended."""
    app.require("officer", command="retention notice record")
    if (sent_on is None) == (waiver_on is None):
        raise click.UsageError("give exactly one of --sent-on DATE or --waiver-on DATE")
    loaded = app.schedules
    if code not in loaded:
        raise click.BadParameter(
            f"no series {code!r} in the retention schedules (series: {', '.join(loaded)}); "
            "`archiver retention schedules` lists them",
            param_hint="--series",
        )
    kind: NoticeKind = "sent" if sent_on is not None else "waiver"
    option = "--sent-on" if sent_on is not None else "--waiver-on"
    zone = app.config.archiver.zone
    on = parse_moment(sent_on or waiver_on or "", zone, option)
    rec = _recorder(app)
    _not_future(on, rec.now, option, "the notice")
    done = record_notice(rec, loaded[code], kind=kind, on=on, reference=reference, note=note)
    what = "notice sent" if kind == "sent" else "waiver received"
    click.echo(
        f"recorded notice {done.id}: {what} {_local(on, zone)} ({done.reference}) for series {code}"
    )
    ended = f"items of {code} whose retention ended by {_local(on, zone)} may be disposed of"
    if kind == "sent":
        click.echo(
            f"{ended} from {_local(done.effective_from, zone)} "
            f"({loaded[code].notice.days} days after the notice)"
        )
    else:
        click.echo(f"{ended} now")


@notice.command("list")
@click.option("--series", "code", help="Only the notices of this series.")
@click.option("--json", "as_json", is_flag=True, help="Print the notices as JSON.")
@click.pass_obj
def notice_list(app: App, code: str | None, as_json: bool) -> None:
    """List the recorded notices and waivers, oldest first."""
    app.require("officer", "legal", command="retention notice list")
    loaded = app.schedules
    query = select(RetentionNotice).order_by(RetentionNotice.on, RetentionNotice.id)
    if code is not None:
        query = query.where(RetentionNotice.series == code)
    with app.checked_catalog().reader() as s:
        rows = s.scalars(query).all()
    effective = [effective_from(loaded.get(r.series), r.kind, r.on) for r in rows]
    if as_json:
        docs = [
            {
                "id": r.id,
                "series": r.series,
                "kind": r.kind,
                "on": _iso(r.on),
                "effective_from": _iso(at),
                "reference": r.reference,
                "recorded_at": _iso(r.recorded_at),
                "recorded_by": r.recorded_by,
                "note": r.note,
            }
            for r, at in zip(rows, effective, strict=True)
        ]
        click.echo(json.dumps(docs, indent=2, ensure_ascii=False))
        return
    zone = app.config.archiver.zone
    table = Table("id", "series", "kind", "on", "effective from", "reference", "by")
    for r, at in zip(rows, effective, strict=True):
        table.add_row(
            str(r.id),
            r.series,
            r.kind,
            _local(r.on, zone),
            _local(at, zone),
            r.reference,
            r.recorded_by,
        )
    _console().print(table if rows else "no notices recorded")
