"""``archiver retention``: records series, assignments, events, notices and disposition."""

from __future__ import annotations

import click


@click.group()
def retention() -> None:
    """Retention schedules, series assignments, events, notices and disposition."""
