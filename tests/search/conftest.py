"""Fixtures for the search tests: the shared corpus, captured once per module and database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from archiver.catalog import Catalog, upgrade
from archiver.store import LocalStore
from tests.corpus import Corpus, capture_corpus
from tests.pgcluster import PgServer, _to_sqlalchemy, _with_database


@dataclass(frozen=True)
class Archive:
    """A catalog holding the corpus, and which database it is."""

    catalog: Catalog
    corpus: Corpus
    dialect: str


def _postgres_database(server: PgServer) -> tuple[str, str]:
    name = f"search_{secrets.token_hex(6)}"
    with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, _to_sqlalchemy(_with_database(server.admin_conninfo, name))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    """The corpus (tests/corpus.py) captured into a catalog on each database, once per
    module: the tests only read it."""
    root: Path = tmp_path_factory.mktemp(f"archive-{request.param}")
    server: PgServer | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'catalog.sqlite3'}"
    else:
        server = request.getfixturevalue("pg_server")
        name, url = _postgres_database(server)
    catalog = Catalog.open(url)
    try:
        upgrade(catalog)
        corpus = capture_corpus(catalog, LocalStore(root / "store"), root / "work")
        yield Archive(catalog, corpus, request.param)
    finally:
        catalog.dispose()
        if server is not None:
            with psycopg.connect(server.admin_conninfo, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
