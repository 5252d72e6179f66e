"""``archiver accounts``: every account, configured or inactive, and how its captures go.

Read-only: the daemon registers and deactivates accounts (:func:`archiver.accounts.reconcile`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table

from archiver.accounts import AccountView, overview
from archiver.app import App

#: Columns used when the output is not a terminal.
WIDE = 160


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def as_dict(view: AccountView) -> dict[str, Any]:
    """One account as the ``--json`` form gives it (a stable interface)."""
    run = view.last_run
    return {
        "id": view.id,
        "platform": view.platform,
        "handle": view.handle,
        "platform_id": view.platform_id,
        "department": view.department,
        "series": view.series,
        "configured": view.configured,
        "enabled": view.enabled,
        "status": view.status,
        "status_reason": view.status_reason,
        "registered_at": _iso(view.registered_at),
        "last_run": None
        if run is None
        else {
            "id": run.id,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "status": run.status,
            "reason": run.reason,
        },
        "last_success_at": _iso(view.last_success_at),
        "items": view.items,
    }


def local_time(value: datetime | None, zone: ZoneInfo) -> str:
    """``2026-11-23 14:05 CST`` in the configured time zone, or ``never``."""
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value is not None else "never"


def _table(views: list[AccountView], zone: ZoneInfo) -> Table:
    table = Table(title="accounts")
    table.add_column("account", no_wrap=True)
    for name in ("platform", "handle", "series", "enabled", "status", "last run"):
        table.add_column(name)
    table.add_column("last success")
    table.add_column("items", justify="right")
    for v in views:
        status = v.status + (f"\n{v.status_reason}" if v.status_reason else "")
        run = v.last_run
        last = "never"
        if run is not None:
            last = f"{local_time(run.finished_at or run.started_at, zone)} {run.status}"
            last += f"\n{run.reason}" if run.reason else ""
        table.add_row(
            v.id,
            v.platform,
            v.handle or v.platform_id or "",
            v.series,
            "yes" if v.enabled else "no",
            status,
            last,
            local_time(v.last_success_at, zone),
            str(v.items),
        )
    return table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the accounts as JSON.")
@click.pass_obj
def accounts(app: App, as_json: bool) -> None:
    """List the configured and the inactive accounts with their last runs."""
    app.require("officer", "legal", command="accounts")
    views = overview(app.config, app.checked_catalog())
    if as_json:
        click.echo(json.dumps({"accounts": [as_dict(v) for v in views]}, indent=2))
        return
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)  # piped or logged: no need to squeeze into 80
    if not views:
        out.print("no accounts: none is configured and the catalog knows none")
        return
    out.print(_table(views, app.config.archiver.zone))
