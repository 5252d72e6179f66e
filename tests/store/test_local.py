"""The local store backend, written as its specification.

Tests run as root, so "could not write" proves nothing: permissions are checked as mode
bits with ``os.stat``. Time never passes by sleeping: the store's clock is injected.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import archiver.store
from archiver.errors import (
    IntegrityError,
    ObjectNotFoundError,
    RetentionError,
    StoreError,
    UnsafeKeyError,
)
from archiver.store import LocalStore, ObjectInfo, Store
from tests.store.conftest import KEY, START, Clock, PutFn


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def files_under(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir())


# -- round trip ------------------------------------------------------------------------------


def test_the_local_store_is_a_store(store: LocalStore) -> None:
    assert isinstance(store, Store)


def test_put_then_get_and_head_return_what_was_stored(store: LocalStore, put: PutFn) -> None:
    data = b"WARC/1.1\r\n" * 1000
    info = put(KEY, data)

    assert info == ObjectInfo(
        key=KEY,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        retain_until=None,
        legal_hold=False,
        version_id=None,
        created=START,
    )
    assert store.get(KEY) == data
    assert store.head(KEY) == info
    assert store.exists(KEY)
    assert store.list_versions(KEY) == [info]


def test_open_streams_large_objects_in_chunks(store: LocalStore, put: PutFn) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    put(KEY, data)

    chunks = list(store.open(KEY))

    assert len(chunks) == 3
    assert b"".join(chunks) == data


def test_an_uppercase_sha256_is_accepted_and_stored_lowercase(put: PutFn) -> None:
    data = b"x"
    info = put(KEY, data, sha256=hashlib.sha256(data).hexdigest().upper())
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_a_malformed_sha256_is_a_programming_error(put: PutFn) -> None:
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        put(KEY, sha256="abc")


def test_get_reads_a_byte_range(store: LocalStore, put: PutFn) -> None:
    put(KEY, b"0123456789")

    assert store.get(KEY, 0, 3) == b"012"
    assert store.get(KEY, 4, 2) == b"45"
    assert store.get(KEY, 7) == b"789"
    assert store.get(KEY, 8, 100) == b"89"
    assert store.get(KEY, 10) == b""
    assert store.get(KEY, 50, 5) == b""
    assert store.get(KEY, 3, 0) == b""
    assert store.get(KEY, 0, 10**15) == b"0123456789"
    with pytest.raises(ValueError):
        store.get(KEY, -1)
    with pytest.raises(ValueError):
        store.get(KEY, 0, -1)


def test_absent_objects_are_reported_as_not_found(store: LocalStore, put: PutFn) -> None:
    assert not store.exists(KEY)
    assert store.list_versions(KEY) == []
    with pytest.raises(ObjectNotFoundError):
        store.get(KEY)
    with pytest.raises(ObjectNotFoundError):
        store.open(KEY)  # raised at the call, not at the first chunk
    with pytest.raises(ObjectNotFoundError):
        store.head(KEY)
    with pytest.raises(ObjectNotFoundError):
        store.delete(KEY)
    with pytest.raises(ObjectNotFoundError):
        store.set_legal_hold(KEY, True)
    put("warc/a/b", b"x")
    with pytest.raises(ObjectNotFoundError, match="'warc/a'"):
        store.get("warc/a")  # a directory is not an object
    assert not store.exists("warc/a")


def test_describe_names_the_root_as_a_file_url(store: LocalStore, root: Path) -> None:
    assert store.describe() == f"file://{root.resolve()}"


# -- integrity and write-once ----------------------------------------------------------------


def test_a_wrong_sha256_stores_nothing(store: LocalStore, put: PutFn, root: Path) -> None:
    with pytest.raises(IntegrityError, match="nothing was stored"):
        put(KEY, b"the real bytes", sha256=hashlib.sha256(b"other bytes").hexdigest())

    assert not store.exists(KEY)
    assert files_under(root) == [], "no object, no sidecar, no temp file"
    assert list(store.list()) == []


def test_a_key_is_written_once(store: LocalStore, put: PutFn, root: Path) -> None:
    put(KEY, b"first")

    with pytest.raises(StoreError, match="write-once"):
        put(KEY, b"second")
    with pytest.raises(StoreError, match="write-once"):
        put(KEY, b"first")  # even the same bytes

    assert store.get(KEY) == b"first"
    assert not any((root / ".tmp").iterdir())


def test_concurrent_puts_to_one_key_store_exactly_one(store: LocalStore, tmp_path: Path) -> None:
    writers = [PutFn(store, tmp_path / f"writer-{n}") for n in range(8)]
    start = threading.Barrier(len(writers))
    outcomes: list[str] = []

    def write(n: int) -> None:
        start.wait()
        try:
            writers[n](KEY, f"writer {n}".encode())
            outcomes.append("stored")
        except StoreError:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused"] * 7 + ["stored"]
    assert hashlib.sha256(store.get(KEY)).hexdigest() == store.head(KEY).sha256


def test_a_missing_source_is_a_store_error(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read"):
        store.put(KEY, tmp_path / "nope", "0" * 64)
    assert not store.exists(KEY)


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


# -- keys and links --------------------------------------------------------------------------

UNSAFE_KEYS = ["../../etc/passwd", "/etc/passwd", "a/../../b", "a\\b", ".meta/x", "a//b", ""]


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused_by_every_operation(
    store: LocalStore, put: PutFn, tmp_path: Path, key: str
) -> None:
    with pytest.raises(UnsafeKeyError):
        put(key)
    with pytest.raises(UnsafeKeyError):
        store.get(key)
    with pytest.raises(UnsafeKeyError):
        store.open(key)
    with pytest.raises(UnsafeKeyError):
        store.head(key)
    with pytest.raises(UnsafeKeyError):
        store.exists(key)
    with pytest.raises(UnsafeKeyError):
        store.delete(key)
    with pytest.raises(UnsafeKeyError):
        store.set_retention(key, START)
    with pytest.raises(UnsafeKeyError):
        store.set_legal_hold(key, True)
    assert files_under(tmp_path) == ["sources/source-1"]


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


def test_times_are_stored_in_utc_whatever_zone_they_came_in(store: LocalStore, put: PutFn) -> None:
    berlin = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin"))  # CET
    info = put(KEY, retain_until=berlin)

    assert info.retain_until == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    assert info.retain_until is not None and info.retain_until.tzinfo is UTC
    assert store.head(KEY).retain_until == info.retain_until


def test_naive_datetimes_are_refused(store: LocalStore, put: PutFn) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        put(KEY, retain_until=datetime(2030, 1, 1))
    put(KEY)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.set_retention(KEY, datetime(2030, 1, 1))


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


def test_a_retained_object_cannot_be_deleted_until_its_time_comes(
    store: LocalStore, put: PutFn, clock: Clock
) -> None:
    until = START + timedelta(days=30)
    put(KEY, b"keep me", retain_until=until)

    with pytest.raises(RetentionError, match="retained until 2024-03-31"):
        store.delete(KEY)
    assert store.get(KEY) == b"keep me"

    clock.advance(days=30, seconds=-1)
    with pytest.raises(RetentionError):
        store.delete(KEY)

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


def test_a_held_object_cannot_be_deleted_until_the_hold_is_released(
    store: LocalStore, put: PutFn, clock: Clock
) -> None:
    put(KEY, retain_until=START + timedelta(days=1))
    held = store.set_legal_hold(KEY, True)
    assert held.legal_hold
    assert store.head(KEY).legal_hold

    clock.advance(days=365)  # retention long over: the hold alone keeps it
    with pytest.raises(RetentionError, match="legal hold"):
        store.delete(KEY)
    with pytest.raises(RetentionError):
        store.delete_all_versions(KEY)
    assert store.exists(KEY)

    released = store.set_legal_hold(KEY, False)
    assert not released.legal_hold
    assert store.delete_all_versions(KEY) == 1
    assert store.delete_all_versions(KEY) == 0


def test_retention_can_be_extended_but_not_shortened(store: LocalStore, put: PutFn) -> None:
    put(KEY, retain_until=START + timedelta(days=10))

    extended = store.set_retention(KEY, START + timedelta(days=20))
    assert extended.retain_until == START + timedelta(days=20)
    assert store.head(KEY) == extended

    with pytest.raises(RetentionError, match="never shortened"):
        store.set_retention(KEY, START + timedelta(days=19))
    assert store.head(KEY).retain_until == START + timedelta(days=20)

    assert store.set_retention(KEY, START + timedelta(days=20)) == extended


def test_retention_can_be_set_on_an_object_stored_without_one(
    store: LocalStore, put: PutFn
) -> None:
    put(KEY)
    info = store.set_retention(KEY, START + timedelta(days=1))

    assert info.retain_until == START + timedelta(days=1)
    with pytest.raises(RetentionError):
        store.delete(KEY)


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


def test_list_is_in_key_order_and_filters_by_prefix(store: LocalStore, put: PutFn) -> None:
    for key in ["b", "a/b", "a-c", "a/a/z", "ab", "layout-version"]:
        put(key)

    assert [i.key for i in store.list()] == ["a-c", "a/a/z", "a/b", "ab", "b", "layout-version"]
    assert [i.key for i in store.list("a/")] == ["a/a/z", "a/b"]
    assert [i.key for i in store.list("a")] == ["a-c", "a/a/z", "a/b", "ab"]
    assert [i.key for i in store.list("a/a")] == ["a/a/z"]
    assert [i.key for i in store.list("nothing/")] == []
    assert all(isinstance(i, ObjectInfo) for i in store.list())


def test_list_never_shows_the_reserved_namespace(store: LocalStore, put: PutFn, root: Path) -> None:
    put(KEY)
    (root / ".tmp" / "put-leftover").write_bytes(b"crash debris")

    assert [i.key for i in store.list()] == [KEY]
    assert sorted(p.name for p in root.iterdir()) == [".lock", ".meta", ".tmp", "warc"]
    with pytest.raises(UnsafeKeyError, match="reserved"):
        list(store.list(".meta/"))
    with pytest.raises(UnsafeKeyError, match="reserved"):
        list(store.list(".t"))


def test_listing_an_empty_or_missing_store_yields_nothing(store: LocalStore) -> None:
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
