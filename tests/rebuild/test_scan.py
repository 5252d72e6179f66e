"""Every file is verified while the store is read: a damaged one is never silently skipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archiver.catalog import Catalog
from archiver.catalog.models import Item, StoredFile, WarcRecord
from archiver.errors import IntegrityError
from archiver.rebuild import compare, rebuild
from archiver.rebuild.scan import classify
from archiver.rebuild.write import require_empty
from archiver.store.base import ObjectInfo
from tests.rebuild.conftest import Small


def _rewrite(path: Path, data: bytes) -> None:
    """Change a stored object behind the store's back (it is read-only on disk)."""
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def _largest_warc(small: Small) -> Path:
    return max(small.store.root.glob("warc/**/*.warc.gz"), key=lambda p: p.stat().st_size)


def _rows(catalog: Catalog, model: type) -> int:
    with catalog.reader() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_a_warc_whose_bytes_do_not_match_stops_the_rebuild_naming_it_and_writes_nothing(
    small: Small, target: Catalog
) -> None:
    path = _largest_warc(small)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    _rewrite(path, bytes(data))
    key = path.relative_to(small.store.root).as_posix()

    with pytest.raises(IntegrityError) as failed:
        rebuild(small.store, target, actor="records-officer", accounts=small.accounts)

    message = str(failed.value)
    assert f"{key}: its bytes have sha256" in message and "nothing was written" in message
    assert "--skip-damaged" in message
    assert _rows(target, Item) == _rows(target, StoredFile) == 0
    require_empty(target)  # the officer can restore the file and run the rebuild again


def test_with_skip_damaged_the_rebuild_leaves_the_file_out_and_says_so(
    small: Small, target: Catalog
) -> None:
    path = _largest_warc(small)
    key = path.relative_to(small.store.root).as_posix()
    sidecar = path.with_name(path.name + ".sha256.json")
    text = sidecar.read_text()
    # The bytes are intact; the sidecar (same size, so the store's own check passes) disagrees.
    _rewrite(sidecar, text.replace(json.loads(text)["sha256"], "0" * 64).encode())

    report = rebuild(
        small.store, target, actor="records-officer", accounts=small.accounts, skip_damaged=True
    )

    (damage,) = report.damaged
    assert damage.key == key and "its sidecar says " + "0" * 64 in damage.problem
    comparison = compare(small.catalog, target)
    with small.catalog.reader() as s:
        in_file = set(
            s.scalars(
                select(WarcRecord.record_id).where(WarcRecord.file_id == path.name.split(".")[0])
            )
        )
    missing = {d.key[0] for d in comparison.differences if d.table == "warc_records"}
    assert missing == in_file and {d.kind for d in comparison.differences} == {"only_live"}


def test_a_warc_without_its_sidecar_is_checked_against_the_store_alone_and_named(
    small: Small, target: Catalog
) -> None:
    path = _largest_warc(small)
    key = path.relative_to(small.store.root).as_posix()
    for sidecar in (
        small.store.root / f"{key}.sha256.json",
        small.store.root / ".meta" / f"{key}.sha256.json",
    ):
        sidecar.unlink()

    report = rebuild(small.store, target, actor="records-officer", accounts=small.accounts)

    assert report.problems == [
        f"{key} has no .sha256.json sidecar; it was checked against the store's record only"
    ]
    assert not report.damaged and compare(small.catalog, target).clean


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("control/facts/2026-03/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.warc.gz", "fact"),
        ("control/facts/2026-03/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.warc.gz.sha256.json", "sidecar"),
        ("control/certificates/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.json", "certificate"),
        ("control/certificates/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.html", "certificate"),
        ("control/audit/000000000012.json", "anchor"),
        ("control/social-media/mke-parks/2026-03/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.json", "control"),
        ("warc/social-media/mke-parks/2026-03/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.warc.gz", "warc"),
        ("control/facts/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.warc.gz", "unknown"),
        ("control/certificates/01JQ4S2W7X0Y8H6K3M9N5P1Q2R.pdf", "unknown"),
    ],
)
def test_control_facts_and_certificates_are_told_from_capture_files_and_belong_to_no_account(
    key: str, kind: str
) -> None:
    obj = classify(ObjectInfo(key, 1, "0" * 64, retain_until=None, legal_hold=False))

    assert obj.kind == kind
    if kind in ("fact", "certificate"):
        assert obj.account is None and obj.file_id is None


def test_a_truncated_warc_is_reported_as_damage_and_the_rest_of_the_store_is_rebuilt(
    small: Small, target: Catalog
) -> None:
    """A size that no longer matches must not stop the listing of the whole store."""
    path = _largest_warc(small)
    key = path.relative_to(small.store.root).as_posix()
    _rewrite(path, path.read_bytes()[:-100])

    with pytest.raises(IntegrityError, match="--skip-damaged") as failed:
        rebuild(small.store, target, actor="records-officer", accounts=small.accounts)
    assert key in str(failed.value)

    report = rebuild(
        small.store, target, actor="records-officer", accounts=small.accounts, skip_damaged=True
    )
    (damage,) = report.damaged
    assert damage.key == key
    assert _rows(target, StoredFile) > 0  # every other file was read
