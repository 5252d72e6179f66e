"""The local-directory store backend: write-once files, retention and holds in sidecars.

On-disk layout under the root (documented in docs/layout.md)::

    <root>/<key>          the object: written once, mode 0o444, never modified
    <root>/.meta/<key>    its metadata sidecar: JSON, mode 0o444, replaced atomically
    <root>/.tmp/          files being written; anything left there after a crash is garbage
    <root>/.lock          advisory lock (flock) that serializes every change

Every change goes temp file -> fsync -> rename/link -> fsync of the directory, so a crash
leaves either the old state or the new one. The sidecar is written before the object is
linked into place and removed after the object is unlinked: a crash can leave a sidecar
without an object (ignored, replaced by the next put), never an object without its
retention record.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from archiver.errors import (
    IntegrityError,
    ObjectNotFoundError,
    RetentionError,
    StoreError,
    UnsafeKeyError,
)
from archiver.store._fs import fsync_dir, link_no_replace, prune, read_nofollow, regular_file_size
from archiver.store._meta import SHA256_HEX, aware, decode, encode
from archiver.store.base import ObjectInfo, Store
from archiver.store.keys import validate_key

CHUNK_SIZE = 1024 * 1024
META_DIR = ".meta"
TMP_DIR = ".tmp"
LOCK_FILE = ".lock"
DIR_MODE = 0o750
FILE_MODE = 0o444


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LocalStore:
    """A :class:`~archiver.store.base.Store` on a local directory.

    ``now`` is the clock retention is judged by; tests inject one to move time.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, now: Callable[[], datetime] = _utc_now
    ) -> None:
        # Resolved once: every object path must equal root/key with no link on the way.
        self._root = Path(root).resolve()
        self._now = now

    @property
    def root(self) -> Path:
        """The store's root directory (absolute, symlinks resolved)."""
        return self._root

    def describe(self) -> str:
        """``file:///abs/root``."""
        return self._root.as_uri()

    def check(self) -> None:
        """Check the root is (or can be made) a writable directory; ``StoreError`` if not."""
        self._prepare()
        if not os.access(self._root / TMP_DIR, os.W_OK | os.X_OK):
            raise StoreError(
                f"the store directory {self._root} is not writable by this user; fix its "
                "owner or permissions, or [store] path"
            )

    # -- writing ---------------------------------------------------------------------------

    def put(
        self, key: str, source: Path, sha256: str, *, retain_until: datetime | None = None
    ) -> ObjectInfo:
        """Copy ``source`` under ``key`` after checking its sha256; write-once."""
        path, meta = self._path(key), self._meta_path(key)
        expected = _check_sha256(sha256)
        retain = None if retain_until is None else aware(retain_until, "retain_until")
        _refuse_occupied(path, key)  # before copying gigabytes; again under the lock
        self._prepare()
        try:
            src = Path(source).open("rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise StoreError(f"cannot read {source} to store it: {exc.strerror}") from exc
        with src:
            tmp, size, actual = self._spool(_chunks(src), key)
        try:
            if not hmac.compare_digest(actual, expected):
                raise IntegrityError(
                    f"{source} has sha256 {actual} but {expected} was recorded for it; "
                    f"nothing was stored under {key!r}"
                )
            info = ObjectInfo(
                key=key,
                size=size,
                sha256=actual,
                retain_until=retain,
                legal_hold=False,
                created=self._clock(),
            )
            with self._locked():
                _refuse_occupied(path, key)
                dirty = self._makedirs(path.parent, key)
                self._write_meta(meta, info)
                try:
                    link_no_replace(tmp, path)
                except BaseException as exc:
                    meta.unlink(missing_ok=True)
                    if isinstance(exc, FileExistsError):
                        raise _exists_error(key) from None
                    raise
                for directory in dirty:
                    fsync_dir(directory)
        except OSError as exc:
            raise StoreError(f"could not store {key!r} in {self._root}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def set_retention(self, key: str, retain_until: datetime) -> ObjectInfo:
        """Extend the retention of ``key``; shortening it raises ``RetentionError``."""
        new = aware(retain_until, "retain_until")
        meta = self._meta_path(key)
        with self._locked():
            info = self.head(key)
            if info.retain_until is not None and new < info.retain_until:
                raise RetentionError(
                    f"{key!r} is retained until {info.retain_until.isoformat()}; retention "
                    f"can be extended but never shortened (asked for {new.isoformat()})"
                )
            updated = replace(info, retain_until=new)
            self._write_meta(meta, updated)
        return updated

    def set_legal_hold(self, key: str, on: bool) -> ObjectInfo:
        """Place (``on=True``) or release a legal hold on ``key``."""
        meta = self._meta_path(key)
        with self._locked():
            updated = replace(self.head(key), legal_hold=on)
            self._write_meta(meta, updated)
        return updated

    def delete(self, key: str, *, bypass_governance: bool = False) -> None:
        """Delete ``key``; refused while it is retained or held, or if its sidecar is gone.

        The sidecar's retention is a governance retention: ``bypass_governance`` lifts it
        (a legal hold still refuses).
        """
        path, meta = self._path(key), self._meta_path(key)
        with self._locked():
            info = self.head(key)
            now = self._clock()
            if info.legal_hold:
                raise RetentionError(
                    f"{key!r} is under a legal hold; it cannot be deleted until the hold is "
                    "released"
                )
            if info.retain_until is not None and info.retain_until > now and not bypass_governance:
                raise RetentionError(
                    f"{key!r} is retained until {info.retain_until.isoformat()} "
                    f"(now {now.isoformat()}); it cannot be deleted before then"
                )
            path.unlink()
            fsync_dir(path.parent)
            meta.unlink(missing_ok=True)
            fsync_dir(meta.parent)
            prune(path.parent, self._root)
            prune(meta.parent, self._root / META_DIR)

    def delete_all_versions(self, key: str, *, bypass_governance: bool = False) -> int:
        """Delete ``key`` (the local backend keeps one version); return how many were deleted."""
        if not self.exists(key):
            return 0
        self.delete(key, bypass_governance=bypass_governance)
        return 1

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes of ``key`` from ``offset`` (to the end when None)."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"offset and length must not be negative ({offset}, {length})")
        with self._open_object(key) as f:
            remaining = max(0, os.fstat(f.fileno()).st_size - offset)
            # Clamped: a huge length would otherwise make read() allocate that much up front.
            f.seek(offset)
            return f.read(remaining if length is None else min(length, remaining))

    def open(self, key: str) -> Iterator[bytes]:
        """Stream ``key`` in 1 MiB chunks; the file is opened now, so absence raises now."""
        return _stream(self._open_object(key))

    def head(self, key: str) -> ObjectInfo:
        """The object's size, sha256, retention and hold, as recorded in its sidecar."""
        return self._info(key, check_size=True)

    def _info(self, key: str, *, check_size: bool) -> ObjectInfo:
        path, meta = self._path(key), self._meta_path(key)
        size = regular_file_size(path)
        if size is None:
            raise ObjectNotFoundError(f"no object is stored under {key!r} in {self.describe()}")
        try:
            raw = read_nofollow(meta)
        except FileNotFoundError:
            raise StoreError(
                f"{key!r} has no metadata sidecar in {META_DIR}/ so its retention is unknown; "
                "the store is damaged: restore the sidecar from a backup or rebuild it"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read the metadata sidecar of {key!r}: {exc}") from exc
        info = decode(key, raw)
        if check_size and info.size != size:
            raise IntegrityError(
                f"{key!r} is {size} bytes on disk but {info.size} bytes were stored; "
                "the object has been altered"
            )
        return info

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        return _is_object(self._path(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order, reserved names skipped."""
        for key in sorted(self._keys(prefix)):
            try:
                # What was stored, unchecked: whoever reads an object checks its bytes (size
                # and sha256) against this record. Checking here would let one altered file
                # stop a rebuild or an audit of the whole store at its name, where the
                # reader reports it as damage and goes on to the rest.
                yield self._info(key, check_size=False)
            except ObjectNotFoundError:
                continue  # deleted while we were listing

    def list_versions(self, key: str) -> builtins.list[ObjectInfo]:
        """The one version of ``key``, or none."""
        return [self.head(key)] if self.exists(key) else []

    # -- paths -----------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self._inside(self._root, validate_key(key), key)

    def _meta_path(self, key: str) -> Path:
        # The sidecar tree mirrors the object tree name for name (no suffix), so two keys
        # collide there only if they already collide as objects ("a" and "a/b").
        return self._inside(self._root / META_DIR, validate_key(key), key)

    def _inside(self, base: Path, relative: str, key: str) -> Path:
        path = base.joinpath(*relative.split("/"))
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:
            raise UnsafeKeyError(f"storage key {key!r} cannot be resolved: {exc}") from exc
        # Keys have no "." or ".." parts, so any difference is a symbolic link on the way.
        if resolved != path:
            raise UnsafeKeyError(
                f"storage key {key!r} passes through a symbolic link (to {resolved}); "
                "the store never follows links"
            )
        return path

    def _keys(self, prefix: str) -> Iterator[str]:
        if prefix.startswith("."):
            raise UnsafeKeyError(
                f"cannot list {prefix!r}: keys starting with '.' are reserved for the store's "
                "own metadata and temporary files"
            )
        directory = prefix.rpartition("/")[0]
        if directory and not _valid(directory):
            return  # every key under it would be unsafe, so none is stored (as on S3)
        start = self._path(directory) if directory else self._root
        if not start.is_dir():
            return
        # os.walk skips unreadable directories by default; a listing must not.
        for dirpath, dirnames, filenames in os.walk(start, onerror=_listing_failed):
            here = Path(dirpath)
            if here == self._root:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                filenames = [f for f in filenames if not f.startswith(".")]
            for name in filenames:
                key = (here / name).relative_to(self._root).as_posix()
                if key.startswith(prefix) and _is_object(here / name) and _valid(key):
                    yield key

    # -- mechanics -------------------------------------------------------------------------

    def _clock(self) -> datetime:
        return aware(self._now(), "the store's clock")

    def _prepare(self) -> None:
        for directory in (self._root, self._root / META_DIR, self._root / TMP_DIR):
            if directory.is_symlink():
                raise StoreError(f"{directory} is a symbolic link; the store never follows links")
            try:
                directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {directory}: {exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock; filesystem failures inside become ``StoreError``."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._prepare()
        try:
            fd = os.open(self._root / LOCK_FILE, flags, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot lock the store {self._root}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        except OSError as exc:
            raise StoreError(f"the store {self._root} failed: {exc}") from exc
        finally:
            os.close(fd)  # releases the lock

    def _makedirs(self, directory: Path, key: str) -> builtins.list[Path]:
        """Create ``directory`` and missing parents; return every directory to fsync."""
        missing: builtins.list[Path] = []
        current = directory
        while not current.is_dir():
            if current.exists() or current.is_symlink():
                raise StoreError(
                    f"cannot store {key!r}: {current.relative_to(self._root)} is already "
                    "an object, so it cannot also be a directory"
                )
            missing.append(current)
            current = current.parent
        for new in reversed(missing):
            new.mkdir(mode=DIR_MODE)
        # The new entry in each parent must reach the disk, as must the object's own.
        return [directory, *(new.parent for new in missing)]

    def _spool(self, chunks: Iterable[bytes], key: str) -> tuple[Path, int, str]:
        """Write ``chunks`` to a read-only, fsynced temp file; return it, its size and sha256."""
        fd, name = tempfile.mkstemp(dir=self._root / TMP_DIR, prefix="put-")
        tmp = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fchmod(out.fileno(), FILE_MODE)
                os.fsync(out.fileno())
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(f"could not copy {key!r} into {self._root}: {exc}") from exc
            raise
        return tmp, size, digest.hexdigest()

    def _write_meta(self, meta: Path, info: ObjectInfo) -> None:
        tmp, _, _ = self._spool([encode(info)], info.key)
        try:
            dirty = self._makedirs(meta.parent, info.key)
            tmp.replace(meta)
            for directory in dirty:
                fsync_dir(directory)
        finally:
            tmp.unlink(missing_ok=True)

    def _open_object(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object is stored under {key!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeKeyError(f"{key!r} is a symbolic link; not followed") from exc
            raise StoreError(f"cannot read {key!r}: {exc}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ObjectNotFoundError(f"no object is stored under {key!r}")
        return os.fdopen(fd, "rb")


# -- helpers ---------------------------------------------------------------------------------


def _check_sha256(value: str) -> str:
    digest = value.lower()
    if not SHA256_HEX.fullmatch(digest):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, not {value!r}")
    return digest


def _valid(key: str) -> bool:
    try:
        validate_key(key)
    except UnsafeKeyError:
        return False
    return True


def _refuse_occupied(path: Path, key: str) -> None:
    if path.is_dir() and not path.is_symlink():
        raise StoreError(
            f"cannot store {key!r}: other objects are stored under '{key}/', so it cannot "
            "also be an object"
        )
    if path.exists() or path.is_symlink():
        raise _exists_error(key)


def _listing_failed(exc: OSError) -> None:
    raise StoreError(f"cannot list {exc.filename}: {exc.strerror}") from exc


def _exists_error(key: str) -> StoreError:
    return StoreError(f"an object is already stored under {key!r}; stored objects are write-once")


def _is_object(path: Path) -> bool:
    return regular_file_size(path) is not None


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_SIZE):
        yield chunk


def _stream(f: BinaryIO) -> Iterator[bytes]:
    with f:
        yield from _chunks(f)


if TYPE_CHECKING:
    # mypy proves here that LocalStore satisfies the Store protocol.
    _conforms: type[Store] = LocalStore
