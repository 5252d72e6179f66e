"""``archiver run``: the daemon (systemd runs this)."""

from __future__ import annotations

import click

from archiver.app import App
from archiver.daemon import Daemon
from archiver.logging import configure_logging


@click.command()
@click.pass_obj
def run(app: App) -> None:
    """Run the archiver until SIGTERM or Ctrl-C: migrate, recover the spool, heartbeat."""
    cfg = app.config
    configure_logging(cfg.logging.level, cfg.logging.format)
    daemon = Daemon(app)
    daemon.install_signal_handlers()
    daemon.start()
    click.echo(
        f"archiver running as node {cfg.archiver.node}: catalog {cfg.catalog.url}, "
        f"store {app.store.describe()}, spool {cfg.spool.path}. Stop with Ctrl-C.",
        err=True,
    )
    try:
        daemon.serve()
    finally:
        daemon.stop()
