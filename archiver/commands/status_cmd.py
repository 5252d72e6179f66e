"""``archiver status``: what the catalog holds, what the spool holds, who is running."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

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
        stored_bytes = s.scalar(select(func.coalesce(func.sum(StoredFile.size), 0))) or 0
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show catalog counts, spool state and the daemons' heartbeats."""
    app.require("officer", "legal", command="status")
    report = collect(app)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    out = Console(highlight=False)
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
