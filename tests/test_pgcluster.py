"""The suite's throw-away PostgreSQL (tests/pgcluster.py) gives working, isolated databases."""

from __future__ import annotations

import psycopg
import pytest

from tests.pgcluster import _to_libpq, hide_password


def _connect(sqlalchemy_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(_to_libpq(sqlalchemy_url), autocommit=True)


def test_pg_url_is_a_working_sqlalchemy_url(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://")
    with _connect(pg_url) as conn:
        row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    assert "PostgreSQL" in str(row[0])


def test_pg_url_works_with_sqlalchemy(pg_url: str) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1 + 1")).scalar_one() == 2
    finally:
        engine.dispose()


def test_pg_database_url_gives_a_fresh_database(pg_database_url: str, pg_url: str) -> None:
    with _connect(pg_database_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    with _connect(pg_url) as conn:
        session_db = conn.execute("SELECT current_database()").fetchone()
    assert name is not None and session_db is not None
    assert str(name[0]).startswith("test_")
    assert name[0] != session_db[0]


_seen: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_database(pg_database_url: str, run: int) -> None:
    with _connect(pg_database_url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert row is not None and tables is not None
    assert tables[0] == 0  # empty, whatever the other test created
    conn_db = str(row[0])
    assert conn_db not in _seen
    _seen.append(conn_db)
    if run == 2:
        assert len(set(_seen)) == 2


def test_database_is_dropped_after_the_test(pg_url: str) -> None:
    # Databases made for earlier tests are gone.
    with _connect(pg_url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    names = {r[0] for r in rows}
    assert not names & set(_seen)


def test_hide_password() -> None:
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/db"
    assert hide_password(url) == "postgresql+psycopg://postgres:***@127.0.0.1:5432/db"
    assert hide_password("postgresql://u@h/db") == "postgresql://u@h/db"
