"""Fixity: re-read a stored file through the store and compare it with the catalog.

Every check is recorded as a :class:`~archiver.catalog.models.FixityEvent` row (``pass``,
``fail`` or ``missing``) with who checked. The daemon samples a few random files every
``[daemon] fixity_every``; ``archiver verify`` checks the files it is asked about with the
same :func:`verify_file`.

A store that cannot be reached is not a fixity result: :class:`~archiver.errors.StoreError`
(other than "not found") propagates, and nothing is recorded for that file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from archiver.catalog.db import Catalog
from archiver.catalog.models import FixityEvent, StoredFile
from archiver.errors import ArchiverError, IntegrityError, ObjectNotFoundError
from archiver.logging import get_logger
from archiver.store.base import Store

log = get_logger(__name__)

DAEMON_ACTOR = "archiver-daemon"

PASS = "pass"  # noqa: S105 - an outcome, not a password
FAIL = "fail"
MISSING = "missing"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FixityResult:
    """The outcome of checking one stored file."""

    file_id: str
    key: str
    outcome: str  # "pass", "fail", "missing"
    detail: str | None

    @property
    def ok(self) -> bool:
        return self.outcome == PASS


def hash_object(store: Store, key: str) -> tuple[str, int]:
    """The sha256 (hex) and size of the object's bytes, streamed from the store."""
    digest = hashlib.sha256()
    size = 0
    for chunk in store.open(key):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _compare(store: Store, row: StoredFile) -> tuple[str, str | None]:
    try:
        sha256, size = hash_object(store, row.key)
    except ObjectNotFoundError as exc:
        return MISSING, str(exc)
    except IntegrityError as exc:
        return FAIL, str(exc)
    problems = []
    if not hmac.compare_digest(sha256, row.sha256):
        problems.append(f"sha256 {sha256}, the catalog records {row.sha256}")
    if size != row.size:
        problems.append(f"{size} bytes, the catalog records {row.size}")
    if problems:
        return FAIL, f"{row.key}: " + "; ".join(problems)
    return PASS, None


def verify_file(
    catalog: Catalog,
    store: Store,
    file_id: str,
    *,
    actor: str = DAEMON_ACTOR,
    clock: Callable[[], datetime] = _utcnow,
) -> FixityResult:
    """Re-hash one stored file through the store, compare, and record a fixity event."""
    with catalog.reader() as s:
        row = s.get(StoredFile, file_id)
        if row is None:
            raise ArchiverError(f"no stored file {file_id!r} in the catalog")
        s.expunge(row)
    outcome, detail = _compare(store, row)
    with catalog.session() as s:
        s.add(
            FixityEvent(
                file_id=file_id, checked_at=clock(), outcome=outcome, detail=detail, actor=actor
            )
        )
    result = FixityResult(file_id, row.key, outcome, detail)
    if result.ok:
        log.info("fixity pass", file_id=file_id, key=row.key)
    else:
        log.error(
            "fixity check failed", file_id=file_id, key=row.key, outcome=outcome, detail=detail
        )
    return result


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
