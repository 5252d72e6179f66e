"""Row-level comparison of two catalogs on natural keys (``archiver catalog rebuild --compare``).

Integer ids (``items.id``, ``item_versions.id``, ``media.id``) are each database's own and
differ between a live catalog and a rebuilt one, so rows are matched on what identifies
them anywhere: an item by (account, platform item id), a version by that and its number, a
record by its WARC-Record-ID, a file by its id, a media object by (sha256, partition). A
column pointing at another row by integer id is compared as that row's natural key.

Holds, retention events and notices and certificates are matched on the ids their control
facts carry (a hold is cited by its id everywhere), and compared column by column.

Only facts the store holds are compared (:data:`TABLES`); every other column is listed in
:data:`EXCLUDED` with the reason, and so are the tables left out entirely. Three narrower
rules, each with its reason in :data:`ROWS`:

- a stored file disposed of is gone from the store with its records, and a destroyed item's
  versions are gone too: only what the store still holds is compared;
- of a destroyed item's stub, only what its certificate records is compared
  (:data:`STUB_COLUMNS`);
- a rebuilt value that says the store does not record a fact (:data:`UNRECORDED`: the rule
  that put an item in its partition's series, the kind of a destroyed item whose
  certificate does not say) is not a difference, nor is a live NULL in a column older rows
  were written without (:data:`NOT_BACKFILLED`: a record's links, before migration 0005).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import aliased

from archiver.catalog.db import Catalog
from archiver.catalog.models import Base, Item, ItemMedia, ItemVersion, Media, StoredFile
from archiver.rebuild.replay import UNKNOWN_KIND
from archiver.rebuild.write import PARTITION_RULE

Key = tuple[Any, ...]
Row = dict[str, Any]

#: Compared columns per table, after the natural key's columns.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "accounts": (("id",), ("platform", "series")),
    "stored_files": (
        ("id",),
        ("key", "kind", "partition", "sha256", "size", "records", "state"),
    ),
    "warc_records": (
        ("record_id",),
        (
            "file_id",
            "offset",
            "length",
            "warc_type",
            "target_uri",
            "block_digest",
            "payload_digest",
            "refers_to",
            "concurrent_to",
        ),
    ),
    "items": (
        ("account_id", "platform_item_id"),
        (
            "kind",
            "parent",
            "platform_parent_id",
            "thread_id",
            "partition",
            "series",
            "permalink",
            "author",
            "created_at",
            "edited_at",
            "first_captured_at",
            "state",
            "state_changed_at",
            "text",
            "content_sha256",
            "versions",
            "series_rule",
            "disposed_at",
            "certificate_id",
        ),
    ),
    "item_versions": (
        ("account_id", "platform_item_id", "version_no"),
        (
            "content_sha256",
            "captured_at",
            "change",
            "warc_file_id",
            "warc_offset",
            "warc_length",
            "warc_record_id",
            "partition",
            "parquet_file_id",
            "text",
        ),
    ),
    "item_media": (
        ("account_id", "platform_item_id", "version_no", "position"),
        ("media", "platform_media_id", "alt_text", "status"),
    ),
    "media": (
        ("sha256", "partition"),
        (
            "size",
            "mime_type",
            "source_url",
            "warc_file_id",
            "warc_offset",
            "warc_length",
            "warc_record_id",
            "first_captured_at",
        ),
    ),
    "holds": (
        ("id",),
        (
            "case_id",
            "kind",
            "reason",
            "accounts",
            "created_from",
            "created_to",
            "query",
            "created_at",
            "created_by",
            "released_at",
            "released_by",
            "release_reason",
            "granted_on",
            "denied_on",
        ),
    ),
    "retention_events": (
        ("id",),
        ("kind", "account_id", "occurred_at", "recorded_at", "recorded_by", "note"),
    ),
    "retention_notices": (
        ("id",),
        ("series", "kind", "on", "reference", "recorded_at", "recorded_by", "note"),
    ),
    "certificates": (("id",), ("run_id", "created_at", "json_key", "html_key", "sha256")),
}

#: The columns compared for a destroyed item's stub (a row with ``disposed_at`` on either
#: side): what the certificate of destruction records of it.
STUB_COLUMNS = (
    "kind",
    "series",
    "series_rule",
    "created_at",
    "first_captured_at",
    "text",
    "content_sha256",
    "disposed_at",
    "certificate_id",
)

#: (table, column) → (the rebuilt value meaning "the store does not record it", why).
UNRECORDED: dict[tuple[str, str], tuple[Any, str]] = {
    ("items", "series_rule"): (
        PARTITION_RULE,
        "no assignment fact names the item: the store records its series (the partition "
        "its records are stored in), not the name of the rule that chose it at capture",
    ),
    ("items", "kind"): (
        UNKNOWN_KIND,
        "a destroyed item whose certificate does not say what kind of item it was",
    ),
}

#: (table, column) → why a NULL in the live catalog is not a difference: the column was
#: added later and rows written before it were not filled in; the rebuild reads the store.
NOT_BACKFILLED: dict[tuple[str, str], str] = {
    ("warc_records", "refers_to"): "rows written before migration 0005 do not carry it",
    ("warc_records", "concurrent_to"): "rows written before migration 0005 do not carry it",
}

_DESTROYED = (
    "a destroyed item's versions and their media links: their records are gone from the "
    "store, the live catalog keeps them only as text-less stubs"
)

#: Rows left out of a compared table, or compared on fewer columns, and why.
ROWS: dict[str, str] = {
    "stored_files": "files in state 'disposed' are gone from the store; the certificate of "
    "destruction lists their hashes",
    "warc_records": "records of a file in state 'disposed': gone from the store with it",
    "item_versions": _DESTROYED,
    "item_media": _DESTROYED,
    "items": "of a destroyed item's stub (disposed_at set on either side) only the columns "
    "its certificate records are compared: " + ", ".join(STUB_COLUMNS),
}

_OWN_ID = "each database's own integer id"
_RUN = "operational: capture runs are not records"
_CONFIG = "configuration, not the store"
_DAEMON = "operational: when the daemon registered and last ran the account"
_BACKEND = "store bookkeeping, read from the backend at rebuild time"
_WHOLE = "*"

#: Columns not compared, per table, and why (``*``: the whole table).
EXCLUDED: dict[str, dict[str, str]] = {
    "accounts": {
        **dict.fromkeys(("handle", "platform_id", "department", "enabled"), _CONFIG),
        **dict.fromkeys(
            ("status", "status_reason", "created_at", "last_success_at", "last_full_walk_at"),
            _DAEMON,
        ),
    },
    "stored_files": {
        **dict.fromkeys(
            ("created_at", "stored_at", "retain_until", "legal_hold", "disposed_at"), _BACKEND
        ),
        "pending_until": "disposition working state: when a deletion waiting for a "
        "COMPLIANCE lock may go ahead",
    },
    "warc_records": {"run_id": _RUN, "recorded_at": "when the catalog row was committed"},
    "items": {
        "id": _OWN_ID,
        "parent_id": "compared as `parent`, the parent's platform item id",
        "last_seen_at": "an unchanged re-capture writes no item record, so the store holds "
        "only the latest version's capture time",
    },
    "item_versions": {
        "id": _OWN_ID,
        "item_id": "compared through the key (account, platform item id)",
        "run_id": _RUN,
    },
    "item_media": {
        "version_id": "compared through the key (account, item, version)",
        "media_id": "compared as `media`, the media row's (sha256, partition)",
        "detail": "why media bytes are missing is not in the store in every case",
    },
    "media": {"id": _OWN_ID},
    "capture_runs": {_WHOLE: "operational state, not records"},
    "checkpoints": {_WHOLE: "operational state, not records"},
    "leases": {_WHOLE: "operational state, not records"},
    "heartbeats": {_WHOLE: "operational state, not records"},
    "fixity_events": {_WHOLE: "operational: checks of the stored bytes, made again later"},
    "audit_log": {_WHOLE: "lives only in the catalog; the store keeps the anchored heads"},
    "certificates": {
        "summary": "a digest of the certificate, whose whole document the store keeps at json_key"
    },
    "disposition_reports": {
        _WHOLE: "working state: a report expires; what was destroyed is in its certificate"
    },
    "disposition_report_items": {
        _WHOLE: "working state: a report's list of eligible items, re-decided at execution"
    },
    "disposition_approvals": {
        _WHOLE: "working state: the approvers are named in the certificate and the audit log"
    },
    "disposition_runs": {
        _WHOLE: "working state of an execution; its outcome is in its certificate (a rebuild "
        "writes a stand-in row for each certificate to point at)"
    },
    "disposition_steps": {
        _WHOLE: "the journal a crashed execution rolls forward from: working state"
    },
    "named_locks": {_WHOLE: "operational: who holds a catalog-wide lock now"},
}


@dataclass(frozen=True, slots=True)
class Difference:
    """One row present on one side only, or one column that differs."""

    table: str
    key: tuple[str, ...]
    kind: str  # "only_live", "only_rebuilt", "differs"
    column: str | None = None
    live: Any = None
    rebuilt: Any = None

    def describe(self, width: int = 80) -> str:
        where = f"{self.table} {' '.join(self.key)}"
        if self.kind == "only_live":
            return f"only in live:    {where}"
        if self.kind == "only_rebuilt":
            return f"only in rebuilt: {where}"
        return f"differs:         {where} {self.column}: {_short(self.live, width)} → " + _short(
            self.rebuilt, width
        )


@dataclass(slots=True)
class TableSummary:
    live: int = 0
    rebuilt: int = 0
    only_live: int = 0
    only_rebuilt: int = 0
    differing_rows: int = 0


@dataclass(slots=True)
class Comparison:
    """Every difference between two catalogs, and a count per table."""

    differences: list[Difference] = field(default_factory=list)
    tables: dict[str, TableSummary] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "tables": {name: asdict(s) for name, s in self.tables.items()},
            "differences": [asdict(d) for d in self.differences],
            "compared": {name: list(spec[1]) for name, spec in TABLES.items()},
            "excluded": EXCLUDED,
            "rows": ROWS,
            "not_backfilled": {f"{t}.{c}": why for (t, c), why in NOT_BACKFILLED.items()},
            "unrecorded": {
                f"{table}.{column}": {"value": value, "why": why}
                for (table, column), (value, why) in UNRECORDED.items()
            },
        }


def compare(live: Catalog, rebuilt: Catalog) -> Comparison:
    """Compare every table of :data:`TABLES` between ``live`` and ``rebuilt``."""
    result = Comparison()
    for table in TABLES:
        left, right = load(live, table), load(rebuilt, table)
        summary = TableSummary(live=len(left), rebuilt=len(right))
        for key in sorted(left.keys() | right.keys(), key=_sort_key):
            shown = tuple(str(k) for k in key)
            if key not in right:
                summary.only_live += 1
                result.differences.append(Difference(table, shown, "only_live"))
            elif key not in left:
                summary.only_rebuilt += 1
                result.differences.append(Difference(table, shown, "only_rebuilt"))
            else:
                lrow, rrow = left[key], right[key]
                found = [
                    Difference(table, shown, "differs", c, lrow[c], rrow[c])
                    for c in _columns(table, lrow, rrow)
                    if lrow[c] != rrow[c] and not _unrecorded(table, c, lrow[c], rrow[c])
                ]
                summary.differing_rows += bool(found)
                result.differences += found
        result.tables[table] = summary
    return result


def _columns(table: str, live: Row, rebuilt: Row) -> tuple[str, ...]:
    if table == "items" and (live["disposed_at"] or rebuilt["disposed_at"]):
        return STUB_COLUMNS
    return TABLES[table][1]


def _unrecorded(table: str, column: str, live: Any, rebuilt: Any) -> bool:
    """Whether one side's value only says that the fact is not recorded there."""
    if live is None and (table, column) in NOT_BACKFILLED:
        return True
    marker = UNRECORDED.get((table, column))
    return marker is not None and rebuilt == marker[0]


def load(catalog: Catalog, table: str) -> dict[Key, Row]:
    """One table of ``catalog`` as {natural key: compared columns}, values normalized."""
    keys, columns = TABLES[table]
    names = (*keys, *columns)
    out: dict[Key, Row] = {}
    with catalog.reader() as session:
        for row in session.execute(_query(table)):
            values = [_normal(v) for v in row]
            if table == "item_media":
                # The media row it points to, by its natural key (sha256, partition).
                sha, partition = values.pop(len(keys)), values.pop(len(keys))
                values.insert(len(keys), None if sha is None else f"{sha} {partition}")
            out[tuple(values[: len(keys)])] = dict(zip(names, values, strict=True))
    return out


def _query(table: str) -> Select[*tuple[Any, ...]]:
    if table == "items":
        parent = aliased(Item)
        i = Item
        return select(
            i.account_id,
            i.platform_item_id,
            i.kind,
            parent.platform_item_id,
            i.platform_parent_id,
            i.thread_id,
            i.partition,
            i.series,
            i.permalink,
            i.author,
            i.created_at,
            i.edited_at,
            i.first_captured_at,
            i.state,
            i.state_changed_at,
            i.text,
            i.content_sha256,
            i.versions,
            i.series_rule,
            i.disposed_at,
            i.certificate_id,
        ).outerjoin(parent, parent.id == i.parent_id)
    if table == "item_versions":
        v = ItemVersion
        return (
            select(
                Item.account_id,
                Item.platform_item_id,
                v.version_no,
                v.content_sha256,
                v.captured_at,
                v.change,
                v.warc_file_id,
                v.warc_offset,
                v.warc_length,
                v.warc_record_id,
                v.partition,
                v.parquet_file_id,
                v.text,
            )
            .join(Item, Item.id == v.item_id)
            .where(Item.disposed_at.is_(None))
        )
    if table == "item_media":
        m = ItemMedia
        return (
            select(
                Item.account_id,
                Item.platform_item_id,
                ItemVersion.version_no,
                m.position,
                Media.sha256,
                Media.partition,
                m.platform_media_id,
                m.alt_text,
                m.status,
            )
            .join(ItemVersion, ItemVersion.id == m.version_id)
            .join(Item, Item.id == ItemVersion.item_id)
            .outerjoin(Media, Media.id == m.media_id)
            .where(Item.disposed_at.is_(None))
        )
    # Every other table: its natural key's and compared columns, as they are.
    keys, columns = TABLES[table]
    t = Base.metadata.tables[table]
    query = select(*(t.c[name] for name in (*keys, *columns)))
    if table == "stored_files":
        query = query.where(StoredFile.state != "disposed")
    elif table == "warc_records":
        gone = select(StoredFile.id).where(StoredFile.state == "disposed")
        query = query.where(t.c.file_id.not_in(gone))
    return query


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, list):  # a JSON list (a hold's accounts): hashable, in differences
        return tuple(value)
    return value


def _sort_key(key: Key) -> tuple[str, ...]:
    return tuple("" if k is None else str(k) for k in key)


def _short(value: Any, width: int) -> str:
    text = "∅" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def lines(comparison: Comparison, *, limit: int | None = None) -> Iterator[str]:
    """The differences as text lines, at most ``limit`` of them, then what was left out."""
    shown = comparison.differences if limit is None else comparison.differences[:limit]
    for diff in shown:
        yield diff.describe()
    if limit is not None and len(comparison.differences) > limit:
        yield f"… and {len(comparison.differences) - limit} more (use --json for all)"
