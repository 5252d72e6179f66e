"""Carrying out a disposition on a captured archive, on SQLite and on PostgreSQL.

The corpus is captured, rolled into Parquet and placed in series (tests/disposition/
disposing.py). A report is made as of 2034-04-01, when the comments and posts may go; then
a legal hold is placed on one comment (the café reply), so the execution must find it held
when it re-checks. After the disposition, the destroyed items' phrases are looked for
everywhere they could survive: every record of every stored WARC, Parquet read through
DuckDB, the catalog database's files on disk, the spool. Each probe is shown to work by
finding a kept item's phrase. The last test releases the hold and disposes of the café
reply in a second report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from archiver import audit, fixity
from archiver.catalog import Catalog
from archiver.catalog.models import (
    AuditEntry,
    Certificate,
    DispositionReport,
    DispositionRun,
    Item,
    ItemMedia,
    ItemVersion,
)
from archiver.disposition.execute import DisposeResult, dispose
from archiver.evaluate import matching_item_ids
from archiver.housekeeping import Housekeeping
from archiver.restore import plan_restore
from tests.commands.clitools import catalog_section
from tests.disposition.disposing import (
    BEFORE_ELIGIBLE,
    BRUSH,
    COFFEE,
    ELIGIBLE,
    KEPT,
    KEPT_PHRASE,
    LATER,
    LEAVES_ALT,
    NOTICE,
    NOW,
    OAK,
    PLOW,
    WAIVER,
    Installation,
    catalogued_records,
    certificate,
    database,
    files_containing,
    installation,
    parquet_rows_containing,
    postgres_relation_files,
    postgres_rows_containing,
    records_containing,
    stored_files,
    stored_warcs,
    tree,
)
from tests.warctools import assert_all_digests_pass

GONE_PHRASES = (PLOW, BRUSH, OAK, LEAVES_ALT)


@dataclass
class Disposed:
    """An archive right after one disposition, and what it looked like before."""

    inst: Installation
    kind: str
    early_report: str
    report_id: str
    hold_id: int
    records_before: dict[str, str]
    files_before: dict[str, tuple[str, str]]
    result: DisposeResult

    @property
    def store_root(self) -> Path:
        return self.inst.ws.store_root

    @property
    def destroyed(self) -> set[int]:
        return self.inst.ids(*ELIGIBLE) - self.inst.ids("cafe_reply")

    def cert(self) -> dict[str, object]:
        return certificate(self.store_root, self.result.certificate_id)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def disposed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Disposed]:
    root = tmp_path_factory.mktemp(f"dispose-{request.param}")
    with database(request.param, root, request) as url, pytest.MonkeyPatch.context() as mp:
        for name, value in catalog_section(url)[1].items():
            mp.setenv(name, value)  # the in-process App reads the password from it
        inst = installation(root, catalog_url=url)
        if request.param == "sqlite":
            insecure_by_default(inst.catalog)
        try:
            early = inst.report(BEFORE_ELIGIBLE)
            report_id = inst.report(NOW)
            hold_id = inst.hold('"Free coffee"')  # after the report: execution must see it
            before = catalogued_records(inst.catalog)
            files = stored_files(inst.catalog)
            result = dispose(inst.app, report_id, now=NOW)
            yield Disposed(inst, request.param, early, report_id, hold_id, before, files, result)
        finally:
            inst.close()


def insecure_by_default(catalog: Catalog) -> None:
    """Make SQLite leave deleted bytes in place unless told otherwise, as a default build
    does (Debian's turns ``secure_delete`` on for every connection): the disposition must
    turn it on itself."""

    def _off(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA secure_delete = OFF")

    event.listen(catalog.engine, "connect", _off)
    catalog.engine.dispose()


def _kept_exchanges(d: Disposed, cert: dict[str, object] | None = None) -> set[str]:
    doc = cert or d.cert()
    kept = doc["exchanges_kept"]
    assert isinstance(kept, list)
    return {e["record_id"] for e in kept}


# -- what goes and what stays ------------------------------------------------------------


def test_items_age_into_eligibility_only_when_their_retention_ends(disposed: Disposed) -> None:
    inst = disposed.inst
    comments = inst.ids("plow_reply", "cafe_reply", "deleted_reply", "mastodon_reply")
    assert not inst.report_items(disposed.early_report) & comments
    assert inst.report_items(disposed.report_id) == inst.ids(*ELIGIBLE)


def test_a_hold_placed_after_the_report_keeps_its_item_at_execution(disposed: Disposed) -> None:
    cafe = disposed.inst.ids("cafe_reply")
    excluded = {e["item_id"]: e["reason"] for e in disposed.result.excluded}
    assert set(excluded) == cafe
    assert excluded[next(iter(cafe))].startswith("held")
    assert disposed.result.state == "done"
    assert disposed.result.items == len(disposed.destroyed)
    with disposed.inst.catalog.reader() as s:
        cafe_row = s.get(Item, next(iter(cafe)))
        assert cafe_row is not None and cafe_row.disposed_at is None
        assert cafe_row.text is not None and COFFEE in cafe_row.text


def test_destroyed_items_become_stubs_pointing_at_the_certificate(disposed: Disposed) -> None:
    with disposed.inst.catalog.reader() as s:
        stubs = s.scalars(select(Item).where(Item.id.in_(disposed.destroyed))).all()
        assert {i.id for i in stubs} == disposed.destroyed
        for item in stubs:
            assert (item.text, item.author, item.permalink, item.edited_at) == (None,) * 4
            assert item.disposed_at == NOW
            assert item.certificate_id == disposed.result.certificate_id
            assert item.content_sha256 and item.series and item.first_captured_at
        texts = s.scalars(
            select(ItemVersion.text).where(ItemVersion.item_id.in_(disposed.destroyed))
        ).all()
        assert texts and all(t is None for t in texts)
        alts = s.scalars(
            select(ItemMedia.alt_text)
            .join(ItemVersion, ItemVersion.id == ItemMedia.version_id)
            .where(ItemVersion.item_id.in_(disposed.destroyed))
        ).all()
        assert alts and all(a is None for a in alts)
        assert not matching_item_ids(s, '"plow missed"')
        assert not matching_item_ids(s, '"leaf collection route"')
        assert matching_item_ids(s, '"bestdeals"') == disposed.inst.ids("hidden_reply")
        report = s.get(DispositionReport, disposed.report_id)
        assert report is not None and report.status == "disposed"


def test_no_stored_record_holds_a_destroyed_phrase_but_the_exchanges_the_certificate_keeps(
    disposed: Disposed,
) -> None:
    kept = _kept_exchanges(disposed)
    assert kept, "the snow thread still evidences the held and the moderated replies"
    for phrase in GONE_PHRASES:
        for found in records_containing(disposed.store_root, phrase):
            assert found.warc_type == "response", (phrase, found)
            assert found.record_id in kept, (phrase, found)
    assert records_containing(disposed.store_root, BRUSH) == []
    assert records_containing(disposed.store_root, OAK) == []
    # The probe does look: the moderated reply's phrase is in its stored records.
    assert any(f.warc_type == "conversion" for f in records_containing(
        disposed.store_root, KEPT_PHRASE))  # fmt: skip


def test_parquet_read_through_duckdb_holds_no_destroyed_text(disposed: Disposed) -> None:
    for phrase in GONE_PHRASES:
        assert parquet_rows_containing(disposed.store_root, phrase) == 0, phrase
    assert parquet_rows_containing(disposed.store_root, KEPT_PHRASE) >= 1
    assert parquet_rows_containing(disposed.store_root, COFFEE) >= 1


def test_the_catalog_database_holds_no_destroyed_text_on_disk(disposed: Disposed) -> None:
    catalog = disposed.inst.catalog
    if disposed.kind == "sqlite":
        db = disposed.inst.ws.var / "catalog.sqlite3"
        files = [db, db.with_name(db.name + "-wal")]
    else:
        assert postgres_rows_containing(catalog, KEPT_PHRASE)
        for phrase in GONE_PHRASES:
            assert postgres_rows_containing(catalog, phrase) == {}, phrase
        files = postgres_relation_files(catalog)
    for phrase in GONE_PHRASES:
        assert files_containing(files, phrase) == [], phrase
    assert files_containing(files, KEPT_PHRASE), "the probe reads the database's files"


def test_the_spool_holds_no_destroyed_text(disposed: Disposed) -> None:
    spool = disposed.inst.app.spool_dir
    for phrase in (*GONE_PHRASES, KEPT_PHRASE):
        assert files_containing(tree(spool), phrase) == [], phrase


def test_kept_items_in_rewritten_files_still_verify_and_restore(disposed: Disposed) -> None:
    inst = disposed.inst
    assert disposed.result.files_compacted and disposed.result.files_deleted
    files = stored_files(inst.catalog)
    stored = [fid for fid, (_key, state) in files.items() if state == "stored"]
    results = list(fixity.verify_files(inst.catalog, inst.app.store, stored))
    assert results and all(r.ok for r in results), [r.detail for r in results if not r.ok]
    assert_all_digests_pass(stored_warcs(disposed.store_root))
    with inst.catalog.reader() as s:
        versions = s.execute(
            select(ItemVersion.item_id, ItemVersion.version_no).where(
                ItemVersion.item_id.in_(inst.ids(*KEPT, "cafe_reply"))
            )
        ).all()
    assert len(versions) >= 5
    for item_id, version_no in versions:
        plan = plan_restore(inst.catalog, inst.app.store, item_id, version=version_no)
        assert plan.files


def test_no_file_is_left_both_old_and_new(disposed: Disposed) -> None:
    files = stored_files(disposed.inst.catalog)
    on_disk = {str(p.relative_to(disposed.store_root)) for p in stored_warcs(disposed.store_root)}
    for c in disposed.result.files_compacted:
        assert files[c["old_file_id"]][1] == "disposed"
        assert files[c["new_file_id"]][1] == "stored"
        assert c["old_key"] not in on_disk
    for d in disposed.result.files_deleted:
        assert files[d["file_id"]][1] == "disposed"
        assert d["key"] not in on_disk
    catalogued = {key for key, state in files.values() if state == "stored" and "warc/" in key}
    assert catalogued == on_disk


def test_the_certificate_lists_exactly_what_went(disposed: Disposed) -> None:
    cert = disposed.cert()
    items = cert["items"]
    assert isinstance(items, list)
    assert {i["item_id"] for i in items} == disposed.destroyed
    after = catalogued_records(disposed.inst.catalog)
    gone = set(disposed.records_before) - set(after)
    listed = cert["records_destroyed"]
    assert isinstance(listed, list)
    assert {r["record_id"] for r in listed} == gone
    assert not _kept_exchanges(disposed, cert) & gone
    assert cert["notices"] == {"EXAMPLE-COMMENTS": [NOTICE], "social-media": [WAIVER]}
    assert {e["item_id"] for e in cert["excluded"]} == disposed.inst.ids("cafe_reply")  # type: ignore[union-attr]
    deleted = {f["key"] for f in [*cert["files_deleted"], *cert["parquet_deleted"]]}  # type: ignore[misc]
    assert deleted == {d["key"] for d in disposed.result.files_deleted}
    assert any(k.startswith("parquet/") for k in deleted)
    kept = cert["exchanges_kept"]
    assert isinstance(kept, list)
    for exchange in kept:
        assert exchange["evidences_items_kept"]
        if disposed.inst.ids("cafe_reply") & set(exchange["evidences_items_kept"]):
            assert exchange["follows_on"] is None and "held" in exchange["why"]
    html = (
        disposed.store_root / "control" / "certificates" / f"{disposed.result.certificate_id}.html"
    )
    assert html.is_file()
    with disposed.inst.catalog.reader() as s:
        run = s.get(DispositionRun, disposed.result.run_id)
        assert run is not None and run.state == "done"
        assert s.get(Certificate, disposed.result.certificate_id) is not None


def test_the_audit_chain_verifies_and_ends_with_the_certificate(disposed: Disposed) -> None:
    inst = disposed.inst
    assert audit.verify(inst.catalog, inst.app.store).ok
    with inst.catalog.reader() as s:
        entry = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "retention.disposed")
            .order_by(AuditEntry.seq.desc())
        ).first()
        cert_row = s.get(Certificate, disposed.result.certificate_id)
    assert entry is not None and cert_row is not None
    assert entry.subject == cert_row.id and entry.detail["sha256"] == cert_row.sha256
    head = disposed.cert()["audit_head"]
    assert isinstance(head, dict) and head["seq"] < entry.seq


def test_a_released_hold_lets_its_item_go_in_the_next_disposition(disposed: Disposed) -> None:
    inst = disposed.inst
    inst.release(disposed.hold_id, datetime(2034, 4, 2, tzinfo=UTC))
    second = inst.report(LATER)
    assert inst.report_items(second) == inst.ids("cafe_reply")
    result = dispose(inst.app, second, now=LATER)
    assert result.items == 1 and not result.excluded
    cert = certificate(disposed.store_root, result.certificate_id)
    kept = _kept_exchanges(disposed, cert)
    for found in records_containing(disposed.store_root, COFFEE):
        assert found.record_id in kept, found
    for exchange in cert["exchanges_kept"]:  # type: ignore[union-attr]
        assert exchange["evidences_items_kept"] == sorted(inst.ids("hidden_reply"))
    assert parquet_rows_containing(disposed.store_root, COFFEE) == 0
    stored = [fid for fid, (_k, state) in stored_files(inst.catalog).items() if state == "stored"]
    assert all(r.ok for r in fixity.verify_files(inst.catalog, inst.app.store, stored))
    assert audit.verify(inst.catalog, inst.app.store).ok


def test_the_daemons_scheduled_job_only_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = installation(tmp_path)
    try:
        records, files = catalogued_records(inst.catalog), stored_files(inst.catalog)
        monkeypatch.setenv("ARCHIVER_NOW", NOW.isoformat())
        jobs = Housekeeping(inst.app.config, inst.catalog, inst.app.store)
        report_id = jobs.disposition_report()
        assert report_id is not None
        assert inst.report_items(report_id) == inst.ids(*ELIGIBLE)
        assert catalogued_records(inst.catalog) == records
        assert stored_files(inst.catalog) == files
        with inst.catalog.reader() as s:
            assert s.scalars(select(DispositionRun)).first() is None
            assert s.scalars(select(Item).where(Item.disposed_at.is_not(None))).first() is None
        monkeypatch.setenv("ARCHIVER_NOW", BEFORE_ELIGIBLE.replace(year=2027).isoformat())
        assert jobs.disposition_report() is None  # nothing eligible: no report to review
    finally:
        inst.close()
