"""``archiver catalog``: schema upgrade (rebuild arrives with issue 6)."""

from __future__ import annotations

import click

from archiver.app import App
from archiver.catalog import upgrade as upgrade_schema
from archiver.catalog.db import redacted
from archiver.catalog.schema import schema_state
from archiver.store import ensure_layout


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
