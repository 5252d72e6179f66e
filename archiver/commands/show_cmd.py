"""``archiver show ITEM``: one item with its thread, versions, media and history.

Read-only: the catalog (reader sessions) and, for a deletion, its ``metadata`` note in the
store (one ranged read). ITEM is a catalog id, ``ACCOUNT/PLATFORM_ITEM_ID`` (split at the
first ``/``) or a permalink: see :mod:`archiver.items`.

The Retention section is the item's retention decision now (:func:`archiver.clock.now`),
evaluated for this item only (:mod:`archiver.search.retention_view`): its series and the
rule that assigned it, the outcome with the rule or hold behind it, the eligible-on date,
the active holds covering it, and for a destroyed item's stub when it was destroyed and the
certificate of destruction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from archiver import clock, items
from archiver.app import App
from archiver.commands.accounts_cmd import WIDE
from archiver.items import ItemDetail, ItemSummary
from archiver.search import RetentionInfo
from archiver.search.retention_view import RetentionView

#: How much of an item's text a thread line shows.
SNIPPET = 70


@click.command()
@click.argument("item")
@click.option("--json", "as_json", is_flag=True, help="Print the item as JSON.")
@click.pass_obj
def show(app: App, item: str, as_json: bool) -> None:
    """Show ITEM: its thread (parent, replies), every version with capture time and hash,
    its media, and its moderation and deletion history.

    ITEM is the catalog id shown by `archiver search` (1234), ACCOUNT/PLATFORM_ITEM_ID
    (split at the first '/', so at:// ids work), or the item's permalink.
    """
    app.require("officer", "legal", command="show")
    catalog = app.checked_catalog()
    detail = items.load(catalog, items.resolve(catalog, item), store=app.store)
    view = RetentionView.load(catalog, app.config, app.schedules, clock.now())
    with catalog.reader() as s:
        retention = view.describe(s, [detail.item.id]).get(detail.item.id)
    if as_json:
        doc = items.jsonable(detail)
        doc["retention"] = retention_json(retention)
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)  # piped or logged: no need to squeeze into 80
    out.print(render(detail, app.config.archiver.zone, retention))


def retention_json(info: RetentionInfo | None) -> dict[str, Any] | None:
    """The Retention section as ``--json`` gives it."""
    if info is None:
        return None
    doc: dict[str, Any] = items.jsonable(info)
    return doc


def _rule(info: RetentionInfo) -> str:
    if info.rule is None:
        return "not recorded (captured before series assignments were recorded)"
    if info.rule == "default":
        return "default (the account's series)"
    return f"[[retention.rules]] {info.rule!r}"


def _retention_section(info: RetentionInfo, zone: ZoneInfo) -> Table:
    grid = Table.grid(padding=(0, 2))
    rows = [("series", f"{info.series}, assigned by {_rule(info)}")]
    if info.outcome == "disposed":
        rows.append(("disposed", _when(info.disposed_at, zone)))
        rows.append(("certificate", info.certificate or "-"))
    else:
        rows.append(("decision", info.outcome or "none (no schedule defines the series)"))
        rows.append(("eligible on", _when(info.eligible_on, zone)))
        if info.action is not None:
            rows.append(("then", info.action))
    rows.append(("why", info.reason))
    held = [
        f"{h.case} ({'legal hold' if h.kind == 'legal' else 'public-records request'} {h.id})"
        for h in info.holds
    ]
    rows.append(("holds", ", ".join(held) if held else "none active"))
    for name, value in rows:
        grid.add_row(Text(name, style="bold"), Text(value))
    return grid


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "-"


def _snippet(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= SNIPPET else flat[: SNIPPET - 1] + "…"


def _label(node: ItemSummary, this: ItemSummary, zone: ZoneInfo) -> Text:
    # Text objects, never markup: what people post may look like rich markup.
    label = Text()
    label.append(f"#{node.id} ", style="bold" if node.id == this.id else "")
    label.append(f"{node.kind} by {node.author or '?'} ({_when(node.created_at, zone)}): ")
    label.append(_snippet(node.text))
    if node.state != "present":
        label.append(f" [{node.state}]", style="yellow")
    if node.id == this.id:
        label.append("  ◀ this item", style="bold cyan")
    return label


def render(detail: ItemDetail, zone: ZoneInfo, retention: RetentionInfo | None = None) -> Group:
    """The readable form: header, retention, text, thread tree, versions, media, history."""
    it = detail.item
    head = Table.grid(padding=(0, 2))
    rows = [
        ("item", f"{it.id} ({it.kind}, {it.platform or '?'} account {it.account_id})"),
        ("platform id", it.platform_item_id),
        ("permalink", it.permalink or "-"),
        ("author", it.author or "-"),
        ("created", _when(it.created_at, zone)),
        ("state", f"{it.state} (since {_when(it.state_changed_at, zone)})"),
        ("captured", f"first {_when(it.first_captured_at, zone)}, "
                     f"last seen {_when(it.last_seen_at, zone)}"),
        ("series", f"{it.series} (partition {it.partition})"),
    ]  # fmt: skip
    if detail.parent is not None:
        rows.append(("in reply to", f"#{detail.parent.id} {_snippet(detail.parent.text)}"))
    elif it.platform_parent_id:
        rows.append(("in reply to", f"{it.platform_parent_id} (not captured)"))
    rows.append(("replies", str(len(detail.replies))))
    for name, value in rows:
        head.add_row(Text(name, style="bold"), Text(value))
    parts: list[RenderableType] = [head, Text("")]
    if retention is not None:
        parts += [Text("retention", style="bold underline"), _retention_section(retention, zone)]
        parts.append(Text(""))
    parts += [Text(it.text or "(no text)"), Text("")]
    tree = Tree(Text("thread", style="bold"))
    branches: list[Tree] = [tree]
    for node in detail.thread:
        del branches[node.depth + 1 :]
        branches.append(branches[-1].add(_label(node.item, it, zone)))
    if detail.thread_truncated:
        tree.add(Text(f"… and {detail.thread_truncated} more items of this thread"))
    parts.append(tree)
    versions = Table("no", "captured", "change", "content sha256", "record", title="versions")
    for v in detail.versions:
        versions.add_row(
            str(v.version_no),
            _when(v.captured_at, zone),
            v.change,
            v.content_sha256,
            Text(f"{v.record_id}\n{v.file_id} @ {v.offset}+{v.length}"),
        )
    parts.append(versions)
    if detail.media:
        media = Table("v", "#", "status", "type", "bytes", "sha256", "alt text", title="media")
        for m in detail.media:
            media.add_row(
                str(m.version_no),
                str(m.position + 1),
                m.status if not m.detail else f"{m.status}: {m.detail}",
                m.mime_type or "-",
                str(m.size) if m.size is not None else "-",
                m.sha256 or "-",
                Text(m.alt_text or "-"),
            )
        parts.append(media)
    if detail.history:
        history = Table("when", "version", "what", "evidence", title="moderation and deletion")
        for e in detail.history:
            what = e.what + (f"\n{e.note}" if e.note else "")
            history.add_row(
                _when(e.at, zone), str(e.version_no), Text(what), Text(e.evidence or e.record_id)
            )
        parts.append(history)
    else:
        parts.append(Text("no moderation or deletion recorded"))
    return Group(*parts)
