"""The catalog schema: created by migration, checked by every other command."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from archiver.catalog import Catalog, require_current, upgrade
from archiver.catalog.models import Account, Heartbeat
from archiver.catalog.schema import _alembic_config, head_revision, schema_state
from archiver.errors import CatalogError, SchemaMismatchError

TABLES = {
    "accounts",
    "capture_runs",
    "checkpoints",
    "items",
    "item_versions",
    "media",
    "stored_files",
    "warc_records",
    "fixity_events",
    "leases",
    "heartbeats",
    "audit_log",
    "item_media",
}


def test_upgrade_creates_every_table_at_head(catalog_url: str) -> None:
    cat = Catalog.open(catalog_url)
    state = upgrade(cat)
    assert state.up_to_date and state.current == head_revision()
    assert set(inspect(cat.engine).get_table_names()) >= TABLES
    require_current(cat)  # does not raise
    cat.dispose()


def test_upgrade_twice_is_a_no_op(catalog: Catalog) -> None:
    assert upgrade(catalog).up_to_date


def test_an_empty_database_is_refused_with_the_command_to_run(catalog_url: str) -> None:
    cat = Catalog.open(catalog_url)
    with pytest.raises(SchemaMismatchError, match="run `archiver catalog upgrade`"):
        require_current(cat)
    cat.dispose()


def test_every_older_revision_is_refused_and_upgrades_again(catalog: Catalog) -> None:
    script = ScriptDirectory.from_config(_alembic_config())
    older = [rev.down_revision for rev in script.walk_revisions()]
    for target in older:
        with catalog.engine.begin() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, target or "base")
        with pytest.raises(SchemaMismatchError, match="run `archiver catalog upgrade`"):
            require_current(catalog)
        assert upgrade(catalog).up_to_date


def test_a_schema_newer_than_the_code_asks_for_a_newer_archiver(catalog: Catalog) -> None:
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(SchemaMismatchError, match="upgrade the archiver package"):
        require_current(catalog)
    with pytest.raises(SchemaMismatchError, match="newer than this archiver knows"):
        upgrade(catalog)
    assert schema_state(catalog).current == "9999_future"


def test_concurrent_upgrades_serialize_and_both_succeed(catalog_url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        cat = Catalog.open(catalog_url)
        try:
            upgrade(cat)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            cat.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    cat = Catalog.open(catalog_url)
    require_current(cat)
    cat.dispose()


def test_timestamps_come_back_aware_and_in_utc(catalog: Catalog) -> None:
    chicago_noon = datetime(2026, 3, 8, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    with catalog.session() as s:
        s.add(Account(id="fb-city", platform="facebook", series="general", created_at=chicago_noon))
    with catalog.session() as s:
        got = s.scalars(select(Account.created_at)).one()
    assert got.tzinfo is not None
    assert got == chicago_noon
    assert got.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(catalog: Catalog) -> None:
    with pytest.raises((CatalogError, ValueError)), catalog.session() as s:
        s.add(
            Heartbeat(
                node="n1",
                pid=1,
                version="0",
                started_at=datetime(2026, 1, 1),
                beat_at=datetime.now(UTC),
                state="running",
            )
        )


def test_an_unreachable_database_is_a_catalog_error_without_the_password() -> None:
    cat = Catalog.open("postgresql+psycopg://archiver:s3cret-pw@127.0.0.1:1/nowhere")
    with pytest.raises(CatalogError) as info, cat.session() as s:
        s.execute(text("SELECT 1"))
    assert "s3cret-pw" not in str(info.value)
    cat.dispose()


def test_an_unsupported_database_is_refused() -> None:
    with pytest.raises(CatalogError, match="not supported"):
        Catalog.open("mysql://x@localhost/db")


def test_an_item_is_looked_up_by_its_url_through_an_index_not_a_scan(catalog: Catalog) -> None:
    """``archiver show <URL>`` at a million items: the permalink index (hash on PostgreSQL)."""
    query = "SELECT id FROM items WHERE permalink = 'https://bsky.app/profile/x/post/1'"
    with catalog.engine.connect() as conn:
        if catalog.dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # an empty table: force the choice
            plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {query}"))
        else:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
    assert "ix_items_permalink" in plan, plan
