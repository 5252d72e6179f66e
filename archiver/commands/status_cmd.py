"""``archiver status``: what the catalog holds, what the spool holds, who is running.

``--check`` adds the health checks of :mod:`archiver.health` for monitoring: one line per
problem on stderr (and a ``problems`` list in ``--json``), exit 1 when there is any.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from archiver import health
from archiver.app import App
from archiver.catalog.db import redacted
from archiver.catalog.models import (
    Account,
    AuditEntry,
    CaptureRun,
    Heartbeat,
    Item,
    ItemVersion,
    Media,
    StoredFile,
)
from archiver.catalog.schema import schema_state
from archiver.commands.accounts_cmd import WIDE
from archiver.spool import Spool

COUNTED = {
    "accounts": Account,
    "capture_runs": CaptureRun,
    "items": Item,
    "item_versions": ItemVersion,
    "media": Media,
    "stored_files": StoredFile,
    "audit_entries": AuditEntry,
}


def collect(app: App) -> dict[str, Any]:
    """The status report as plain data (the ``--json`` form is a stable interface)."""
    catalog = app.checked_catalog()
    cfg = app.config
    with catalog.reader() as s:
        counts = {
            name: s.scalar(select(func.count()).select_from(model)) or 0
            for name, model in COUNTED.items()
        }
        # PostgreSQL sums a bigint column as numeric (a Decimal): report an int.
        stored_bytes = int(s.scalar(select(func.coalesce(func.sum(StoredFile.size), 0))) or 0)
        beats = s.scalars(select(Heartbeat).order_by(Heartbeat.node)).all()
        nodes = [
            {
                "node": b.node,
                "pid": b.pid,
                "version": b.version,
                "state": b.state,
                "started_at": b.started_at.isoformat(),
                "beat_at": b.beat_at.isoformat(),
                "age_seconds": round((datetime.now(UTC) - b.beat_at).total_seconds(), 1),
                "detail": b.detail,
            }
            for b in beats
        ]
    spool = Spool(cfg.spool.path, app.store, catalog, max_bytes=cfg.spool.max_bytes).state()
    return {
        "catalog": {"url": redacted(catalog.engine.url), "schema": schema_state(catalog).current},
        "store": app.store.describe(),
        "counts": counts,
        "stored_bytes": stored_bytes,
        "spool": {
            "path": str(spool.path),
            "open_files": spool.open_files,
            "waiting_files": spool.waiting_files,
            "damaged_files": spool.damaged_files,
            "bytes": spool.bytes,
            "max_bytes": spool.max_bytes,
        },
        "nodes": nodes,
    }


def _when(value: Any, zone: ZoneInfo) -> str:
    """An ISO timestamp from a heartbeat's detail, in the configured zone (as given if odd)."""
    if not isinstance(value, str):
        return "-" if value is None else str(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _schedule_table(nodes: list[dict[str, Any]], zone: ZoneInfo) -> Table | None:
    """Per account: next run and last result, as each daemon's heartbeat reports them."""
    table = Table("node", "account", "next run", "last run", "last result", title="schedule")
    for n in nodes:
        detail = n["detail"] if isinstance(n["detail"], Mapping) else {}
        scheduled = detail.get("accounts")
        if not isinstance(scheduled, Mapping):
            continue
        for account, info in sorted(scheduled.items()):
            info = info if isinstance(info, Mapping) else {}
            result = str(info.get("last_status") or "-")
            if info.get("last_error"):
                result += f"\n{info['last_error']}"
            table.add_row(
                n["node"],
                str(account),
                _when(info.get("next_run"), zone),
                _when(info.get("last_run_at"), zone),
                result,
            )
    return table if table.row_count else None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--check",
    is_flag=True,
    help="Also check health (daemon heartbeat, stale accounts, failing credentials); "
    "exit 1 with one line per problem on stderr when anything is wrong.",
)
@click.pass_obj
def status(app: App, as_json: bool, check: bool) -> None:
    """Show catalog counts, spool state and the daemons' heartbeats."""
    app.require("officer", "legal", command="status")
    report = collect(app)
    problems = health.check(app.config, app.checked_catalog()) if check else []
    if check:
        report["problems"] = [p.as_dict() for p in problems]
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print(report, app.config.archiver.zone, checked=check)
    for problem in problems:
        click.echo(f"problem: {problem.message}", err=True)
    if problems:
        sys.exit(1)


def _print(report: dict[str, Any], zone: ZoneInfo, *, checked: bool) -> None:
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)  # piped or logged: no need to squeeze into 80
    out.print(f"catalog  {report['catalog']['url']} (schema {report['catalog']['schema']})")
    out.print(f"store    {report['store']} ({report['stored_bytes']} bytes in stored files)")
    sp = report["spool"]
    out.print(
        f"spool    {sp['path']}: {sp['open_files']} open, {sp['waiting_files']} waiting, "
        f"{sp['damaged_files']} set aside, {sp['bytes']} of {sp['max_bytes']} bytes"
    )
    counts = Table("what", "count", title="catalog")
    for name, value in report["counts"].items():
        counts.add_row(name.replace("_", " "), str(value))
    out.print(counts)
    nodes = Table("node", "pid", "state", "last beat", "version", title="daemons")
    for n in report["nodes"]:
        nodes.add_row(
            n["node"], str(n["pid"]), n["state"], f"{n['age_seconds']} s ago", n["version"]
        )
    out.print(nodes if report["nodes"] else "no daemon has run yet")
    schedule = _schedule_table(report["nodes"], zone)
    if schedule is not None:
        out.print(schedule)
    if checked:
        out.print(f"check    {health.summary(len(report['problems']))}")
