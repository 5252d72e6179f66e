"""Certificates of destruction: canonical JSON, a readable escaped HTML page, stored for good."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver import __version__
from archiver.catalog import Catalog
from archiver.catalog.models import (
    Certificate,
    DispositionReport,
    DispositionRun,
    StoredFile,
)
from archiver.control import read_facts
from archiver.disposition.certificate import (
    FORMAT,
    LONG,
    CertificateData,
    certificate_json,
    parse_certificate,
    render_html,
    write_certificate,
)
from archiver.errors import IntegrityError, RetentionError
from archiver.store import LocalStore
from archiver.store.base import put_bytes
from archiver.store.locking import LockingStore, default_lock
from tests.corpus import INFO

HOSTILE = '<script>alert("x")</script>'
EXECUTED_AT = "2034-04-01T12:30:00+00:00"
FILE = "01J0FILE000000000000000001"


def sample(
    *, certificate_id: str = "01J0CERTIFICATE00000000001", records: int = 3
) -> CertificateData:
    """A certificate as a disposition run fills it, with hostile text where people type."""
    return CertificateData(
        certificate_id=certificate_id,
        run_id="01J0RUN0000000000000000001",
        report_id="01J0REPORT0000000000000001",
        executed_by="alice (via sudo as archiver)",
        executed_at=EXECUTED_AT,
        approvers=["bob & <carol>"],
        notices={"EXAMPLE-COMMENTS": ["WHS-2034-007"], "EXAMPLE-TRANSITORY": []},
        audit_head=(42, "ab" * 32),
        series=[
            {
                "code": "EXAMPLE-COMMENTS",
                "title": f"Comments {HOSTILE}",
                "authority": "Wis. Stat. § 19.21(4)(b)",
                "count": 2,
                "earliest_created": "2026-01-12T15:02:00+00:00",
                "latest_created": "2026-01-20T12:00:00+00:00",
            }
        ],
        items=[
            {
                "item_id": 5,
                "account": "mke-bluesky",
                "platform_item_id": f'at://did:plc:x/"><img src=x onerror=alert(1)>{HOSTILE}',
                "kind": "comment",
                "series": "EXAMPLE-COMMENTS",
                "created_at": "2026-01-12T15:02:00+00:00",
                "first_captured_at": "2026-11-24T02:26:41+00:00",
                "content_sha256": "c" * 64,
                "versions": 1,
            },
            {
                "item_id": 10,
                "account": "mke-dpw-mastodon",
                "platform_item_id": "115926604185600004",
                "kind": "comment",
                "series": "EXAMPLE-COMMENTS",
                "created_at": None,
                "first_captured_at": "2026-11-24T02:26:41+00:00",
                "content_sha256": None,
                "versions": 2,
            },
        ],
        files_deleted=[
            {
                "file_id": "01J0FILE000000000000000001",
                "key": f"warc/EXAMPLE-COMMENTS/mke-bluesky/2026-01/{FILE}.warc.gz",
                "sha256": "d" * 64,
                "size": 12345,
                "records": 4,
            }
        ],
        files_compacted=[
            {
                "old_file_id": "01J0FILE000000000000000002",
                "old_key": "warc/x/a/2026-01/01J0FILE000000000000000002.warc.gz",
                "old_sha256": "e" * 64,
                "new_file_id": "01J0FILE000000000000000003",
                "new_key": "warc/x/a/2026-01/01J0FILE000000000000000003.warc.gz",
                "new_sha256": "f" * 64,
                "dropped": [
                    {
                        "record_id": "<urn:uuid:1>",
                        "warc_type": "conversion",
                        "block_digest": "sha256:AAAA",
                    }
                ],
            }
        ],
        records_destroyed=[
            {
                "record_id": f"<urn:uuid:{n}>",
                "warc_type": "conversion",
                "block_digest": f"sha256:B{n}",
                "file_id": "01J0FILE000000000000000001",
            }
            for n in range(records)
        ],
        exchanges_kept=[
            {
                "record_id": "<urn:uuid:ex>",
                "file_id": "01J0FILE000000000000000009",
                "evidences_items_kept": [4, 7],
                "follows_on": "2037-01-01T06:00:00+00:00",
                "why": "the API page also holds the moderated comment",
            }
        ],
        pending=[
            {
                "file_id": "01J0FILE000000000000000008",
                "key": "warc/x/a/2026-01/01J0FILE000000000000000008.warc.gz",
                "retain_until": "2034-06-01T00:00:00+00:00",
                "why": "COMPLIANCE lock",
            }
        ],
        excluded=[{"item_id": 3, "reason": f"held by legal hold 1 (case {HOSTILE})"}],
    )


# --- the JSON -----------------------------------------------------------------------------


def test_the_json_certificate_round_trips_and_names_its_format_and_software() -> None:
    data = sample()
    raw = certificate_json(data, operator="City of Milwaukee")

    assert parse_certificate(raw) == data
    doc = json.loads(raw)
    assert doc["format"] == FORMAT == "city-archiver certificate of destruction v1"
    assert doc["software"] == f"city-archiver/{__version__}"
    assert doc["operator"] == "City of Milwaukee"
    assert doc["audit_head"] == {"seq": 42, "hash": "ab" * 32}
    # Canonical: sorted keys, so the same data always gives the same bytes.
    assert list(doc) == sorted(doc)
    assert raw == certificate_json(sample(), operator="City of Milwaukee")
    # JSON keeps the text exactly; only the page escapes it.
    assert doc["series"][0]["title"] == f"Comments {HOSTILE}"


def test_a_document_in_another_format_is_not_read_as_a_certificate() -> None:
    with pytest.raises(IntegrityError, match="not a certificate of destruction"):
        parse_certificate(json.dumps({"format": "something else"}).encode())
    with pytest.raises(IntegrityError, match="not JSON"):
        parse_certificate(b"<html>")


# --- the page -----------------------------------------------------------------------------


class Tags(HTMLParser):
    """Every start tag and attribute of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes |= {name for name, _ in attrs}

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def test_hostile_text_in_ids_titles_and_reasons_is_escaped_and_never_markup() -> None:
    page = render_html(sample(), operator="City of <b>Milwaukee</b>")
    tags = parsed(page)

    assert "script" not in tags.tags and "img" not in tags.tags and "b" not in tags.tags
    assert not {"src", "href", "onerror"} & tags.attributes
    text = "".join(tags.text)
    # The text reads as typed.
    assert HOSTILE in text
    assert 'at://did:plc:x/"><img src=x onerror=alert(1)>' in text
    assert "City of <b>Milwaukee</b>" in text
    assert "bob & <carol>" in text


def test_the_page_is_self_contained_and_states_what_a_reader_needs() -> None:
    page = render_html(sample(), operator="City of Milwaukee", json_sha256="9" * 64)
    tags = parsed(page)
    text = " ".join(" ".join(tags.text).split())

    # No external asset: no link, script, image, frame; styles are inline.
    assert set(tags.tags) <= {
        "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "dl",
        "dt", "dd", "section", "table", "thead", "tbody", "tr", "th", "td", "code", "br",
        "details", "summary", "footer",
    }  # fmt: skip
    assert "http://" not in page and "https://" not in page
    for shown in (
        "Certificate of destruction",
        "City of Milwaukee",
        "EXAMPLE-COMMENTS",
        "Wis. Stat. § 19.21(4)(b)",
        "2026-01-12T15:02:00+00:00",
        "2026-01-20T12:00:00+00:00",
        "WHS-2034-007",
        "alice (via sudo as archiver)",
        EXECUTED_AT,
        "entry 42, hash " + "ab" * 32,
        "d" * 64,
        "sha256:B0",
        "2037-01-01T06:00:00+00:00",
        "the API page also holds the moderated comment",
        "COMPLIANCE lock",
        "Items excluded at execution (1)",
        f"control/certificates/01J0CERTIFICATE00000000001.json has SHA-256 {'9' * 64}",
        FORMAT,
    ):
        assert shown in text, shown


def test_long_lists_fold_into_details_and_short_ones_do_not() -> None:
    short = render_html(sample(records=LONG))
    long = render_html(sample(records=LONG + 1))

    assert "<details>" not in short
    assert f"<details><summary>Show all {LONG + 1}</summary>" in long


# --- storing ------------------------------------------------------------------------------


def _run(catalog: Catalog, data: CertificateData) -> None:
    moment = datetime.fromisoformat(data.executed_at)
    with catalog.session() as s:
        s.add(
            DispositionReport(
                id=data.report_id,
                created_at=moment - timedelta(days=1),
                created_by="alice",
                expires_at=moment + timedelta(days=29),
                status="open",
                summary={},
            )
        )
        s.flush()
        s.add(
            DispositionRun(
                id=data.run_id,
                report_id=data.report_id,
                started_at=moment,
                started_by=data.executed_by,
                state="running",
            )
        )


def test_a_certificate_is_stored_as_json_and_html_locked_for_a_century_with_a_control_fact(
    catalog: Catalog, tmp_path: Path
) -> None:
    # The store's default lock is short: the certificate's own date must win.
    store = LockingStore(LocalStore(tmp_path / "store"), default_lock(timedelta(days=30)))
    data = sample()
    _run(catalog, data)

    with catalog.session() as s:
        row = write_certificate(store, s, data, info=INFO, tmp_dir=tmp_path, actor="alice")
        assert row.id == data.certificate_id
    raw = store.get("control/certificates/01J0CERTIFICATE00000000001.json")
    page = store.get("control/certificates/01J0CERTIFICATE00000000001.html")

    assert raw == certificate_json(data, operator=INFO.operator, software=INFO.software)
    assert parse_certificate(raw) == data
    assert page.decode() == render_html(
        data, operator=INFO.operator, json_sha256=hashlib.sha256(raw).hexdigest()
    )
    for key in (row.json_key, row.html_key):
        info = store.head(key)
        assert info.retain_until is not None
        assert info.retain_until > datetime.now(UTC) + timedelta(days=365 * 99)
        with pytest.raises(RetentionError):
            store.delete(key)
    with catalog.reader() as s:
        stored = s.get(Certificate, data.certificate_id)
        assert stored is not None
        assert stored.sha256 == hashlib.sha256(raw).hexdigest()
        assert stored.run_id == data.run_id
        assert stored.summary["items"] == 2
        assert stored.summary["html_sha256"] == hashlib.sha256(page).hexdigest()
        control = s.scalars(select(StoredFile).where(StoredFile.kind == "control")).all()
    [fact] = [f for f in read_facts(store) if f.kind == "disposition.certificate"]
    assert [c.key for c in control] == [fact.key]
    assert fact.actor == "alice"
    assert fact.body == {
        "certificate": data.certificate_id,
        "run": data.run_id,
        "report": data.report_id,
        "json_key": "control/certificates/01J0CERTIFICATE00000000001.json",
        "html_key": "control/certificates/01J0CERTIFICATE00000000001.html",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "disposed_at": EXECUTED_AT,
        "items": [
            {
                "account": "mke-bluesky",
                "item": data.items[0]["platform_item_id"],
                "series": "EXAMPLE-COMMENTS",
                "created_at": "2026-01-12T15:02:00+00:00",
                "first_captured_at": "2026-11-24T02:26:41+00:00",
                "content_sha256": "c" * 64,
                "kind": "comment",
            },
            {
                "account": "mke-dpw-mastodon",
                "item": "115926604185600004",
                "series": "EXAMPLE-COMMENTS",
                "created_at": None,
                "first_captured_at": "2026-11-24T02:26:41+00:00",
                "content_sha256": None,
                "kind": "comment",
            },
        ],
    }


def test_a_resumed_run_writing_the_certificate_again_changes_nothing(
    catalog: Catalog, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    data = sample()
    _run(catalog, data)
    with catalog.session() as s:
        first = write_certificate(store, s, data, info=INFO, tmp_dir=tmp_path, actor="alice")
        sha = first.sha256
    with catalog.session() as s:
        again = write_certificate(store, s, data, info=INFO, tmp_dir=tmp_path, actor="alice")
        assert again.sha256 == sha

    assert [f.kind for f in read_facts(store)] == ["disposition.certificate"]


def test_a_crash_after_storing_the_objects_is_finished_by_the_next_attempt(
    catalog: Catalog, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    data = sample()
    _run(catalog, data)
    raw = certificate_json(data, operator=INFO.operator, software=INFO.software)
    # The crashed attempt stored the JSON, then died before the catalog commit.
    put_bytes(store, "control/certificates/01J0CERTIFICATE00000000001.json", raw)

    with catalog.session() as s:
        row = write_certificate(store, s, data, info=INFO, tmp_dir=tmp_path, actor="alice")
        assert row.sha256 == hashlib.sha256(raw).hexdigest()
    assert store.exists("control/certificates/01J0CERTIFICATE00000000001.html")


def test_a_different_certificate_already_under_the_key_is_never_overwritten(
    catalog: Catalog, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    data = sample()
    _run(catalog, data)
    put_bytes(store, "control/certificates/01J0CERTIFICATE00000000001.json", b"{}")

    with pytest.raises(IntegrityError, match="nothing was overwritten"), catalog.session() as s:
        write_certificate(store, s, data, info=INFO, tmp_dir=tmp_path, actor="alice")
    assert store.get("control/certificates/01J0CERTIFICATE00000000001.json") == b"{}"
    with catalog.reader() as s:
        assert s.get(Certificate, data.certificate_id) is None
