"""Retention decisions for catalogued items: holds, events and notices read from the catalog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from archiver.catalog import Catalog
from archiver.catalog.models import Account, Hold, Item, ItemVersion, RetentionNotice
from archiver.config import Config, load_config
from archiver.errors import RetentionError
from archiver.evaluate import evaluate, load_context
from archiver.retention import Outcome
from archiver.search import index_session
from archiver.series import load_schedules

CREATED = datetime(2018, 3, 4, 12, 0, tzinfo=UTC)
SEVEN_YEARS_LATER = datetime(2025, 3, 5, tzinfo=UTC)


def _config(tmp_path: Path) -> Config:
    path = tmp_path / "config.toml"
    path.write_text('[archiver]\noperator = "City"\ntime_zone = "America/Chicago"\n')
    return load_config(path)


def _item(s: Session, account: str, pid: str, text: str, *, series: str = "social-media") -> int:
    row = Item(
        account_id=account,
        platform_item_id=pid,
        kind="comment",
        series=series,
        created_at=CREATED,
        first_captured_at=CREATED,
        last_seen_at=CREATED,
        text=text,
        versions=1,
        partition=f"{series}/{account}/2018-03",
    )
    s.add(row)
    s.flush()
    s.add(
        ItemVersion(
            item_id=row.id,
            version_no=1,
            content_sha256="0" * 64,
            captured_at=CREATED,
            change="new",
            warc_file_id="F" * 26,
            warc_offset=0,
            warc_length=1,
            warc_record_id=f"<urn:uuid:{pid}>",
            text=text,
        )
    )
    return row.id


@pytest.fixture
def items(catalog: Catalog) -> dict[str, int]:
    with catalog.session() as s:
        for account in ("mke-a", "mke-b"):
            s.add(
                Account(id=account, platform="bluesky", series="social-media", created_at=CREATED)
            )
        s.flush()
        ids = {
            "pothole": _item(s, "mke-a", "1", "The pothole on Elm Street is back"),
            "park": _item(s, "mke-a", "2", "Lovely park concert"),
            "other": _item(s, "mke-b", "3", "Pothole repair crew thanks"),
        }
        index_session(s)
    return ids


def test_a_query_hold_covers_exactly_what_the_query_finds(
    catalog: Catalog, items: dict[str, int], tmp_path: Path
) -> None:
    config = _config(tmp_path)
    with catalog.session() as s:
        s.add(
            Hold(
                case_id="PRR-2025-7",
                kind="legal",
                reason="litigation",
                accounts=["mke-a"],
                query="pothole",
                created_at=CREATED,
                created_by="ann",
            )
        )
    with catalog.reader() as s:
        ctx = load_context(s, config, load_schedules())
        decisions = evaluate(s, ctx, SEVEN_YEARS_LATER)
    assert decisions[items["pothole"]].outcome is Outcome.HELD
    # The default series needs 60 days' notice to the historical society before destruction.
    assert decisions[items["park"]].outcome is Outcome.AWAITING_NOTICE
    assert decisions[items["other"]].outcome is Outcome.AWAITING_NOTICE  # other account


def test_a_waiver_lets_the_items_it_covers_go(
    catalog: Catalog, items: dict[str, int], tmp_path: Path
) -> None:
    config = _config(tmp_path)
    with catalog.session() as s:
        s.add(
            RetentionNotice(
                series="social-media",
                kind="waiver",
                on=SEVEN_YEARS_LATER,
                reference="WHS waiver 2025-14",
                recorded_at=SEVEN_YEARS_LATER,
                recorded_by="ann",
            )
        )
    with catalog.reader() as s:
        ctx = load_context(s, config, load_schedules())
        early = evaluate(s, ctx, SEVEN_YEARS_LATER - timedelta(days=2))
        late = evaluate(s, ctx, SEVEN_YEARS_LATER)
    assert {d.outcome for d in early.values()} == {Outcome.RETAINED}
    assert {d.outcome for d in late.values()} == {Outcome.ELIGIBLE}
    assert {d.notice for d in late.values()} == {"WHS waiver 2025-14"}


def test_an_item_of_a_series_no_schedule_defines_is_an_error_not_a_guess(
    catalog: Catalog, items: dict[str, int], tmp_path: Path
) -> None:
    with catalog.session() as s:
        _item(s, "mke-b", "4", "old", series="retired-series")
    with catalog.reader() as s:
        ctx = load_context(s, _config(tmp_path), load_schedules())
        with pytest.raises(RetentionError, match="retired-series"):
            evaluate(s, ctx, SEVEN_YEARS_LATER)
