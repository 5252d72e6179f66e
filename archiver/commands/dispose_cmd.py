"""``archiver retention dispose REPORT [--resume] [--json]``: carry out a disposition report.

Officer only. The report's items are evaluated again under the retention lock; those no
longer eligible are excluded (listed), the rest are destroyed: whole files deleted, partly
eligible files compacted, the catalog's copies scrubbed, and a certificate of destruction
stored permanently (:mod:`archiver.disposition.execute`). ``--resume`` finishes a run a
crash interrupted, and deletes objects that waited for a COMPLIANCE lock once it has ended.

Exit codes: 0 done (or done except objects pending a COMPLIANCE lock, listed); 7 refused
(report expired or carried out, approval missing, notice to the historical society not yet
recorded, a capture holding an account, an unfinished run without ``--resume``): nothing is
destroyed; 8 not an officer; 6 store failure and 90 integrity failure mid-way: the run stays
unfinished, fix the cause and ``--resume``.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from archiver.app import App
from archiver.commands.accounts_cmd import WIDE
from archiver.disposition.execute import DisposeResult
from archiver.disposition.execute import dispose as run_disposition
from archiver.logging import configure_logging

#: Excluded items printed one per line; the rest are counted (``--json`` lists every one).
SHOWN_EXCLUDED = 20


def _print(result: DisposeResult, where: str) -> None:
    # No markup: keys, titles and reasons are text, whatever brackets they hold.
    out = Console(highlight=False, markup=False)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)  # keys stay on one line in a log or a pipe
    verb = "finished" if result.resumed else "carried out"
    state = "done" if result.state == "done" else f"{result.state} (see below)"
    out.print(f"disposition of report {result.report_id} {verb}: run {result.run_id}, {state}")
    table = Table("series", "title", "items destroyed")
    for s in result.series:
        table.add_row(Text(s["code"]), Text(s["title"]), Text(str(s["count"])))
    out.print(table)
    out.print(
        f"files deleted: {len(result.files_deleted)}; files compacted (records that stay "
        f"copied to a new file, the old one deleted): {len(result.files_compacted)}; raw "
        f"exchanges kept because kept items still refer to them: {result.exchanges_kept}"
    )
    for c in result.files_compacted:
        out.print(Text(f"  {c['old_key']} -> {c['new_key']}"))
    for p in result.pending:
        out.print(
            Text(
                f"pending: {p['key']} is locked until {p['retain_until']}; delete it then with "
                f"`archiver retention dispose {result.report_id} --resume`"
            )
        )
    for note in result.notes:
        out.print(Text(f"note: {note}"))
    if result.excluded:
        out.print(f"excluded (not destroyed): {len(result.excluded)} item(s)")
        for e in result.excluded[:SHOWN_EXCLUDED]:
            out.print(Text(f"  item {e['item_id']}: {e['reason']}"))
        if len(result.excluded) > SHOWN_EXCLUDED:
            out.print(f"  … {len(result.excluded) - SHOWN_EXCLUDED} more (--json lists all)")
    if result.certificate_json:
        out.print(
            Text(
                f"certificate of destruction {result.certificate_id} (sha256 "
                f"{result.certificate_sha256}) in {where}:\n  {result.certificate_json}\n  "
                f"{result.certificate_html}"
            )
        )


@click.command("dispose")
@click.argument("report_id", metavar="REPORT")
@click.option(
    "--resume",
    is_flag=True,
    help="Finish this report's interrupted disposition, and delete objects that waited for "
    "a COMPLIANCE lock once it has ended.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_obj
def dispose(app: App, report_id: str, resume: bool, as_json: bool) -> None:
    """Carry out disposition report REPORT: destroy its items still eligible now, keep a stub
    of each, and store a certificate of destruction."""
    app.require("officer", command="retention dispose")
    configure_logging(app.config.logging.level, app.config.logging.format)
    result = run_disposition(app, report_id, resume=resume)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        return
    _print(result, app.store.describe())
