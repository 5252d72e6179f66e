"""Fixtures shared by the whole suite: catalogs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.catalog import Catalog, upgrade

pytest_plugins = ["tests.pgcluster"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog database: a SQLite file, or a fresh database on the suite's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """A catalog at the code's schema revision, on each supported database."""
    cat = Catalog.open(catalog_url)
    upgrade(cat)
    yield cat
    cat.dispose()
