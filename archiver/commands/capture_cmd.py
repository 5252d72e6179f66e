"""``archiver capture ACCOUNT`` and ``archiver connectors``."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from archiver import plugins
from archiver.app import App
from archiver.capture import CaptureRunner, RunStats
from archiver.logging import configure_logging


@click.command()
@click.argument("account")
@click.option(
    "--full/--incremental",
    "full_walk",
    default=None,
    help="Walk the whole account, or only what is new and the rescan window "
    "(default: as the account's full_walk_days says).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's result as JSON.")
@click.pass_obj
def capture(app: App, account: str, full_walk: bool | None, as_json: bool) -> None:
    """Capture one configured ACCOUNT now; exits 1 when the run is not complete."""
    app.require("officer", command="capture")
    cfg = app.config
    configure_logging(cfg.logging.level, cfg.logging.format)
    catalog = app.checked_catalog()
    runner = CaptureRunner(cfg, catalog, app.store, app.warc_info())
    console = Console(stderr=True)
    if console.is_terminal and not as_json:
        with Live(_progress(account, RunStats()), console=console, transient=True) as live:
            result = runner.capture(
                account, full_walk=full_walk, progress=lambda s: live.update(_progress(account, s))
            )
    else:
        result = runner.capture(account, full_walk=full_walk)
    rolled = runner.roll_parquet(account)
    app.record(
        "capture.run",
        subject=account,
        detail={"run_id": result.run_id, "status": result.status, "reason": result.reason},
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "account": result.account,
                    "status": result.status,
                    "reason": result.reason,
                    "stats": result.stats,
                    "parquet": [r.key for r in rolled],
                },
                indent=2,
            )
        )
    else:
        s = result.stats
        click.echo(
            f"run {result.run_id} of {account}: {result.status}"
            + (f" ({result.reason})" if result.reason else "")
            + f"; {s['items_seen']} items seen: {s['new']} new, {s['edited']} edited, "
            f"{s['hidden']} hidden, {s['deleted']} deleted, {s['unchanged']} unchanged; "
            f"media {s['media_stored']} stored, {s['media_revisits']} already held, "
            f"{s['media_failed'] + s['media_too_large']} missing; "
            f"{len(rolled)} Parquet file(s) written"
        )
    if result.status != "complete":
        sys.exit(1)


def _progress(account: str, stats: RunStats) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{account}[/]",
        f"pages {stats.pages}",
        f"items {stats.items_seen}",
        f"new {stats.new}",
        f"edited {stats.edited}",
        f"media {stats.media_stored + stats.media_revisits}",
    )
    return table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def connectors(as_json: bool) -> None:
    """List the installed connectors (the archiver.connectors entry points) with versions."""
    found = plugins.installed()
    if as_json:
        click.echo(json.dumps([_asdict(c) for c in found], indent=2))
        return
    table = Table("platform", "connector", "package", "version")
    for c in found:
        table.add_row(c.platform, c.target, c.distribution or "?", c.version or "?")
    Console(highlight=False).print(table)


def _asdict(c: plugins.InstalledConnector) -> dict[str, str | None]:
    return {
        "platform": c.platform,
        "target": c.target,
        "distribution": c.distribution,
        "version": c.version,
    }
