"""Opening the catalog database: engines, sessions and per-dialect transaction rules."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from archiver.errors import CatalogError

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "archiver_read_only"


def parse_url(url: str | URL) -> URL:
    """Parse a catalog URL, turning a malformed one into a ``CatalogError``."""
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise CatalogError(
            f"catalog URL is not valid ({exc}); use e.g. sqlite:///var/catalog.sqlite3 "
            "or postgresql+psycopg://user@host/dbname"
        ) from exc


def _sqlite_setup(engine: Engine) -> None:
    # Python's sqlite3 module opens transactions lazily and as DEFERRED; a deferred
    # transaction that reads and then writes can fail with SQLITE_BUSY when another writer
    # committed meanwhile, whatever the busy timeout. Taking the write lock at BEGIN
    # (IMMEDIATE) serializes writers up front and lets the busy timeout do its job.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Readers take no lock at all in WAL mode, so they never wait for a writer.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _ensure_wal(database: str) -> None:
    """Put the database file in WAL mode (a persistent property of the file).

    Switching the journal mode needs the database to itself, and SQLite answers "database
    is locked" at once, without waiting out the busy timeout, when another connection is
    busy. So it is done once per engine, retried, instead of on every connection.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        conn = sqlite3.connect(
            database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if (
                str(mode).lower() == "wal"
                or conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
            ):
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise CatalogError(f"cannot open the SQLite catalog {database}: {exc}") from exc
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise CatalogError(
                f"the SQLite catalog {database} stayed locked for "
                f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s: is another archiver process stuck?"
            )
        time.sleep(0.05)


def create_catalog_engine(url: str | URL) -> Engine:
    """An engine for the catalog at ``url`` (SQLite in WAL mode, or PostgreSQL)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        if database and database != ":memory:":
            _ensure_wal(database)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _sqlite_setup(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise CatalogError(
        f"catalog database {parsed.get_backend_name()!r} is not supported; use sqlite or postgresql"
    )


def redacted(url: str | URL) -> str:
    """The URL with its password hidden, for logs and ``status``."""
    return parse_url(url).render_as_string(hide_password=True)


class Catalog:
    """The catalog database: an engine and the sessions made from it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readers = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    @classmethod
    def open(cls, url: str | URL) -> Catalog:
        return cls(create_catalog_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _failed(self, exc: SQLAlchemyError) -> CatalogError:
        return CatalogError(
            f"catalog operation failed on {redacted(self.engine.url)}: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        )

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session for reading only: it never waits for, nor blocks, a writer.

        On SQLite a read transaction starts deferred (a WAL snapshot); writing in it is a
        programming error that SQLite would answer with "database is locked".
        """
        try:
            with self._readers.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    @contextmanager
    def connect(self, *, begin: bool = False) -> Iterator[Connection]:
        """A connection (in a transaction that commits on success if ``begin``).

        Database errors, such as an unreachable server, surface as ``CatalogError``.
        """
        try:
            with self.engine.begin() if begin else self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()
