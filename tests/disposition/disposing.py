"""A captured archive to dispose of, and the probes that look for what must be gone.

:func:`installation` captures the corpus (tests/corpus.py) into a workspace's catalog and
local store, rolls every partition into Parquet, places the items in the shipped
schedule's series and records the notices that let them go:

- comments (``plow_reply``, ``cafe_reply``, ``deleted_reply``, ``mastodon_reply``):
  ``EXAMPLE-COMMENTS``, 7 years after the end of the (calendar) fiscal year of creation:
  eligible 2034-01-01 06:00 UTC; notice sent 2034-01-15, so they may go from 2034-03-16;
- posts (``snow_post``, ``images_post``, ``edited_post``): ``social-media``, 7 years from
  creation (eligible in January and February 2033); the historical society waived notice on
  2034-01-02;
- ``hidden_reply``: ``EXAMPLE-MODERATED`` (10 years after the end of 2026: kept);
- profiles: ``EXAMPLE-ACCOUNT-RECORDS`` (until the account is closed: kept).

The probes read what a disposition must have cleared, with tools other than the archiver's
own where there are some: every WARC record of the store through warcio, Parquet through
DuckDB, raw bytes of files (SQLite's file and write-ahead log, PostgreSQL's relation files,
the spool).
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest
from sqlalchemy import select, text, update
from warcio.archiveiterator import ArchiveIterator

from archiver import parquet
from archiver.app import App
from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import Hold, Item, RetentionNotice, StoredFile, WarcRecord
from archiver.disposition import report
from archiver.evaluate import load_context
from tests.commands.clitools import Workspace, make_workspace
from tests.corpus import Corpus, capture_corpus
from tests.pgcluster import PgServer, _to_sqlalchemy, _with_database

SERIES = {
    "plow_reply": "EXAMPLE-COMMENTS",
    "cafe_reply": "EXAMPLE-COMMENTS",
    "deleted_reply": "EXAMPLE-COMMENTS",
    "mastodon_reply": "EXAMPLE-COMMENTS",
    "snow_post": "social-media",
    "images_post": "social-media",
    "edited_post": "social-media",
    "hidden_reply": "EXAMPLE-MODERATED",
    "bluesky_profile": "EXAMPLE-ACCOUNT-RECORDS",
    "mastodon_profile": "EXAMPLE-ACCOUNT-RECORDS",
}
ELIGIBLE = (
    "plow_reply",
    "cafe_reply",
    "deleted_reply",
    "mastodon_reply",
    "snow_post",
    "images_post",
    "edited_post",
)
KEPT = ("hidden_reply", "bluesky_profile", "mastodon_profile")
NOTICE = "WHS-2034-007"
WAIVER = "WHS-W-2034-001"
#: Before the comments' retention ends.
BEFORE_ELIGIBLE = datetime(2033, 12, 1, 12, 0, tzinfo=UTC)
#: The comments are eligible, but the notice's 60 days are not over.
BEFORE_NOTICE_ENDS = datetime(2034, 3, 1, 12, 0, tzinfo=UTC)
#: Everything in ELIGIBLE may go.
NOW = datetime(2034, 4, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2034, 4, 2, 12, 0, tzinfo=UTC)
TTL = timedelta(days=30)

#: Phrases only in one item's text (and in the raw exchanges that item was read from).
PLOW = "the plow missed Elm Street"
COFFEE = "Free coffee for plow drivers"
BRUSH = "Will the brush crew come to Bay View"
OAK = "Wrong street listed for Oak Avenue"
LEAVES_ALT = "Map of the north side leaf collection route"
#: A phrase of a kept item: the probes must find it (they do look).
KEPT_PHRASE = "Cheap followers at bestdeals"


@dataclass
class Installation:
    """A workspace holding the corpus, and the App a command of it would use."""

    ws: Workspace
    corpus: Corpus
    app: App

    @property
    def catalog(self) -> Catalog:
        return self.app.catalog

    def ids(self, *names: str) -> set[int]:
        return self.corpus.ids(*names)

    def report(self, now: datetime) -> str:
        with self.catalog.session() as s:
            ctx = load_context(s, self.app.config, self.app.schedules)
            return report.make_report(s, ctx, now, "records officer", TTL)

    def report_items(self, report_id: str) -> set[int]:
        with self.catalog.reader() as s:
            return set(report.load_report(s, report_id).item_ids)

    def hold(self, query: str, *, case: str = "CV-2034-0101") -> int:
        with self.catalog.session() as s:
            row = Hold(
                case_id=case,
                kind="legal",
                reason="claim about a comment",
                accounts=[],
                query=query,
                created_at=datetime(2034, 3, 1, tzinfo=UTC),
                created_by="legal",
            )
            s.add(row)
            s.flush()
            return row.id

    def release(self, hold_id: int, at: datetime) -> None:
        with self.catalog.session() as s:
            s.execute(
                update(Hold)
                .where(Hold.id == hold_id)
                .values(released_at=at, released_by="records officer", release_reason="settled")
            )

    def close(self) -> None:
        self.app.close()


def place_in_series(catalog: Catalog, corpus: Corpus) -> None:
    """Put the corpus' items in the series above and record the notice and the waiver."""
    with catalog.session() as s:
        for name, code in SERIES.items():
            s.execute(update(Item).where(Item.id == corpus.item(name).id).values(series=code))
        s.add(
            RetentionNotice(
                series="EXAMPLE-COMMENTS",
                kind="sent",
                on=datetime(2034, 1, 15, tzinfo=UTC),
                reference=NOTICE,
                recorded_at=datetime(2034, 1, 15, tzinfo=UTC),
                recorded_by="records officer",
            )
        )
        s.add(
            RetentionNotice(
                series="social-media",
                kind="waiver",
                on=datetime(2034, 1, 2, tzinfo=UTC),
                reference=WAIVER,
                recorded_at=datetime(2034, 1, 2, tzinfo=UTC),
                recorded_by="records officer",
            )
        )


def installation(
    root: Path,
    *,
    catalog_url: str | None = None,
    extra: str = "",
    accounts: str | None = None,
    logging_level: str = "INFO",
) -> Installation:
    """The corpus captured into a new workspace under ``root``, rolled and placed.

    ``accounts``: the workspace config's ``[[accounts]]`` (the default ones when None).
    """
    ws = make_workspace(
        root / "install",
        catalog_url=catalog_url,
        extra=extra,
        logging_level=logging_level,
        **({} if accounts is None else {"accounts": accounts}),
    )
    app = App(ws.config)
    upgrade(app.catalog)
    # Captured through the configured store (local or S3), as the daemon would.
    corpus = capture_corpus(app.catalog, app.store, root / "corpus")  # type: ignore[arg-type]
    parquet.roll(
        app.catalog, app.store, app.spool_dir, min_rows=1, max_age=timedelta(0), force=True
    )
    place_in_series(app.catalog, corpus)
    return Installation(ws, corpus, app)


@contextmanager
def database(kind: str, root: Path, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A new empty catalog database of ``kind``: None for the workspace's own SQLite file, or
    the URL of a fresh database on the suite's PostgreSQL (dropped afterwards)."""
    if kind == "sqlite":
        yield None
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = f"dispose_{secrets.token_hex(6)}"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _to_sqlalchemy(_with_database(server.admin_conninfo, name))
    finally:
        with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- probes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One stored WARC record holding a phrase."""

    key: str
    record_id: str
    warc_type: str


def stored_warcs(store_root: Path) -> list[Path]:
    return sorted(p for p in (store_root / "warc").rglob("*.warc.gz") if p.is_file())


def records_containing(store_root: Path, phrase: str) -> list[Found]:
    """Every record of every stored WARC whose header or (decoded) block holds ``phrase``."""
    needle = phrase.encode()
    found = []
    for path in [*stored_warcs(store_root), *sorted((store_root / "control").rglob("*.warc.gz"))]:
        for record in ArchiveIterator(io.BytesIO(path.read_bytes())):
            head = record.rec_headers.to_str().encode()
            body = record.content_stream().read()
            if needle in head or needle in body:
                found.append(
                    Found(
                        str(path.relative_to(store_root)),
                        record.rec_headers.get_header("WARC-Record-ID"),
                        record.rec_type,
                    )
                )
    return found


def parquet_rows_containing(store_root: Path, phrase: str) -> int:
    """Rows of every stored Parquet file, read through DuckDB, holding ``phrase``."""
    files = sorted(str(p) for p in (store_root / "parquet").rglob("*.parquet"))
    if not files:
        return 0
    con = duckdb.connect()
    try:
        row = con.execute(
            "SELECT count(*) FROM read_parquet(?) WHERE "
            "coalesce(text, '') LIKE ? OR coalesce(author, '') LIKE ?",
            [files, f"%{phrase}%", f"%{phrase}%"],
        ).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def files_containing(paths: Iterable[Path], phrase: str) -> list[Path]:
    needle = phrase.encode()
    return [p for p in paths if p.is_file() and needle in p.read_bytes()]


def tree(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def postgres_rows_containing(catalog: Catalog, phrase: str) -> dict[str, int]:
    """Per table of the catalog: rows whose text form holds ``phrase``."""
    found = {}
    with catalog.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
        for table in list(tables):
            count = conn.execute(
                text(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE :p'),
                {"p": f"%{phrase}%"},
            ).scalar_one()
            if count:
                found[table] = int(count)
    return found


def postgres_relation_files(catalog: Catalog) -> list[Path]:
    """The files of every table of the catalog, its TOAST table and indexes (after a
    CHECKPOINT, so they hold what the buffers held)."""
    with catalog.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        auto.exec_driver_sql("CHECKPOINT")
        data = Path(auto.exec_driver_sql("SHOW data_directory").scalar_one())
        paths = auto.execute(
            text(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN (current_schema(), 'pg_toast') "
                "AND c.relkind IN ('r', 't', 'i') AND pg_relation_filepath(c.oid) IS NOT NULL"
            )
        ).scalars()
        found: list[Path] = []
        for rel in paths:
            base = data / rel
            found.extend(p for p in base.parent.glob(f"{base.name}*") if p.is_file())
    return found


def catalogued_records(catalog: Catalog) -> dict[str, str]:
    """Record id → file id of every catalogued record."""
    with catalog.reader() as s:
        return {r[0]: r[1] for r in s.execute(select(WarcRecord.record_id, WarcRecord.file_id))}


def stored_files(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """File id → (key, state) of every file the catalog knows."""
    with catalog.reader() as s:
        return {
            r.id: (r.key, r.state)
            for r in s.scalars(select(StoredFile).where(StoredFile.kind != "control"))
        }


def certificate(store_root: Path, certificate_id: str) -> dict[str, object]:
    path = store_root / "control" / "certificates" / f"{certificate_id}.json"
    doc: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def ids_of(rows: Iterator[dict[str, object]] | list[dict[str, object]], key: str) -> set[object]:
    return {row[key] for row in rows}
