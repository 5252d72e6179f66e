"""Fixtures for the command tests: an installation in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.clitools import Workspace, make_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """An installation with a SQLite catalog and a local store under ``tmp_path/var``."""
    return make_workspace(tmp_path)


@pytest.fixture
def any_workspace(tmp_path: Path, catalog_url: str) -> Workspace:
    """The same on each supported catalog database (SQLite, then PostgreSQL)."""
    return make_workspace(tmp_path, catalog_url=catalog_url)
