"""A second empty catalog database beside the ``catalog_url`` fixture's, to rebuild into."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.pgcluster import PgServer


@contextmanager
def _pg_database(server: PgServer) -> Iterator[str]:
    name = f"rebuilt_{secrets.token_hex(6)}"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server.url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def another_database(like: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database of the same kind as ``like`` (dropped afterwards)."""
    if like.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}"
        return
    with _pg_database(request.getfixturevalue("pg_server")) as url:
        yield url
