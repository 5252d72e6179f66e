"""Restoring one item version exactly as captured, verified before anything is written.

:func:`restore_item` reads, by one ranged read each, the version's ``conversion`` record
(the normalized JSON), the raw record it refers to (the API ``response``, or the export
entry's ``resource``) and the record of each of its media (a ``revisit`` is followed to the
original capture). Every record is checked against the catalog's block and payload digests
and every media payload against the media's SHA-256 and size *before* the first byte is
written; a failure raises :class:`~archiver.errors.IntegrityError` naming the stored file
(key and id) and the offset, and nothing is written.

What is written (one folder per item version; every name is generated, never taken from an
id, a media name, a MIME type or a URL)::

    DIR/item-<catalog id>-v<version>/
        item.json                     the conversion record's block: the normalized JSON
        source/response.http          the raw HTTP response as archived: status line,
                                      header fields, body as received (de-chunked; still
                                      content-encoded when the server encoded it)
        source/response-body.<ext>    that response's body alone (``.gz`` added when it was
                                      gzip-encoded on the wire)
        source/resource.<ext>         instead of the two above, for an export import: the
                                      archive entry as found
        media/<NN>-<sha256[:16]>.<ext>  each media object's bytes, NN its 1-based position
        manifest.json                 what was restored, from where, with which hashes

``<ext>`` comes from a fixed table of MIME types (``bin`` for anything else). The folder is
staged under a hidden name inside DIR and renamed into place when complete, so a failure
while writing leaves nothing behind; an existing folder is refused unless ``overwrite``.
Files are created relative to DIR's open directory with ``O_EXCL | O_NOFOLLOW``, so a
symbolic link planted in DIR is never followed. Nothing is fsynced unless asked
(``durable``): see :func:`write_plan`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from archiver import __version__, items
from archiver.catalog.db import Catalog
from archiver.errors import ArchiverError, IntegrityError
from archiver.items import ItemSummary, MediaInfo, VersionInfo
from archiver.retrieve import (
    Located,
    Payload,
    Retrieved,
    locate_in,
    locate_one,
    payload_of,
    read_located,
)
from archiver.store.base import Store

MANIFEST_VERSION = 1
MANIFEST = "manifest.json"

#: MIME type → file extension of a restored file; anything else is ``.bin``.
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/svg+xml": "svg",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/ogg": "ogg",
    "audio/wav": "wav",
    "application/vnd.apple.mpegurl": "m3u8",
    "application/x-mpegurl": "m3u8",
    "application/json": "json",
    "application/activity+json": "json",
    "application/ld+json": "json",
    "text/html": "html",
    "text/plain": "txt",
    "text/xml": "xml",
    "application/xml": "xml",
}
_ENCODED = {"gzip": "gz", "x-gzip": "gz", "br": "br", "deflate": "zz", "zstd": "zst"}
#: What a generated name may be: no separators, no leading dot, nothing outside ASCII.
_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RestoredFile:
    """One file of a restore: its path in the item folder, its bytes' hash and source."""

    path: str
    role: str  # "item", "source-http", "source-body", "source-resource", "media"
    sha256: str
    size: int
    source: dict[str, Any]
    data: bytes = field(repr=False, compare=False, default=b"")

    def entry(self) -> dict[str, Any]:
        """The file's entry in ``manifest.json``."""
        return {
            "path": self.path,
            "role": self.role,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """What a restore will write, every byte already read and verified."""

    item: ItemSummary
    version: VersionInfo
    history: list[VersionInfo]
    media: list[MediaInfo]
    files: list[RestoredFile]
    selected_by: dict[str, Any]

    @property
    def folder(self) -> str:
        return f"item-{self.item.id}-v{self.version.version_no}"


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """A completed restore: where it went and what it wrote."""

    item_id: int
    version_no: int
    directory: Path
    files: list[RestoredFile]
    manifest_sha256: str
    overwrote: bool

    def audit_detail(self) -> dict[str, Any]:
        """What the audit log keeps of this restore."""
        return {
            "outcome": "restored",
            "version": self.version_no,
            "target": str(self.directory),
            "overwrote": self.overwrote,
            "manifest_sha256": self.manifest_sha256,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
        }


# -- choosing the version -------------------------------------------------------------------


def parse_as_of(text: str, zone: ZoneInfo) -> datetime:
    """A ``--as-of`` moment: ISO 8601 date or date-time; without an offset, in ``zone``.

    A date alone means the *end* of that day (every capture made on it counts).
    """
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            moment = datetime.combine(day + timedelta(days=1), time(), zone) - timedelta(
                microseconds=1
            )
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ArchiverError(
            f"--as-of {text!r} is not a date or time: use ISO 8601, e.g. 2024-05-01 or "
            "2024-05-01T14:30 (local time) or 2024-05-01T19:30Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def select_version(
    item: ItemSummary,
    found: list[VersionInfo],
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> VersionInfo:
    """The version to restore: ``version``, the latest captured at or before ``as_of``, or
    the latest. A deletion (a note, not content) is never restored."""
    if version is not None and as_of is not None:
        raise ArchiverError("give --version or --as-of, not both")
    content = [v for v in found if v.has_content]
    numbers = ", ".join(str(v.version_no) for v in content) or "none"
    if version is not None:
        chosen = next((v for v in found if v.version_no == version), None)
        if chosen is None:
            raise ArchiverError(
                f"item {item.id} has no version {version}; its versions with content: {numbers}"
            )
        if not chosen.has_content:
            raise ArchiverError(
                f"version {version} of item {item.id} records its deletion and has no content; "
                f"restore one of: {numbers}"
            )
        return chosen
    if as_of is not None:
        before = [v for v in content if v.captured_at <= as_of]
        if not before:
            first = content[0].captured_at.isoformat() if content else "never"
            raise ArchiverError(
                f"item {item.id} was not captured at or before {as_of.isoformat()}; "
                f"its first capture was {first}"
            )
        return before[-1]
    if not content:
        raise ArchiverError(f"item {item.id} has no captured content to restore")
    return content[-1]


# -- reading and verifying ------------------------------------------------------------------


def plan_restore(
    catalog: Catalog,
    store: Store,
    item_id: int,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> RestorePlan:
    """Read and verify every record the restore needs; nothing is written."""
    with catalog.reader() as s:
        item = items.summary(s, item_id)
        history = items.versions(s, item_id)
        chosen = select_version(item, history, version=version, as_of=as_of)
        media = items.media_of(s, chosen)
        located = locate_in(s, [chosen.record_id, *(m.record_id for m in media if m.record_id)])
    conversion = _read(store, located, chosen.record_id, f"version {chosen.version_no}")
    _check_version(conversion, chosen)
    files = [_file("item.json", "item", conversion, conversion.block)]
    source_id = conversion.headers.get("WARC-Refers-To")
    if not source_id:
        raise IntegrityError(f"{conversion.located.where()}: the item record names no source")
    source = payload_of(catalog, store, read_located(store, locate_one(catalog, source_id)))
    files += _source_files(source)
    for m in media:
        if m.record_id is None:
            continue  # never stored (too large, failed): listed in the manifest as missing
        files.append(_media_file(catalog, store, located, m))
    selected_by = {
        "version": version,
        "as_of": as_of.isoformat() if as_of else None,
        "latest": version is None and as_of is None,
    }
    return RestorePlan(item, chosen, history, media, files, selected_by)


def _read(store: Store, located: dict[str, Located], record_id: str, what: str) -> Retrieved:
    at = located.get(record_id)
    if at is None:
        raise IntegrityError(f"the record {record_id} of {what} is not in the catalog's records")
    return read_located(store, at)


def _check_version(record: Retrieved, version: VersionInfo) -> None:
    """The record is the version the catalog describes (same place, same content hash)."""
    at = record.located
    if (at.file_id, at.offset, at.length) != (version.file_id, version.offset, version.length):
        raise IntegrityError(
            f"{at.where()}: the catalog's version {version.version_no} points elsewhere "
            f"({version.file_id} at offset {version.offset}); the catalog is inconsistent"
        )
    if record.warc_type != "conversion":
        raise IntegrityError(f"{at.where()} is a {record.warc_type} record, not an item version")
    try:
        doc = json.loads(record.block)
    except ValueError as exc:
        raise IntegrityError(f"{at.where()}: the item record is not JSON ({exc})") from exc
    recorded = doc.get("content_sha256") if isinstance(doc, dict) else None
    if recorded is not None and recorded != version.content_sha256:
        raise IntegrityError(
            f"{at.where()}: its content hash {recorded} is not the catalog's "
            f"{version.content_sha256} for version {version.version_no}"
        )


def _source(record: Retrieved) -> dict[str, Any]:
    at = record.located
    return {
        "file_id": at.file_id,
        "key": at.key,
        "offset": at.offset,
        "length": at.length,
        "record_id": at.record_id,
        "warc_type": record.warc_type,
        "target_uri": record.headers.get("WARC-Target-URI"),
        "date": record.headers.get("WARC-Date"),
        "block_digest": at.block_digest,
        "payload_digest": at.payload_digest,
        "redacted": record.headers.get("WARC-Archiver-Redacted") or None,
    }


def _file(path: str, role: str, record: Retrieved, data: bytes, **more: Any) -> RestoredFile:
    return RestoredFile(
        path,
        role,
        hashlib.sha256(data).hexdigest(),
        len(data),
        {**_source(record), **more},
        data,
    )


def _source_files(source: Payload) -> list[RestoredFile]:
    record = source.record
    if source.http_head is None:
        ext = extension_for(record.headers.get("Content-Type"))
        return [_file(f"source/resource.{ext}", "source-resource", record, source.body)]
    fields = http_fields(source.http_head)
    ext = extension_for(fields.get("content-type"))
    encoding = fields.get("content-encoding", "").strip().lower()
    if encoding and encoding != "identity":
        ext += "." + _ENCODED.get(encoding, "bin")
    status = source.http_head.split(b"\r\n", 1)[0].decode("iso-8859-1")
    return [
        _file("source/response.http", "source-http", record, record.block, http_status=status),
        _file(
            f"source/response-body.{ext}",
            "source-body",
            record,
            source.body,
            payload_sha256=source.sha256,
        ),
    ]


def _media_file(
    catalog: Catalog, store: Store, located: dict[str, Located], media: MediaInfo
) -> RestoredFile:
    assert media.record_id is not None and media.sha256 is not None
    record = _read(store, located, media.record_id, f"media {media.position + 1}")
    payload = payload_of(catalog, store, record)
    where = payload.record.located.where()
    if payload.sha256 != media.sha256 or (
        media.size is not None and len(payload.body) != media.size
    ):
        raise IntegrityError(
            f"{where}: the media bytes (sha256 {payload.sha256}, {len(payload.body)} bytes) are "
            f"not the catalog's media {media.media_id} (sha256 {media.sha256}, {media.size} bytes)"
        )
    fields = http_fields(payload.http_head) if payload.http_head is not None else {}
    mime = fields.get("content-type") or payload.record.headers.get("Content-Type")
    if payload.http_head is None and mime and mime.startswith("application/http"):
        mime = None
    ext = extension_for(mime or media.mime_type)
    name = f"media/{media.position + 1:02d}-{media.sha256[:16]}.{ext}"
    return _file(
        name,
        "media",
        payload.record,
        payload.body,
        position=media.position,
        media_sha256=media.sha256,
        via_revisit=payload.revisit.record_id if payload.revisit is not None else None,
    )


def http_fields(head: bytes) -> dict[str, str]:
    """An HTTP head's header fields, by lower-case name (the last of repeated ones)."""
    out: dict[str, str] = {}
    for line in head.decode("iso-8859-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def extension_for(mime: str | None) -> str:
    """The extension of a restored file of type ``mime``, from :data:`EXTENSIONS` only."""
    base = (mime or "").split(";", 1)[0].strip().lower()
    return EXTENSIONS.get(base, "bin")


# -- writing --------------------------------------------------------------------------------


def manifest(plan: RestorePlan, *, restored_by: str, restored_at: datetime) -> dict[str, Any]:
    """``manifest.json``: the item, the version, every file with its source and hashes."""
    item, version = plan.item, plan.version
    by_position = {f.source.get("position"): f.path for f in plan.files if f.role == "media"}
    return {
        "manifest_version": MANIFEST_VERSION,
        "archiver_version": __version__,
        "restored_at": restored_at.astimezone(UTC).isoformat(),
        "restored_by": restored_by,
        "item": {
            "id": item.id,
            "account": item.account_id,
            "platform": item.platform,
            "platform_item_id": item.platform_item_id,
            "kind": item.kind,
            "permalink": item.permalink,
            "author": item.author,
            "created_at": _iso(item.created_at),
            "state": item.state,
            "state_changed_at": _iso(item.state_changed_at),
            "series": item.series,
            "partition": item.partition,
        },
        "version": {
            "version_no": version.version_no,
            "captured_at": _iso(version.captured_at),
            "change": version.change,
            "content_sha256": version.content_sha256,
            "record_id": version.record_id,
        },
        "selected_by": plan.selected_by,
        "files": [f.entry() for f in plan.files],
        "media": [
            {
                "position": m.position,
                "status": m.status,
                "platform_media_id": m.platform_media_id,
                "alt_text": m.alt_text,
                "mime_type": m.mime_type,
                "sha256": m.sha256,
                "size": m.size,
                "source_url": m.source_url,
                "file": by_position.get(m.position),
                "detail": m.detail,
            }
            for m in plan.media
        ],
        "history": [
            {
                "version_no": v.version_no,
                "captured_at": _iso(v.captured_at),
                "change": v.change,
                "content_sha256": v.content_sha256,
                "record_id": v.record_id,
            }
            for v in plan.history
        ],
        "verified": [
            "each record's gzip member and SHA-256 block digest, against the catalog",
            "each payload's SHA-256 payload digest, against the catalog and the record",
            "each media payload's SHA-256 and size, against the catalog's media row",
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def restore_item(
    catalog: Catalog,
    store: Store,
    item_id: int,
    target: Path,
    *,
    restored_by: str,
    version: int | None = None,
    as_of: datetime | None = None,
    overwrite: bool = False,
    durable: bool = False,
    clock: Clock = _utcnow,
) -> RestoreResult:
    """Restore one item version into ``target`` (see the module docstring)."""
    plan = plan_restore(catalog, store, item_id, version=version, as_of=as_of)
    return write_plan(
        plan, target, restored_by=restored_by, overwrite=overwrite, durable=durable, clock=clock
    )


def write_plan(
    plan: RestorePlan,
    target: Path,
    *,
    restored_by: str,
    overwrite: bool = False,
    durable: bool = False,
    clock: Clock = _utcnow,
) -> RestoreResult:
    """Write a verified plan into ``target``/``plan.folder`` (staged, then renamed).

    ``durable`` fsyncs every file and directory before and after the rename. It is off by
    default: a restore is a copy that can be made again from the store, its manifest lets
    anyone check it, and a dozen fsyncs would cost more than everything else a restore does.
    """
    doc = manifest(plan, restored_by=restored_by, restored_at=clock())
    manifest_bytes = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    contents = [(f.path, f.data) for f in plan.files] + [(MANIFEST, manifest_bytes)]
    root = _target_root(target)
    folder = _check_name(plan.folder)
    final = root / folder
    if not final.resolve().is_relative_to(root):
        raise ArchiverError(f"{final} would lie outside {root}; nothing was written")
    with _opened_dir(root) as dir_fd:
        existing = _existing(dir_fd, folder, final, overwrite)
        staging = f".{folder}.partial-{secrets.token_hex(6)}"
        os.mkdir(staging, 0o755, dir_fd=dir_fd)
        try:
            with _opened_dir(staging, dir_fd) as stage_fd:
                for path, data in contents:
                    _write(stage_fd, path, data, durable=durable)
                if durable:
                    os.fsync(stage_fd)
            if existing:
                old = f".{folder}.replaced-{secrets.token_hex(6)}"
                os.rename(folder, old, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                os.rename(staging, folder, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                shutil.rmtree(old, dir_fd=dir_fd)
            else:
                os.rename(staging, folder, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            if durable:
                os.fsync(dir_fd)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                shutil.rmtree(staging, dir_fd=dir_fd)
            if isinstance(exc, OSError):
                raise ArchiverError(
                    f"could not write the restore of item {plan.item.id} into {root}: {exc}; "
                    "nothing was left there"
                ) from exc
            raise
    return RestoreResult(
        plan.item.id,
        plan.version.version_no,
        final,
        [dataclasses.replace(f, data=b"") for f in plan.files],  # the bytes are on disk now
        hashlib.sha256(manifest_bytes).hexdigest(),
        existing,
    )


def _target_root(target: Path) -> Path:
    """DIR, absolute and with its symbolic links resolved, created if missing."""
    try:
        root = Path(os.path.realpath(Path(target).expanduser()))
        root.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ArchiverError(f"cannot create the target directory {str(target)!r}: {exc}") from exc
    if not root.is_dir():
        raise ArchiverError(f"the target {root} is not a directory")
    return root


@contextlib.contextmanager
def _opened_dir(path: str | Path, dir_fd: int | None = None) -> Iterator[int]:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise ArchiverError(f"cannot open the directory {path}: {exc}") from exc
    try:
        yield fd
    finally:
        os.close(fd)


def _existing(dir_fd: int, folder: str, final: Path, overwrite: bool) -> bool:
    """Whether ``folder`` exists in DIR; refused unless ``overwrite`` and a real directory."""
    try:
        info = os.stat(folder, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not overwrite:
        raise ArchiverError(
            f"{final} already exists; nothing was written (restore elsewhere, or add "
            "--overwrite to replace it)"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise ArchiverError(
            f"{final} exists and is not a directory (a link or a file); it is not replaced "
            "even with --overwrite: remove it first"
        )
    return True


def _check_name(name: str) -> str:
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ArchiverError(f"refusing to write the unsafe file name {name!r}")
    return name


def _write(stage_fd: int, path: str, data: bytes, *, durable: bool) -> None:
    """Create ``path`` (``name`` or ``dir/name``, generated names only) under the stage."""
    *dirs, name = path.split("/")
    if len(dirs) > 1:
        raise ArchiverError(f"refusing to write the unsafe path {path!r}")
    parent = stage_fd
    opened: int | None = None
    try:
        if dirs:
            sub = _check_name(dirs[0])
            with contextlib.suppress(FileExistsError):
                os.mkdir(sub, 0o755, dir_fd=stage_fd)
            opened = os.open(
                sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stage_fd
            )
            parent = opened
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(_check_name(name), flags, 0o644, dir_fd=parent)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if opened is not None and durable:
            os.fsync(opened)
    finally:
        if opened is not None:
            os.close(opened)
