"""Fixity: re-read a stored file through the store and check it against the catalog.

One function, :func:`verify_file`, checks one stored file in one streaming pass: the bytes
are read once, in the store's chunks, and each chunk goes to the whole-file SHA-256 and, for
a WARC, to :class:`~archiver.warc_check.WarcChecker`, which inflates each record's gzip
member as it passes and recomputes its block and payload digests against the record's
header and the catalog's ``warc_records`` rows (loaded once per file). Parquet files and
control objects have no records: their whole-file SHA-256 and size are the check.

Every check is recorded as one :class:`~archiver.catalog.models.FixityEvent`, PREMIS's
"fixity check" event: the object (the file id; its key is in the detail), the algorithm
(``sha256``), the outcome (``pass``, ``fail`` or ``missing``), when, and the agent (the
person running ``archiver verify``, or ``archiver-daemon`` for the daemon's sampling, which
uses this same function). ``archiver verify`` checks the files it is asked about with
:func:`verify_files`.

A store that cannot be reached is not a fixity result: :class:`~archiver.errors.StoreError`
(other than "not found") propagates, and nothing is recorded for that file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from archiver.catalog.db import Catalog
from archiver.catalog.models import FixityEvent, StoredFile, WarcRecord
from archiver.errors import ArchiverError, IntegrityError, ObjectNotFoundError
from archiver.layout import ObjectKind
from archiver.logging import get_logger
from archiver.store.base import Store
from archiver.warc_check import ExpectedRecord, RecordProblem, WarcCheck, WarcChecker

log = get_logger(__name__)

DAEMON_ACTOR = "archiver-daemon"
#: The message digest algorithm of every check (PREMIS ``messageDigestAlgorithm``).
ALGORITHM = "sha256"

PASS = "pass"  # noqa: S105 - an outcome, not a password
FAIL = "fail"
MISSING = "missing"

#: Called with the number of bytes just read, for progress and throughput displays.
Progress = Callable[[int], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FixityResult:
    """The outcome of checking one stored file.

    For a failure, ``record_id``/``offset``/``problem`` name the first bad record of a WARC
    (``record_id`` None when the damage is not inside a record) and ``problem`` says what
    did not match; ``problems`` counts everything found wrong with the file.
    """

    file_id: str
    key: str
    outcome: str  # "pass", "fail", "missing"
    detail: str | None
    kind: str = ""
    size: int = 0  # bytes read from the store
    sha256: str | None = None  # of the bytes read (None when the file is missing)
    records: int = 0  # WARC records read and checked
    orphans: tuple[str, ...] = ()  # records in the file the catalog does not know
    record_id: str | None = None
    offset: int | None = None
    problem: str | None = None
    problems: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome == PASS

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``archiver verify --json``."""
        return {
            "file_id": self.file_id,
            "key": self.key,
            "kind": self.kind,
            "outcome": self.outcome,
            "bytes": self.size,
            "sha256": self.sha256,
            "records": self.records,
            "orphans": list(self.orphans),
            "first_bad_record": (
                None
                if self.problem is None
                else {"record_id": self.record_id, "offset": self.offset, "problem": self.problem}
            ),
            "problems": self.problems,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class _Target:
    """What the catalog says about one stored file, read before the store is touched."""

    file_id: str
    key: str
    kind: str
    sha256: str
    size: int
    records: tuple[ExpectedRecord, ...]


def _load(catalog: Catalog, file_id: str) -> _Target:
    with catalog.reader() as s:
        row = s.get(StoredFile, file_id)
        if row is None:
            raise ArchiverError(f"no stored file {file_id!r} in the catalog")
        records: tuple[ExpectedRecord, ...] = ()
        if row.kind == ObjectKind.WARC.value:
            # One query per file, never one per record.
            records = tuple(
                ExpectedRecord(
                    r.record_id, r.offset, r.length, r.warc_type, r.block_digest, r.payload_digest
                )
                for r in s.execute(
                    select(
                        WarcRecord.record_id,
                        WarcRecord.offset,
                        WarcRecord.length,
                        WarcRecord.warc_type,
                        WarcRecord.block_digest,
                        WarcRecord.payload_digest,
                    ).where(WarcRecord.file_id == file_id)
                )
            )
        return _Target(row.id, row.key, row.kind, row.sha256, row.size, records)


def _check(store: Store, target: _Target, progress: Progress | None) -> FixityResult:
    """Read the file once: whole-file SHA-256 and size, and every record of a WARC.

    For a WARC the whole-file SHA-256 of each chunk runs on a second thread while the
    checker inflates and digests the same chunk (hashlib and zlib release the GIL), so one
    large file, such as a video's, uses two cores; chunks are still hashed in order.
    """
    whole = hashlib.sha256()
    size = 0
    checker = WarcChecker(target.records) if target.kind == ObjectKind.WARC.value else None
    hashing: Future[None] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fixity-sha256") as helper:
            for chunk in store.open(target.key):
                if hashing is not None:
                    hashing.result()
                size += len(chunk)
                if checker is None:
                    whole.update(chunk)
                else:
                    hashing = helper.submit(whole.update, chunk)
                    checker.feed(chunk)
                if progress is not None:
                    progress(len(chunk))
            if hashing is not None:
                hashing.result()
    except ObjectNotFoundError:
        detail = f"{target.key}: not found in the store {store.describe()}"
        return FixityResult(target.file_id, target.key, MISSING, detail, target.kind)
    except IntegrityError as exc:  # a backend that checks what it reads found a mismatch
        return FixityResult(
            target.file_id,
            target.key,
            FAIL,
            f"{target.key}: {exc}",
            target.kind,
            size,
            problem=str(exc),
            problems=1,
        )
    return _judge(target, whole.hexdigest(), size, checker.finish() if checker else None)


def _judge(target: _Target, sha256: str, size: int, check: WarcCheck | None) -> FixityResult:
    file_problems = []
    if not hmac.compare_digest(sha256, target.sha256):
        file_problems.append(f"sha256 {sha256}, the catalog records {target.sha256}")
    if size != target.size:
        file_problems.append(f"{size} bytes, the catalog records {target.size}")
    records = check.records if check is not None else 0
    orphans = check.orphans if check is not None else ()
    bad: list[RecordProblem] = list(check.problems) if check is not None else []
    if file_problems and not bad and check is not None:
        # Every record still checks, so the changed bytes are ones inflating ignores (gzip
        # header fields, padding bits): name the member whose header stands out, if one does.
        bad = list(check.odd_gzip_headers)
        if not bad:
            file_problems.append(
                "every record still matches its digests: the change is in the gzip framing "
                "and alters no record's bytes"
            )
    if not file_problems and not bad:
        detail = (
            f"{target.key}: sha256 {sha256} and {size} bytes as catalogued"
            + (f"; {records} WARC records' block and payload digests match" if check else "")
            + _orphan_note(orphans)
        )
        return FixityResult(
            target.file_id, target.key, PASS, detail, target.kind, size, sha256, records, orphans
        )
    first = bad[0] if bad else None
    found = ([_describe(first)] if first is not None else []) + file_problems
    if len(bad) > 1:
        found.append(f"{len(bad) - 1} more damaged record(s)")
    return FixityResult(
        target.file_id,
        target.key,
        FAIL,
        f"{target.key}: " + "; ".join(found) + _orphan_note(orphans),
        target.kind,
        size,
        sha256,
        records,
        orphans,
        record_id=first.record_id if first else None,
        offset=first.offset if first else None,
        problem=first.problem if first else "; ".join(file_problems),
        problems=len(bad) + len(file_problems),
    )


def _describe(p: RecordProblem) -> str:
    where = f"record {p.record_id} at offset {p.offset}" if p.record_id else f"offset {p.offset}"
    return f"{where}: {p.problem}"


def _orphan_note(orphans: Sequence[str]) -> str:
    if not orphans:
        return ""
    return f"; {len(orphans)} record(s) the catalog does not know (orphans, not a failure)"


def _record(catalog: Catalog, result: FixityResult, actor: str, at: datetime) -> None:
    with catalog.session() as s:
        s.add(
            FixityEvent(
                file_id=result.file_id,
                checked_at=at,
                outcome=result.outcome,
                detail=result.detail,
                actor=actor,
                algorithm=ALGORITHM,
            )
        )


def verify_file(
    catalog: Catalog,
    store: Store,
    file_id: str,
    *,
    actor: str = DAEMON_ACTOR,
    clock: Callable[[], datetime] = _utcnow,
    progress: Progress | None = None,
) -> FixityResult:
    """Check one stored file in one streaming pass and record a fixity event.

    Raises ``ArchiverError`` for a file id the catalog does not know, and lets
    ``StoreError`` (other than not-found) through without recording anything.
    """
    target = _load(catalog, file_id)
    result = _check(store, target, progress)
    _record(catalog, result, actor, clock())
    if result.ok:
        log.debug("fixity pass", file_id=file_id, key=target.key, records=result.records)
    else:
        log.error(
            "fixity check failed",
            file_id=file_id,
            key=target.key,
            outcome=result.outcome,
            detail=result.detail,
        )
    return result


def verify_files(
    catalog: Catalog,
    store: Store,
    file_ids: Iterable[str],
    *,
    actor: str = DAEMON_ACTOR,
    clock: Callable[[], datetime] = _utcnow,
    progress: Progress | None = None,
    workers: int = 1,
) -> Iterator[FixityResult]:
    """Check each file with :func:`verify_file`, ``workers`` at a time; results as they end.

    zlib and hashlib release the GIL on large buffers, so threads use several cores. A
    ``StoreError`` stops the run: files not yet started are not checked, and it propagates
    once the files being checked have finished (their events are recorded).
    """
    ids = iter(file_ids)
    if workers <= 1:
        for file_id in ids:
            yield verify_file(catalog, store, file_id, actor=actor, clock=clock, progress=progress)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fixity") as pool:
        running: set[Future[FixityResult]] = set()

        def submit() -> bool:
            file_id = next(ids, None)
            if file_id is None:
                return False
            running.add(
                pool.submit(
                    verify_file,
                    catalog,
                    store,
                    file_id,
                    actor=actor,
                    clock=clock,
                    progress=progress,
                )
            )
            return True

        while len(running) < workers and submit():
            pass
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.discard(future)
                    yield future.result()
                    submit()
        finally:
            wait(running)


def sample(catalog: Catalog, count: int) -> list[str]:
    """Ids of up to ``count`` stored files picked at random."""
    if count <= 0:
        return []
    with catalog.reader() as s:
        return list(
            s.scalars(
                select(StoredFile.id)
                .where(StoredFile.state == "stored")
                .order_by(func.random())
                .limit(count)
            )
        )


def check_sample(
    catalog: Catalog,
    store: Store,
    count: int,
    *,
    actor: str = DAEMON_ACTOR,
    clock: Callable[[], datetime] = _utcnow,
) -> list[FixityResult]:
    """Verify ``count`` random stored files; each check is recorded."""
    return [
        verify_file(catalog, store, file_id, actor=actor, clock=clock)
        for file_id in sample(catalog, count)
    ]
