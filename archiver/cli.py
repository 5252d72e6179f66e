"""The ``archiver`` command line: one group, one module per verb group in ``commands/``.

User mistakes and refusals end as an ``ArchiverError``: its message on stderr and its exit
code (docs/architecture.md), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from archiver import __version__
from archiver.app import App
from archiver.commands import (
    accounts_cmd,
    audit_cmd,
    capture_cmd,
    catalog_cmd,
    dispose_cmd,
    disposition_cmd,
    hold_cmd,
    restore_cmd,
    retention_cmd,
    run_cmd,
    search_cmd,
    show_cmd,
    status_cmd,
    verify_cmd,
)
from archiver.errors import ArchiverError

DEFAULT_CONFIG = "/etc/archiver/config.toml"

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="archiver")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ARCHIVER_CONFIG",
    default=DEFAULT_CONFIG,
    show_default=True,
    show_envvar=True,
    help="The configuration file.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """Keep a city's official social-media accounts as public records."""
    app = App(config_path)
    ctx.obj = app
    ctx.call_on_close(app.close)


cli.add_command(run_cmd.run)
cli.add_command(catalog_cmd.catalog)
cli.add_command(audit_cmd.audit)
cli.add_command(status_cmd.status)
cli.add_command(accounts_cmd.accounts)
cli.add_command(capture_cmd.capture)
cli.add_command(capture_cmd.connectors)
cli.add_command(search_cmd.search)
cli.add_command(show_cmd.show)
cli.add_command(restore_cmd.restore)
cli.add_command(verify_cmd.verify)
cli.add_command(retention_cmd.retention)
cli.add_command(hold_cmd.hold)
retention_cmd.retention.add_command(disposition_cmd.report)
retention_cmd.retention.add_command(disposition_cmd.reports)
retention_cmd.retention.add_command(disposition_cmd.approve)
retention_cmd.retention.add_command(disposition_cmd.transfer)
retention_cmd.retention.add_command(disposition_cmd.receipt)
retention_cmd.retention.add_command(dispose_cmd.dispose)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and turn every outcome into an exit code."""
    try:
        code = cli.main(args=argv, prog_name="archiver", standalone_mode=False)
    except click.exceptions.Abort:
        stderr.print("interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ArchiverError as exc:
        # The message is plain text: "[archiver]" or "[roles]" in it are not markup.
        stderr.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
