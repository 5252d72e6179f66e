"""``archiver run``: the daemon (systemd runs this as a ``Type=notify`` service)."""

from __future__ import annotations

import os
import sys

import click

from archiver.app import App
from archiver.daemon import Daemon
from archiver.logging import configure_logging


@click.command()
@click.pass_obj
def run(app: App) -> None:
    """Run the archiver until SIGTERM or Ctrl-C: captures on schedule, heartbeat, housekeeping.

    SIGHUP reloads the configuration (an invalid file is refused and the running schedule
    kept). SIGUSR1 is a diagnostic: it wedges the heartbeat job so that systemd's watchdog
    restarts the service.
    """
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
    clean = False
    try:
        daemon.serve()
    finally:
        clean = daemon.stop()
    if not clean:
        # A run did not reach its commit within stop_timeout: its thread cannot be joined,
        # so leave now; start-up recovery finds what it left in the spool.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
