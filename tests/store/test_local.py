"""The local store backend, written as its specification: what only a directory has.

What every backend promises (round trips, write-once, integrity, keys, listing, retention and
holds) is in ``test_contract.py``, which runs against this backend too. Here: the files on
disk (sidecars, modes, fsync, leftovers of a crash), symbolic links, and the exact moment a
retention ends. Tests run as root, so "could not write" proves nothing: permissions are
checked as mode bits with ``os.stat``. Time never passes by sleeping: the store's clock is
injected.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import archiver.store
from archiver.errors import (
    IntegrityError,
    RetentionError,
    StoreError,
    UnsafeKeyError,
)
from archiver.store import LocalStore, ObjectInfo
from tests.store.conftest import KEY, START, Clock, PutFn


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def files_under(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir())


# -- round trip ------------------------------------------------------------------------------


def test_an_object_records_the_stores_clock_as_created_and_no_version(
    store: LocalStore, put: PutFn, clock: Clock
) -> None:
    data = b"WARC/1.1\r\n" * 1000
    info = put(KEY, data)
    clock.advance(days=1)

    assert info == ObjectInfo(
        key=KEY,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        retain_until=None,
        legal_hold=False,
        version_id=None,
        created=START,
    )
    assert store.head(KEY) == info
    assert store.list_versions(KEY) == [info]


def test_open_streams_large_objects_in_one_mebibyte_chunks(store: LocalStore, put: PutFn) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    put(KEY, data)

    chunks = list(store.open(KEY))

    assert len(chunks) == 3
    assert b"".join(chunks) == data


def test_describe_names_the_root_as_a_file_url(store: LocalStore, root: Path) -> None:
    assert store.describe() == f"file://{root.resolve()}"


# -- integrity and write-once ----------------------------------------------------------------


def test_refused_puts_leave_no_object_sidecar_or_temp_file(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    with pytest.raises(IntegrityError, match="nothing was stored"):
        put(KEY, b"the real bytes", sha256=hashlib.sha256(b"other bytes").hexdigest())
    assert files_under(root) == [], "no object, no sidecar, no temp file"

    put(KEY, b"first")
    with pytest.raises(StoreError, match="write-once"):
        put(KEY, b"second")
    assert files_under(root / ".tmp") == []
    assert files_under(root / ".meta") == [KEY]


def test_an_object_cannot_also_be_a_directory(store: LocalStore, put: PutFn) -> None:
    put("a/b")
    with pytest.raises(StoreError, match="other objects are stored under 'a/'"):
        put("a")
    put("c")
    with pytest.raises(StoreError, match="already an object"):
        put("c/d")
    assert [i.key for i in store.list()] == ["a/b", "c"]


def test_an_object_altered_on_disk_is_detected_by_head(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    put(KEY, b"original")
    path = root / KEY
    path.chmod(0o644)
    path.write_bytes(b"original plus tampering")

    with pytest.raises(IntegrityError, match="altered"):
        store.head(KEY)


def test_an_altered_object_does_not_hide_the_rest_of_the_store_from_a_listing(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    """The listing gives what was stored; the reader of the bytes finds the alteration."""
    put("a/first", b"original")
    put("b/second", b"kept")
    path = root / "a" / "first"
    path.chmod(0o644)
    path.write_bytes(b"short")

    listed = {i.key: i.size for i in store.list()}

    assert listed == {"a/first": len(b"original"), "b/second": len(b"kept")}
    with pytest.raises(IntegrityError, match="altered"):
        store.head("a/first")


# -- keys and links --------------------------------------------------------------------------


def test_a_symlinked_directory_inside_the_root_is_not_followed(
    store: LocalStore, put: PutFn, root: Path, outside: Path
) -> None:
    put("real/object")
    (root / "evil").symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafeKeyError, match="symbolic link"):
        put("evil/planted")
    with pytest.raises(UnsafeKeyError, match="symbolic link"):
        store.get("evil/secret")
    with pytest.raises(UnsafeKeyError):
        store.head("evil/secret")
    with pytest.raises(UnsafeKeyError):
        store.exists("evil/secret")
    with pytest.raises(UnsafeKeyError):
        store.delete("evil/secret")

    assert files_under(outside) == ["secret"]
    assert [i.key for i in store.list()] == ["real/object"]


def test_a_symlinked_object_is_not_followed(
    store: LocalStore, put: PutFn, root: Path, outside: Path
) -> None:
    put("real/object")
    (root / "real" / "link").symlink_to(outside / "secret")

    with pytest.raises(UnsafeKeyError):
        store.get("real/link")
    with pytest.raises(UnsafeKeyError):
        put("real/link")
    with pytest.raises(UnsafeKeyError):
        store.delete("real/link")

    assert (outside / "secret").read_bytes() == b"not yours"
    assert [i.key for i in store.list()] == ["real/object"]


def test_links_are_not_followed_even_when_they_stay_inside_the_root(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    """An alias key would read, and seem to describe, another key's object."""
    put("real/object")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)

    with pytest.raises(UnsafeKeyError, match="symbolic link"):
        store.get("alias/object")
    with pytest.raises(UnsafeKeyError, match="symbolic link"):
        put("alias/other")


def test_a_symlinked_metadata_directory_is_refused(
    store: LocalStore, put: PutFn, root: Path, outside: Path
) -> None:
    root.mkdir()
    (root / ".meta").symlink_to(outside, target_is_directory=True)

    with pytest.raises(StoreError, match="symbolic link"):
        put(KEY)

    assert files_under(outside) == ["secret"]


def test_a_symlinked_root_is_resolved_once(tmp_path: Path, clock: Clock) -> None:
    """Operators may point the configured path at the real disk; that link is fine."""
    real = tmp_path / "real-store"
    real.mkdir()
    (tmp_path / "configured").symlink_to(real, target_is_directory=True)
    store = LocalStore(tmp_path / "configured", now=clock)
    PutFn(store, tmp_path / "src")(KEY)

    assert (real / KEY).is_file()
    assert store.describe() == f"file://{real}"


# -- files on disk ---------------------------------------------------------------------------


def test_objects_and_sidecars_are_read_only_for_everyone(put: PutFn, root: Path) -> None:
    put(KEY)

    assert mode(root / KEY) == 0o444
    assert mode(root / ".meta" / KEY) == 0o444
    assert mode(root / KEY) & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0


def test_a_sidecar_stays_read_only_when_replaced(store: LocalStore, put: PutFn, root: Path) -> None:
    put(KEY)
    store.set_legal_hold(KEY, True)
    store.set_retention(KEY, START + timedelta(days=1))

    assert mode(root / ".meta" / KEY) == 0o444
    assert mode(root / KEY) == 0o444


def test_directories_are_not_writable_by_group_or_others(put: PutFn, root: Path) -> None:
    put(KEY)
    directories = [root, root / ".meta", root / ".tmp"]
    directories += [p for p in root.rglob("*") if p.is_dir()]

    for directory in directories:
        assert mode(directory) & ~0o755 == 0, directory
        assert mode(directory) & (stat.S_IWGRP | stat.S_IWOTH) == 0, directory


def test_the_sidecar_records_the_object_in_json(put: PutFn, root: Path) -> None:
    put(KEY, b"abc", retain_until=datetime(2031, 1, 1, tzinfo=UTC))

    sidecar = json.loads((root / ".meta" / KEY).read_text())

    assert sidecar == {
        "key": KEY,
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "size": 3,
        "created": "2024-03-01T12:00:00+00:00",
        "retain_until": "2031-01-01T00:00:00+00:00",
        "legal_hold": False,
    }


def test_an_ambiguous_wall_clock_time_is_stored_in_utc_by_its_fold(
    store: LocalStore, put: PutFn
) -> None:
    berlin = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin"))  # CET
    info = put(KEY, retain_until=berlin)

    assert info.retain_until == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    assert info.retain_until is not None and info.retain_until.tzinfo is UTC
    assert store.head(KEY).retain_until == info.retain_until


class FsyncLog:
    """Records what each os.fsync call flushed (by path), then really flushes it."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        self._real(fd)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_files_and_directories_are_fsynced(
    store: LocalStore, put: PutFn, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = root.resolve()
    log = FsyncLog()
    monkeypatch.setattr(os, "fsync", log)

    put("warc/s/a/2024-03/x.warc.gz")

    tmp_files = [i for i, p in enumerate(log.paths) if p.startswith(f"{root}/.tmp/")]
    where = {p: i for i, p in enumerate(log.paths)}
    assert len(tmp_files) == 2, "object and sidecar are fsynced before they are renamed"
    # The object's directory and every directory created for it get their new entries
    # flushed, after the file's own bytes were.
    for directory in ["warc/s/a/2024-03", "warc/s/a", "warc/s", "warc", ""]:
        assert str(root / directory).rstrip("/") in where, directory
        assert where[str(root / directory).rstrip("/")] > tmp_files[0]
    assert str(root / ".meta/warc/s/a/2024-03") in where

    log.paths.clear()
    store.delete("warc/s/a/2024-03/x.warc.gz")
    assert str(root / "warc/s/a/2024-03") in log.paths
    assert str(root / ".meta/warc/s/a/2024-03") in log.paths


# -- retention and legal holds ---------------------------------------------------------------


def test_retention_lasts_until_its_moment_not_through_it(
    store: LocalStore, put: PutFn, clock: Clock
) -> None:
    until = START + timedelta(days=30)
    put(KEY, b"keep me", retain_until=until)

    clock.advance(days=30, seconds=-1)
    with pytest.raises(RetentionError, match="retained until 2024-03-31"):
        store.delete(KEY)
    assert store.get(KEY) == b"keep me"

    clock.advance(seconds=1)  # retained *until* that moment, not through it
    store.delete(KEY)
    assert not store.exists(KEY)


def test_deleting_removes_the_sidecar_and_empty_directories(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    put("warc/s/a/2024-03/one")
    put("warc/s/b/2024-03/two")

    store.delete("warc/s/a/2024-03/one")

    assert not (root / ".meta/warc/s/a/2024-03/one").exists()
    assert not (root / "warc/s/a").exists()
    assert not (root / ".meta/warc/s/a").exists()
    assert (root / "warc/s/b/2024-03/two").exists()
    assert [i.key for i in store.list()] == ["warc/s/b/2024-03/two"]


def test_an_object_whose_sidecar_is_lost_cannot_be_deleted(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    """Without its sidecar the store cannot know the object is not retained."""
    put(KEY)
    (root / ".meta" / KEY).unlink()

    with pytest.raises(StoreError, match="no metadata sidecar"):
        store.head(KEY)
    with pytest.raises(StoreError, match="no metadata sidecar"):
        store.delete(KEY)
    assert store.get(KEY) == b"record bytes"


def test_a_leftover_sidecar_without_object_does_not_block_a_put(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    """A crash between writing the sidecar and linking the object leaves just the sidecar."""
    put(KEY, b"old", retain_until=START + timedelta(days=9))
    (root / KEY).unlink()

    assert not store.exists(KEY)
    info = put(KEY, b"new")
    assert store.head(KEY) == info
    assert info.retain_until is None


# -- listing ---------------------------------------------------------------------------------


def test_list_never_shows_sidecars_temp_files_or_the_lock(
    store: LocalStore, put: PutFn, root: Path
) -> None:
    put(KEY)
    (root / ".tmp" / "put-leftover").write_bytes(b"crash debris")

    assert sorted(p.name for p in root.iterdir()) == [".lock", ".meta", ".tmp", "warc"]
    assert [i.key for i in store.list()] == [KEY]


def test_listing_a_store_whose_directory_does_not_exist_yet_yields_nothing(
    store: LocalStore, root: Path
) -> None:
    assert not root.exists()
    assert list(store.list()) == []


# -- package surface -------------------------------------------------------------------------


def test_the_store_package_exports_exactly_its_public_names() -> None:
    assert sorted(archiver.store.__all__) == [
        "LAYOUT_VERSION",
        "LocalStore",
        "ObjectInfo",
        "Store",
        "ensure_layout",
    ]
