"""The row-level comparison finds every changed state, hash and pointer, by natural key."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from archiver.catalog import Catalog
from archiver.catalog.models import Base, Item, ItemVersion, WarcRecord
from archiver.rebuild import Difference, compare, rebuild
from archiver.rebuild.compare import (
    EXCLUDED,
    NOT_BACKFILLED,
    ROWS,
    STUB_COLUMNS,
    TABLES,
    UNRECORDED,
    lines,
)
from tests.rebuild.conftest import Small


def test_a_changed_state_hash_and_pointer_and_a_missing_record_are_each_reported(
    small: Small, target: Catalog
) -> None:
    rebuild(small.store, target, actor="records-officer", accounts=small.accounts)
    assert compare(small.catalog, target).clean
    with target.session() as s:
        item = s.scalars(select(Item).where(Item.kind == "post").order_by(Item.id)).first()
        assert item is not None
        version = s.scalars(select(ItemVersion).where(ItemVersion.item_id == item.id)).one()
        record = s.scalars(select(WarcRecord).where(WarcRecord.warc_type == "request")).first()
        assert record is not None
        key = ("mke-small", item.platform_item_id)
        was = (item.state, version.content_sha256, version.warc_offset, record.record_id)
        s.execute(update(Item).where(Item.id == item.id).values(state="deleted"))
        s.execute(
            update(ItemVersion)
            .where(ItemVersion.id == version.id)
            .values(content_sha256="0" * 64, warc_offset=version.warc_offset + 7)
        )
        s.execute(delete(WarcRecord).where(WarcRecord.record_id == record.record_id))

    comparison = compare(small.catalog, target)

    state, sha, offset, record_id = was
    assert set(comparison.differences) == {
        Difference("items", key, "differs", "state", state, "deleted"),
        Difference("item_versions", (*key, "1"), "differs", "content_sha256", sha, "0" * 64),
        Difference("item_versions", (*key, "1"), "differs", "warc_offset", offset, offset + 7),
        Difference("warc_records", (record_id,), "only_live"),
    }
    assert comparison.tables["item_versions"].differing_rows == 1
    assert comparison.tables["warc_records"].only_live == 1
    text = list(lines(comparison))
    assert f"differs:         items {' '.join(key)} state: {state} → deleted" in text
    assert f"only in live:    warc_records {record_id}" in text


def test_every_column_of_the_catalog_is_either_compared_or_excluded_with_a_reason() -> None:
    for table in Base.metadata.sorted_tables:
        keys, compared = TABLES.get(table.name, ((), ()))
        excluded = EXCLUDED.get(table.name, {})
        for column in table.columns:
            assert (
                column.name in (*keys, *compared) or column.name in excluded or "*" in excluded
            ), f"{table.name}.{column.name} is neither compared nor excluded with a reason"


def test_every_rule_of_the_comparison_names_real_tables_and_compared_columns_with_a_reason() -> (
    None
):
    tables = Base.metadata.tables
    # Columns of the rows they point at, or of their item, joined in (see EXCLUDED's reasons).
    item = {"account_id", "platform_item_id"}
    through = {
        "items": {"parent"},
        "item_versions": item,
        "item_media": {*item, "version_no", "media"},
    }
    for name, (keys, compared) in TABLES.items():
        assert name in tables and not set(EXCLUDED.get(name, {})) & {*keys, *compared}, name
        columns = set(tables[name].columns.keys()) | through.get(name, set())
        assert {*keys, *compared} <= columns, name
    for name, excluded in EXCLUDED.items():
        assert name in tables and all(why.strip() for why in excluded.values()), name
        assert set(excluded) - {"*"} <= set(tables[name].columns.keys()), name
    assert set(STUB_COLUMNS) <= set(TABLES["items"][1])
    for table, column in (*UNRECORDED, *NOT_BACKFILLED):
        assert column in TABLES[table][1], (table, column)
    assert set(ROWS) <= set(TABLES) and all(why.strip() for why in ROWS.values())
    # The retention tables are compared, the disposition's working state is not.
    assert {"holds", "retention_events", "retention_notices", "certificates"} <= set(TABLES)
    for working in (
        "disposition_reports",
        "disposition_report_items",
        "disposition_approvals",
        "disposition_runs",
        "disposition_steps",
        "named_locks",
    ):
        assert set(EXCLUDED[working]) == {"*"}, working
