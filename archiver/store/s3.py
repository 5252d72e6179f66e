"""The S3 store backend: write-once objects in a bucket with versioning and Object Lock.

Layout: the object stored under ``key`` is ``s3://<bucket>/<prefix>/<key>``; its sha256 (hex)
is the user metadata ``x-amz-meta-sha256`` and S3 also verifies a SHA-256 checksum of the
bytes on upload (``ChecksumAlgorithm=SHA256``). Retention maps onto Object Lock: a
``retain_until`` becomes ``ObjectLockMode`` (the configured GOVERNANCE or COMPLIANCE) with
``ObjectLockRetainUntilDate``; a legal hold is an Object Lock legal hold. The bucket must have
versioning and Object Lock enabled; :meth:`S3Store.check` says so at start-up.

Retention and holds are checked here before every change (so the rules hold even against an
S3-compatible server that does not enforce Object Lock), and S3's own refusal is reported as
:class:`~archiver.errors.RetentionError` too. ``delete`` removes the current *version* (by its
VersionId), not merely hides it behind a delete marker, so disposition really destroys.

Writes are verified by reading the object back: size, the recorded sha256, and a streaming
hash of the stored bytes. A read-back that disagrees is repeated before it condemns the object
(it may have been damaged on the way, not in the bucket); a condemned version is removed, or,
when Object Lock forbids that, hidden behind a delete marker so the key can be stored again.
Large files are uploaded in parts read one at a time from the file, so memory stays bounded by
the part size. Throttling, 5xx answers and broken connections are retried by botocore; a
retried upload that S3 had in fact stored (its answer was lost) is recognised as our own.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import hmac
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from archiver.errors import (
    IntegrityError,
    ObjectNotFoundError,
    RetentionError,
    StoreError,
    UnsafeKeyError,
)
from archiver.logging import get_logger
from archiver.store._meta import SHA256_HEX, aware
from archiver.store.base import ObjectInfo, Store
from archiver.store.keys import validate_key

if TYPE_CHECKING:
    from archiver.config import S3StoreSettings

log = get_logger(__name__)

MiB = 1024 * 1024
#: Files at least this large are uploaded in parts.
MULTIPART_THRESHOLD = 64 * MiB
#: The size of each part (S3 requires at least 5 MiB for every part but the last).
PART_SIZE = 16 * MiB
#: Ranged GETs used to stream and to verify objects.
READ_CHUNK = 8 * MiB
#: How many times a read-back that disagrees with the file is repeated before it condemns it.
VERIFY_READS = 2
METADATA_SHA256 = "sha256"

LockMode = Literal["GOVERNANCE", "COMPLIANCE"]

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
_DENIED = {"AccessDenied", "403", "Forbidden"}
#: Throttling answers (botocore retries them, and so does the caller, later).
_BUSY = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "UnrecognizedClientException",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class S3Store:
    """A :class:`~archiver.store.base.Store` on an S3 bucket with Object Lock.

    Credentials are the given key pair, or boto3's default chain (environment, profile,
    instance role) when none is given. ``now`` is the clock the client-side retention guard
    uses. Each request is tried up to ``max_attempts`` times (botocore's standard retry
    mode) on throttling, 5xx answers and broken connections. ``client`` replaces the boto3
    client (tests).
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        object_lock_mode: LockMode = "GOVERNANCE",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        now: Callable[[], datetime] = _utc_now,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        client: Any = None,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError(f"S3 parts must be at least 5 MiB, not {part_size} bytes")
        if multipart_threshold < part_size:
            raise ValueError("the multipart threshold must be at least one part")
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._endpoint = endpoint_url
        self._mode: LockMode = object_lock_mode
        self._now = now
        self._threshold = multipart_threshold
        self._part_size = part_size
        self._attempts = max(1, max_attempts)
        if client is None:
            config = BotoConfig(
                # botocore's "max_attempts" counts retries only; "total_max_attempts" counts
                # every attempt, which is what our max_attempts means (1: never retry).
                # Standard mode retries throttling (503 SlowDown), 5xx answers and broken
                # connections, rewinding a file body before sending it again.
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # Checksums are asked for explicitly (SHA256) where they matter.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.session.Session().client(
                "s3",
                region_name=region,
                endpoint_url=endpoint_url,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        self._s3 = client

    @classmethod
    def from_settings(
        cls, settings: S3StoreSettings, *, service_credentials: Path | None = None
    ) -> S3Store:
        """Build the store from ``[store]`` settings, resolving the key pair if one is set."""
        key_id = secret = None
        if settings.access_key_id is not None and settings.secret_access_key is not None:
            key_id = settings.access_key_id.resolve(service_credentials=service_credentials)
            secret = settings.secret_access_key.resolve(service_credentials=service_credentials)
        return cls(
            settings.bucket,
            prefix=settings.prefix,
            region=settings.region,
            endpoint_url=settings.endpoint_url,
            object_lock_mode=settings.object_lock_mode,
            access_key_id=key_id,
            secret_access_key=secret,
        )

    def describe(self) -> str:
        """``s3://bucket/prefix`` (and the endpoint when it is not AWS's); never credentials."""
        where = f"s3://{self._bucket}/{self._prefix + '/' if self._prefix else ''}"
        return f"{where} at {self._endpoint}" if self._endpoint else where

    # -- start-up --------------------------------------------------------------------------

    def check(self, *, object_lock: bool = True) -> None:
        """Check the bucket is reachable, versioned and (by default) has Object Lock enabled.

        Raises ``StoreError`` with one line saying what to fix.
        """
        where = self.describe()
        try:
            self._s3.head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND or code == "NoSuchBucket":
                raise StoreError(
                    f"the S3 bucket {self._bucket!r} does not exist ({where}); create it with "
                    "Object Lock enabled, or fix [store] bucket"
                ) from None
            raise self._error(exc, "check the bucket") from None
        except BotoCoreError as exc:
            raise self._error(exc, "check the bucket") from None
        try:
            versioning = self._s3.get_bucket_versioning(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "read the bucket's versioning") from None
        if versioning.get("Status") != "Enabled":
            raise StoreError(
                f"versioning is not enabled on the S3 bucket {self._bucket!r} ({where}); "
                "the archive needs a versioned bucket with Object Lock"
            )
        if not object_lock:
            return
        try:
            lock = self._s3.get_object_lock_configuration(Bucket=self._bucket)
        except ClientError as exc:
            if _code(exc) == "ObjectLockConfigurationNotFoundError":
                lock = {}
            else:
                raise self._error(exc, "read the bucket's Object Lock configuration") from None
        except BotoCoreError as exc:
            raise self._error(exc, "read the bucket's Object Lock configuration") from None
        if lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise StoreError(
                f"Object Lock is not enabled on the S3 bucket {self._bucket!r} ({where}); "
                "retention cannot be enforced: use a bucket created with Object Lock enabled"
            )

    # -- writing ---------------------------------------------------------------------------

    def put(
        self, key: str, source: Path, sha256: str, *, retain_until: datetime | None = None
    ) -> ObjectInfo:
        """Upload ``source`` under ``key`` (write-once), then read it back to verify it."""
        name = self._name(key)
        expected = _check_sha256(sha256)
        retain = (
            None if retain_until is None else _whole_second(aware(retain_until, "retain_until"))
        )
        if self.exists(key):
            raise _exists_error(key)
        try:
            src = Path(source).open("rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise StoreError(f"cannot read {source} to store it: {exc.strerror}") from exc
        extra: dict[str, Any] = {"Metadata": {METADATA_SHA256: expected}}
        if retain is not None:
            extra["ObjectLockMode"] = self._mode
            extra["ObjectLockRetainUntilDate"] = retain
        with src:
            size = os.fstat(src.fileno()).st_size
            if size >= self._threshold:
                self._put_multipart(key, name, src, expected, extra, source)
            else:
                self._put_single(key, name, src, expected, extra, source)
        return self._verify(key, size, expected)

    def _put_single(
        self,
        key: str,
        name: str,
        src: BinaryIO,
        expected: str,
        extra: dict[str, Any],
        source: Path,
    ) -> None:
        digest = hashlib.sha256()
        while chunk := src.read(MiB):
            digest.update(chunk)
        _compare(digest.hexdigest(), expected, source, key)
        src.seek(0)
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=name,
                Body=src,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(digest.digest()).decode("ascii"),
                IfNoneMatch="*",
                **extra,
            )
        except ClientError as exc:
            if self._own_write_refused(exc, key, expected):
                return
            raise self._put_error(exc, key, source) from None
        except BotoCoreError as exc:
            raise self._error(exc, f"store {key!r}") from None

    def _own_write_refused(self, exc: ClientError, key: str, expected: str) -> bool:
        """Whether If-None-Match refused a *retry* because S3 already holds what we sent.

        When S3 stored an upload but its answer was lost (a reset, a read timeout), botocore
        sends it again and ``If-None-Match: *`` refuses the repeat: the object in the way is
        our own first attempt, not another writer's. One carrying our sha256 is taken as
        ours; ``put``'s read-back then checks its size and bytes as for any upload.
        """
        retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if _code(exc) != "PreconditionFailed" or not retried:
            return False
        try:
            info = self.head(key)
        except StoreError:
            return False
        return hmac.compare_digest(info.sha256, expected)

    def _put_multipart(
        self,
        key: str,
        name: str,
        src: BinaryIO,
        expected: str,
        extra: dict[str, Any],
        source: Path,
    ) -> None:
        try:
            upload = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=name, ChecksumAlgorithm="SHA256", **extra
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"start uploading {key!r}") from None
        upload_id = upload["UploadId"]
        try:
            digest = hashlib.sha256()
            parts: builtins.list[dict[str, Any]] = []
            number = 0
            while data := src.read(self._part_size):
                number += 1
                digest.update(data)
                part_sum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
                answer = self._s3.upload_part(
                    Bucket=self._bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=part_sum,
                )
                parts.append(
                    {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": part_sum}
                )
            _compare(digest.hexdigest(), expected, source, key)
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException as exc:
            if isinstance(exc, ClientError) and self._own_write_refused(exc, key, expected):
                return  # completed on an attempt whose answer was lost
            # An incomplete upload is invisible; if aborting fails, a lifecycle rule reaps it.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=name, UploadId=upload_id)
            if isinstance(exc, ClientError):
                raise self._put_error(exc, key, source) from None
            if isinstance(exc, BotoCoreError):
                raise self._error(exc, f"store {key!r}") from None
            raise

    def _verify(self, key: str, size: int, expected: str) -> ObjectInfo:
        """Read the stored object back; if it lastingly disagrees, remove (or hide) it and raise."""
        info = self.head(key)
        problem = None
        if info.size != size:
            problem = f"{info.size} bytes were stored but the file has {size}"
        elif not hmac.compare_digest(info.sha256, expected):
            problem = f"its recorded sha256 is {info.sha256!r}, not {expected}"
        else:
            # A read-back can be damaged on its way to us (a flaky link, proxy or NIC) while
            # the stored bytes are right, and ranged GETs carry no checksum to tell. So a
            # disagreeing read is repeated: if a read matches the sha256 the stored bytes are
            # the file's (a SHA-256 match is no accident); only reads that keep disagreeing
            # condemn the object. Removing a good object for a network glitch would cost a
            # re-upload, or, under a lock, leave a version nobody can delete.
            for attempt in range(1, VERIFY_READS + 1):
                problem = self._read_back(key, info, size, expected)
                if problem is None:
                    if attempt > 1:
                        log.warning(
                            "S3 read-back disagreed, then matched",
                            key=key,
                            store=self.describe(),
                            reads=attempt,
                        )
                    break
        if problem is None:
            return info
        outcome = self._discard(key, info.version_id)
        raise IntegrityError(
            f"the object stored under {key!r} in {self.describe()} does not match the file "
            f"({problem}); {outcome}"
        )

    def _read_back(self, key: str, info: ObjectInfo, size: int, expected: str) -> str | None:
        """Stream the stored version and hash it: what is wrong with it, or None."""
        digest = hashlib.sha256()
        stored = 0
        for chunk in self._chunks(key, info.version_id, info.size):
            digest.update(chunk)
            stored += len(chunk)
        actual = digest.hexdigest()
        if stored != size or not hmac.compare_digest(actual, expected):
            return f"reading it back gave sha256 {actual} ({stored} bytes)"
        return None

    def _discard(self, key: str, version_id: str | None) -> str:
        """Get rid of a just-written bad version; say what was done, for the error message.

        The version is deleted, bypassing governance retention if the credentials may. If
        Object Lock still forbids that (COMPLIANCE), a delete marker hides it: the key then
        reads as absent, so a caller that takes an existing object with the right metadata
        as already stored (the spool after a crash) uploads it again instead of trusting a
        version that failed its check.
        """
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": self._name(key)}
        if version_id:
            args["VersionId"] = version_id
        for bypass in (False, True):
            try:
                if bypass:
                    self._s3.delete_object(**args, BypassGovernanceRetention=True)
                else:
                    self._s3.delete_object(**args)
                return "it was removed"
            except (ClientError, BotoCoreError):
                continue
        if version_id:
            try:
                self._s3.delete_object(Bucket=self._bucket, Key=self._name(key))
            except (ClientError, BotoCoreError):
                pass
            else:
                return (
                    f"Object Lock forbids removing it, so version {version_id} was hidden behind "
                    "a delete marker (the key can be stored again); dispose of that version "
                    "when its retention ends"
                )
        return (
            "it could not be removed or hidden (Object Lock or permissions): it must be "
            "disposed of by hand before the key is stored again"
        )

    def set_retention(self, key: str, retain_until: datetime) -> ObjectInfo:
        """Extend the retention of ``key``; shortening it raises ``RetentionError``."""
        new = _whole_second(aware(retain_until, "retain_until"))
        info = self.head(key)
        if info.retain_until is not None and new < info.retain_until:
            raise RetentionError(
                f"{key!r} is retained until {info.retain_until.isoformat()}; retention "
                f"can be extended but never shortened (asked for {new.isoformat()})"
            )
        mode = self._lock_mode(key, info.version_id) or self._mode
        try:
            self._s3.put_object_retention(
                Bucket=self._bucket,
                Key=self._name(key),
                **_version(info.version_id),
                Retention={"Mode": mode, "RetainUntilDate": new},
            )
        except ClientError as exc:
            if _code(exc) in _DENIED:
                raise RetentionError(
                    f"S3 refused to change the retention of {key!r} to {new.isoformat()}: "
                    "Object Lock forbids shortening it, or the credentials lack "
                    "s3:PutObjectRetention"
                ) from None
            raise self._error(exc, f"set the retention of {key!r}", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, f"set the retention of {key!r}", key) from None
        return self.head(key)

    def set_legal_hold(self, key: str, on: bool) -> ObjectInfo:
        """Place (``on=True``) or release a legal hold on ``key``."""
        info = self.head(key)
        try:
            self._s3.put_object_legal_hold(
                Bucket=self._bucket,
                Key=self._name(key),
                **_version(info.version_id),
                LegalHold={"Status": "ON" if on else "OFF"},
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"set the legal hold of {key!r}", key) from None
        return self.head(key)

    def delete(self, key: str, *, bypass_governance: bool = False) -> None:
        """Delete the current version of ``key``; refused while it is retained or held.

        ``bypass_governance``: a GOVERNANCE-mode retention is bypassed
        (``BypassGovernanceRetention``; the credentials need ``s3:BypassGovernanceRetention``);
        a COMPLIANCE-mode retention and a legal hold still refuse.
        """
        info = self.head(key)
        bypass = self._refuse_locked(info, bypass_governance)
        self._delete_version(key, info.version_id, bypass=bypass)

    def delete_all_versions(self, key: str, *, bypass_governance: bool = False) -> int:
        """Delete every version of ``key`` (none if any is retained or held); count deleted."""
        versions = self.list_versions(key)
        bypass = [self._refuse_locked(info, bypass_governance) for info in versions]
        for info, lift in zip(versions, bypass, strict=True):
            self._delete_version(key, info.version_id, bypass=lift)
        # Delete markers carry no data; remove them so the key leaves no trace.
        for marker in self._version_entries(key, "DeleteMarkers"):
            self._delete_version(key, marker)
        return len(versions)

    def _refuse_locked(self, info: ObjectInfo, bypass_governance: bool = False) -> bool:
        """Raise unless the version may be deleted; whether the delete must bypass governance."""
        now = aware(self._now(), "the store's clock")
        which = f"{info.key!r}" + (f" (version {info.version_id})" if info.version_id else "")
        if info.legal_hold:
            raise RetentionError(
                f"{which} is under a legal hold; it cannot be deleted until the hold is released"
            )
        if info.retain_until is not None and info.retain_until > now:
            mode = self._lock_mode(info.key, info.version_id)
            if bypass_governance and mode == "GOVERNANCE":
                return True
            raise RetentionError(
                f"{which} is retained until {info.retain_until.isoformat()} "
                f"(now {now.isoformat()}"
                + (f", {mode} mode" if mode else "")
                + "); it cannot be deleted before then"
            )
        return False

    def _delete_version(self, key: str, version_id: str | None, *, bypass: bool = False) -> None:
        extra: dict[str, Any] = {"BypassGovernanceRetention": True} if bypass else {}
        try:
            self._s3.delete_object(
                Bucket=self._bucket, Key=self._name(key), **_version(version_id), **extra
            )
        except ClientError as exc:
            if _code(exc) in _DENIED:
                raise RetentionError(
                    f"S3 refused to delete {key!r}: its Object Lock retention or legal hold is "
                    "still in force (or the credentials lack s3:DeleteObjectVersion)"
                ) from None
            raise self._error(exc, f"delete {key!r}", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, f"delete {key!r}", key) from None

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes of ``key`` from ``offset`` (to the end when None)."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"offset and length must not be negative ({offset}, {length})")
        name = self._name(key)
        if length == 0:
            self.head(key)
            return b""
        end = "" if length is None else str(offset + length - 1)
        try:
            return self._get_range(key, name, f"bytes={offset}-{end}", None)
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # offset at or past the end
                self.head(key)
                return b""
            raise self._error(exc, f"read {key!r}", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, f"read {key!r}", key) from None

    def open(self, key: str) -> Iterator[bytes]:
        """Stream ``key`` in ranged chunks; absence raises now, not on the first chunk."""
        info = self.head(key)
        return self._chunks(key, info.version_id, info.size)

    def head(self, key: str) -> ObjectInfo:
        """The object's size, sha256, retention and hold, as S3 reports them."""
        return self._head(key, None)

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        try:
            self._head(key, None)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        if prefix.startswith("."):
            raise UnsafeKeyError(
                f"cannot list {prefix!r}: keys starting with '.' are reserved for the store"
            )
        base = self._name_prefix()
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=base + prefix
        )
        try:
            names = [entry["Key"] for page in pages for entry in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"list {prefix!r}") from None
        for name in sorted(names):
            key = name[len(base) :]
            if not _valid(key):
                continue
            try:
                yield self.head(key)
            except ObjectNotFoundError:
                continue  # deleted while we were listing

    def list_versions(self, key: str) -> builtins.list[ObjectInfo]:
        """Every stored version of ``key`` (not delete markers), newest first."""
        return [self._head(key, vid) for vid in self._version_entries(key, "Versions")]

    # -- mechanics -------------------------------------------------------------------------

    def _name_prefix(self) -> str:
        return f"{self._prefix}/" if self._prefix else ""

    def _name(self, key: str) -> str:
        return self._name_prefix() + validate_key(key)

    def _version_entries(self, key: str, kind: str) -> builtins.list[str | None]:
        name = self._name(key)
        pages = self._s3.get_paginator("list_object_versions").paginate(
            Bucket=self._bucket, Prefix=name
        )
        found: builtins.list[tuple[datetime, str | None]] = []
        try:
            for page in pages:
                for entry in page.get(kind, []):
                    if entry["Key"] == name:
                        vid = entry.get("VersionId")
                        found.append((entry["LastModified"], None if vid == "null" else vid))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"list the versions of {key!r}", key) from None
        found.sort(key=lambda item: item[0], reverse=True)  # stable: S3's order among equals
        return [vid for _, vid in found]

    def _head(self, key: str, version_id: str | None) -> ObjectInfo:
        try:
            answer = self._s3.head_object(
                Bucket=self._bucket, Key=self._name(key), **_version(version_id)
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"read the metadata of {key!r}", key) from None
        sha256 = answer.get("Metadata", {}).get(METADATA_SHA256, "")
        if not SHA256_HEX.fullmatch(sha256):
            raise StoreError(
                f"{key!r} in {self.describe()} has no valid sha256 metadata; it was not "
                "written by the archiver, or its metadata was damaged"
            )
        retain = answer.get("ObjectLockRetainUntilDate")
        hold = answer.get("ObjectLockLegalHoldStatus")
        if hold is None:
            hold = self._legal_hold_status(key, answer.get("VersionId"))
        vid = answer.get("VersionId")
        modified = answer.get("LastModified")
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            sha256=sha256,
            retain_until=None if retain is None else aware(retain, "retain_until"),
            legal_hold=hold == "ON",
            version_id=None if vid in (None, "null") else vid,
            created=None if modified is None else aware(modified, "LastModified"),
        )

    def _legal_hold_status(self, key: str, version_id: str | None) -> str:
        try:
            answer = self._s3.get_object_legal_hold(
                Bucket=self._bucket, Key=self._name(key), **_version(version_id)
            )
        except ClientError as exc:
            if _code(exc) in {"NoSuchObjectLockConfiguration", "InvalidRequest"}:
                return "OFF"
            raise self._error(exc, f"read the legal hold of {key!r}", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, f"read the legal hold of {key!r}", key) from None
        status: str = answer.get("LegalHold", {}).get("Status", "OFF")
        return status

    def _lock_mode(self, key: str, version_id: str | None) -> str | None:
        # HEAD names the mode too (x-amz-object-lock-mode); some S3-compatible servers
        # answer GetObjectRetention with an error where HEAD works.
        try:
            head = self._s3.head_object(
                Bucket=self._bucket, Key=self._name(key), **_version(version_id)
            )
            if head.get("ObjectLockMode"):
                return str(head["ObjectLockMode"])
            answer = self._s3.get_object_retention(
                Bucket=self._bucket, Key=self._name(key), **_version(version_id)
            )
        except (ClientError, BotoCoreError):
            return None
        mode: str | None = answer.get("Retention", {}).get("Mode")
        return mode

    def _chunks(self, key: str, version_id: str | None, size: int) -> Iterator[bytes]:
        """The object's bytes in ranged GETs of ``READ_CHUNK`` bytes."""
        name = self._name(key)
        offset = 0
        while offset < size:
            end = min(offset + READ_CHUNK, size) - 1
            try:
                data = self._get_range(key, name, f"bytes={offset}-{end}", version_id)
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, f"read {key!r}", key) from None
            if not data:
                raise IntegrityError(f"{key!r} ended at byte {offset} but S3 reported {size} bytes")
            yield data
            offset += len(data)

    def _get_range(self, key: str, name: str, byte_range: str, version_id: str | None) -> bytes:
        """One ranged GET's bytes; a body that breaks off is fetched again.

        botocore retries a request that fails, but not a body that breaks off after the
        headers came (a reset, a read timeout, a short read): that is retried here, up to
        ``max_attempts`` times. The GET's own errors propagate to the caller.
        """
        for attempt in range(1, self._attempts + 1):
            answer = self._s3.get_object(
                Bucket=self._bucket, Key=name, Range=byte_range, **_version(version_id)
            )
            try:
                # closing(), not the body's own ``with``: that yields the raw urllib3 stream,
                # whose errors are not botocore's and which skips the Content-Length check.
                with contextlib.closing(answer["Body"]) as body:
                    data: bytes = body.read()
            except (BotoCoreError, OSError) as exc:
                if attempt == self._attempts:
                    raise StoreError(
                        f"reading {key!r} from {self.describe()} broke off {attempt} times in "
                        f"a row; the last time: {exc}"
                    ) from None
                continue
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    def _put_error(self, exc: ClientError, key: str, source: Path) -> StoreError | IntegrityError:
        code = _code(exc)
        if code in {"PreconditionFailed", "ConditionalRequestConflict"}:
            return _exists_error(key)
        if code in {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}:
            return IntegrityError(
                f"S3 received different bytes for {key!r} than {source} held when it was "
                "hashed (the file changed while being stored?); nothing was stored"
            )
        return self._error(exc, f"store {key!r}")

    def _error(self, exc: Exception, action: str, key: str | None = None) -> StoreError:
        """A secret-free ``StoreError`` (or ``ObjectNotFoundError``) saying what to check."""
        where = self.describe()
        if isinstance(exc, ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if key is not None and code in _NOT_FOUND:
                return ObjectNotFoundError(f"no object is stored under {key!r} in {where}")
            if code == "NoSuchBucket":
                return StoreError(
                    f"cannot {action}: the S3 bucket {self._bucket!r} does not exist ({where}); "
                    "check [store] bucket and endpoint_url"
                )
            if code in _CREDENTIALS:
                return StoreError(
                    f"cannot {action}: S3 rejected the credentials ({code}); check "
                    "[store] access_key_id/secret_access_key or the AWS credential chain"
                )
            if code in _DENIED:
                return StoreError(
                    f"cannot {action}: access denied by {where}; check the credentials "
                    "([store] access_key_id/secret_access_key or the AWS credential chain) "
                    "and that their policy allows this on the bucket"
                )
            if code in _BUSY or (isinstance(status, int) and status >= 500):
                attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
                return StoreError(
                    f"cannot {action} in {where}: S3 answered {code} (HTTP {status}) to all "
                    f"{attempts} attempts; S3 is throttling or unavailable, try again later"
                )
            return StoreError(f"cannot {action} in {where}: S3 answered {code} (HTTP {status})")
        if type(exc).__name__ == "NoCredentialsError":
            return StoreError(
                f"cannot {action}: no AWS credentials found; set [store] access_key_id and "
                "secret_access_key, or configure the default credential chain"
            )
        if type(exc).__name__ in {"EndpointConnectionError", "ConnectTimeoutError"}:
            return StoreError(
                f"cannot {action}: the S3 endpoint for {where} cannot be reached; check "
                "[store] endpoint_url/region and the network"
            )
        return StoreError(f"cannot {action} in {where}: {type(exc).__name__}: {exc}")


# -- helpers ---------------------------------------------------------------------------------


def _code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "") or str(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )
    return code


def _whole_second(moment: datetime) -> datetime:
    """``moment`` rounded up to a whole second: S3 keeps retain-until dates to the second,
    and rounding down would lock an object for less time than asked."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


def _check_sha256(value: str) -> str:
    digest = value.lower()
    if not SHA256_HEX.fullmatch(digest):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, not {value!r}")
    return digest


def _compare(actual: str, expected: str, source: Path, key: str) -> None:
    if not hmac.compare_digest(actual, expected):
        raise IntegrityError(
            f"{source} has sha256 {actual} but {expected} was recorded for it; "
            f"nothing was stored under {key!r}"
        )


def _valid(key: str) -> bool:
    try:
        validate_key(key)
    except UnsafeKeyError:
        return False
    return True


def _exists_error(key: str) -> StoreError:
    return StoreError(f"an object is already stored under {key!r}; stored objects are write-once")


if TYPE_CHECKING:
    # mypy proves here that S3Store satisfies the Store protocol.
    _conforms: type[Store] = S3Store
