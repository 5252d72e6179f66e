"""Control facts: retention facts written to the store and read back in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.catalog import Catalog
from archiver.catalog.models import StoredFile
from archiver.control import read_facts, write_fact
from archiver.errors import IntegrityError
from archiver.store import LocalStore
from archiver.warc import WarcInfo
from tests.warctools import assert_all_digests_pass

INFO = WarcInfo(software="test", dependencies={}, operator="City", node="n1")
T0 = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)


def test_facts_are_verified_warc_files_read_back_oldest_first(
    tmp_path: Path, catalog: Catalog
) -> None:
    store = LocalStore(tmp_path / "store")
    with catalog.session() as s:
        first = write_fact(
            store, s, "hold.created", {"hold": 1, "case": "C-1"}, actor="ann", info=INFO, at=T0
        )
        second = write_fact(
            store,
            s,
            "hold.released",
            {"hold": 1},
            actor="bob",
            info=INFO,
            at=T0 + timedelta(minutes=2),
        )

    # Keys and ids follow the time of writing, not the time the fact claims (a rehearsal
    # under ARCHIVER_NOW gives many facts one time), so replay follows the order of writing.
    assert first.key == f"control/facts/{datetime.now(UTC):%Y-%m}/{first.id}.warc.gz"
    assert first.id < second.id
    facts = list(read_facts(store))
    assert [(f.kind, f.actor, dict(f.body)) for f in facts] == [
        ("hold.created", "ann", {"hold": 1, "case": "C-1"}),
        ("hold.released", "bob", {"hold": 1}),
    ]
    assert facts[0].at == T0
    assert store.exists(first.key + ".sha256.json")
    with catalog.reader() as s:
        rows = s.scalars(select(StoredFile).where(StoredFile.kind == "control")).all()
        assert {r.key for r in rows} == {first.key, second.key}
        assert all(r.sha256 == store.head(r.key).sha256 for r in rows)
    paths = [tmp_path / "store" / f.key for f in facts]
    assert assert_all_digests_pass(paths) == 4  # warcinfo + one metadata record per file


def test_an_unknown_kind_is_refused_when_written_and_when_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ValueError, match="unknown control fact kind"):
        write_fact(store, None, "hold.deleted", {}, actor="ann", info=INFO)

    from archiver.control import parse_fact

    with pytest.raises(IntegrityError, match="unknown kind"):
        parse_fact(
            b'{"fact": "x", "id": "1", "at": "2026-01-01T00:00:00+00:00", '
            b'"actor": "a", "body": {}}',
            "k",
        )
