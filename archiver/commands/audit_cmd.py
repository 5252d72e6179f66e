"""``archiver audit``: check the hash-chained audit log."""

from __future__ import annotations

import json
import sys

import click

from archiver import audit as audit_log
from archiver.app import App


@click.group()
def audit() -> None:
    """Inspect the audit log."""


@audit.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(app: App, as_json: bool) -> None:
    """Walk the whole chain, check it against the heads anchored in the store.

    Exits 0 when intact, 1 naming the first break otherwise.
    """
    app.require("officer", "legal", command="audit verify")
    report = audit_log.verify(app.checked_catalog(), app.store)
    app.record(
        "audit.verify",
        detail={
            "entries": report.entries,
            "anchors": report.anchors,
            "first_break": report.first_break,
        },
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "anchors": report.anchors,
                    "first_break": report.first_break,
                    "problems": report.problems,
                    "rebuilt_after": report.rebuilt_after,
                },
                indent=2,
            )
        )
    elif report.ok and report.rebuilt_after is not None:
        n = report.rebuilt_after
        click.echo(
            f"audit log intact since the catalog rebuild: {report.entries} entries from entry "
            f"{n + 1}, continuing the head anchored at entry {n}; entries 1..{n} were lost "
            f"with the earlier catalog and only their anchored heads remain "
            f"({report.anchors} anchored heads agree)"
        )
    elif report.ok:
        click.echo(
            f"audit log intact: {report.entries} entries, {report.anchors} anchored heads agree"
        )
    else:
        click.echo(f"audit log BROKEN at entry {report.first_break}: {report.problem}", err=True)
        for problem in report.problems[1:]:
            click.echo(f"  also: {problem}", err=True)
    if not report.ok:
        sys.exit(1)
