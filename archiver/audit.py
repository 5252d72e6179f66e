"""The hash-chained audit log.

Each entry's hash is ``sha256(prev_hash ‖ canonical(entry))``, where ``canonical`` is the
entry as compact, key-sorted JSON. Entries are appended one at a time under a lock, so the
chain never forks. Editing a row breaks the chain at that row; recomputing every later hash
to hide the edit is caught by the heads anchored in the store as write-once objects
(``control/audit/<seq>.json``), which the catalog cannot rewrite.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import AuditEntry
from archiver.errors import IntegrityError
from archiver.store.base import Store, put_bytes

GENESIS = "0" * 64
ANCHOR_PREFIX = "control/audit/"
_PG_AUDIT_LOCK = 0x61756469_74000000

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def canonical(
    seq: int, at: datetime, actor: str, action: str, subject: str | None, detail: Mapping[str, Any]
) -> bytes:
    """The bytes an entry's hash covers; stable across databases and Python versions."""
    body = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail": dict(detail),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, entry_bytes: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + entry_bytes).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """Recompute an entry's hash from its fields and its recorded predecessor."""
    data = canonical(entry.seq, entry.at, entry.actor, entry.action, entry.subject, entry.detail)
    return chain_hash(entry.prev_hash, data)


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    detail: Mapping[str, Any] | None = None,
    clock: Clock = _utcnow,
) -> AuditEntry:
    """Append one entry in the session's transaction, serialized against every other writer.

    SQLite transactions already hold the write lock from ``BEGIN IMMEDIATE``; PostgreSQL
    takes a transaction-scoped advisory lock. The primary key on ``seq`` is the last guard:
    a second writer that somehow read the same head fails instead of forking the chain.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_PG_AUDIT_LOCK)))
    last = head(session)
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    # Timestamps are cut to microseconds, the precision both databases keep.
    at = clock().astimezone(UTC)
    detail_dict = dict(detail or {})
    data = canonical(seq, at, actor, action, subject, detail_dict)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        detail=detail_dict,
        prev_hash=prev,
        hash=chain_hash(prev, data),
    )
    session.add(entry)
    session.flush()
    return entry


def head(session: Session) -> tuple[int, str] | None:
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def anchor_key(seq: int) -> str:
    return f"{ANCHOR_PREFIX}{seq:012d}.json"


def anchor_head(
    catalog: Catalog,
    store: Store,
    *,
    node: str,
    tmp_dir: Path | None = None,
    clock: Clock = _utcnow,
) -> str | None:
    """Write the chain head to the store as a write-once object; return its key.

    Nothing is written when the log is empty or this head is anchored already.
    """
    with catalog.session() as session:
        current = head(session)
    if current is None:
        return None
    seq, digest = current
    key = anchor_key(seq)
    if store.exists(key):
        return key
    body = json.dumps(
        {"seq": seq, "hash": digest, "anchored_at": clock().isoformat(), "node": node},
        sort_keys=True,
    ).encode()
    put_bytes(store, key, body, tmp_dir=tmp_dir)
    return key


@dataclass(frozen=True, slots=True)
class Anchor:
    key: str
    seq: int
    hash: str


def read_anchors(store: Store) -> list[Anchor]:
    anchors = []
    for info in store.list(ANCHOR_PREFIX):
        try:
            data = json.loads(store.get(info.key))
            anchors.append(Anchor(info.key, int(data["seq"]), str(data["hash"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"audit anchor {info.key} is unreadable ({exc})") from exc
    return sorted(anchors, key=lambda a: a.seq)


@dataclass(slots=True)
class AuditReport:
    """The outcome of walking the chain; ``first_break`` is None when it is intact."""

    entries: int = 0
    anchors: int = 0
    first_break: int | None = None
    problem: str | None = None
    problems: list[str] = field(default_factory=list)
    #: When the log begins with a ``catalog.rebuild`` entry continuing an anchored head:
    #: that head's seq. Entries up to it were lost with the earlier catalog; only their
    #: anchored heads remain, in the store.
    rebuilt_after: int | None = None

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def _fail(self, seq: int, message: str) -> None:
        self.problems.append(message)
        if self.first_break is None or seq < self.first_break:
            self.first_break, self.problem = seq, message


def _rebuild_start(first: AuditEntry, anchors: list[Anchor], report: AuditReport) -> Anchor | None:
    """The anchored head a rebuilt log's first entry continues, if that is what it is.

    ``archiver catalog rebuild`` writes into an empty catalog a first entry
    ``catalog.rebuild`` whose ``prev_hash`` is the latest head anchored in the store and
    whose ``seq`` follows it. That is accepted only when an anchor in the store holds that
    very head: a log cut short and restarted by hand has no such anchor behind it.
    """
    if first.seq == 1 or first.action != "catalog.rebuild":
        return None
    claimed = (first.detail or {}).get("continues") or {}
    for anchor in anchors:
        if (
            anchor.seq == first.seq - 1
            and claimed.get("seq") == anchor.seq
            and hmac.compare_digest(str(claimed.get("hash", "")), anchor.hash)
            and hmac.compare_digest(first.prev_hash, anchor.hash)
        ):
            return anchor
    report._fail(
        first.seq,
        f"the log begins at entry {first.seq} with a catalog rebuild, but no head anchored in "
        f"the store is the entry {first.seq - 1} it claims to continue",
    )
    return None


def verify(catalog: Catalog, store: Store | None, *, batch: int = 5000) -> AuditReport:
    """Walk the whole chain and check it against the anchored heads; never modifies anything."""
    report = AuditReport()
    hashes_at_anchor: dict[int, str] = {}
    anchors = read_anchors(store) if store is not None else []
    wanted = {a.seq for a in anchors}
    expected_seq, prev = 1, GENESIS
    with catalog.reader() as session:
        first = session.scalars(select(AuditEntry).order_by(AuditEntry.seq).limit(1)).first()
        continued = _rebuild_start(first, anchors, report) if first is not None else None
        if continued is not None:
            expected_seq, prev = continued.seq + 1, continued.hash
            hashes_at_anchor[continued.seq] = continued.hash
            report.rebuilt_after = continued.seq
        last_seq = 0
        while True:
            rows = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.seq > last_seq)
                .order_by(AuditEntry.seq)
                .limit(batch)
            ).all()
            if not rows:
                break
            for entry in rows:
                report.entries += 1
                if entry.seq != expected_seq:
                    report._fail(
                        expected_seq, f"entry {expected_seq} is missing (next is {entry.seq})"
                    )
                if not hmac.compare_digest(entry.prev_hash, prev):
                    report._fail(
                        entry.seq, f"entry {entry.seq} does not follow entry {entry.seq - 1}"
                    )
                if not hmac.compare_digest(entry_hash(entry), entry.hash):
                    report._fail(
                        entry.seq,
                        f"entry {entry.seq} was altered: its hash does not match its content",
                    )
                if entry.seq in wanted:
                    hashes_at_anchor[entry.seq] = entry.hash
                prev, expected_seq, last_seq = entry.hash, entry.seq + 1, entry.seq
            session.expunge_all()
    previous_anchor = 0
    for anchor in anchors:
        report.anchors += 1
        if report.rebuilt_after is not None and anchor.seq < report.rebuilt_after:
            previous_anchor = anchor.seq  # its entries were lost with the earlier catalog
            continue
        found = hashes_at_anchor.get(anchor.seq)
        if found is None:
            report._fail(
                anchor.seq, f"entry {anchor.seq}, anchored in {anchor.key}, is missing from the log"
            )
        elif not hmac.compare_digest(found, anchor.hash):
            # A recomputed chain is self-consistent, so the anchor is the first place the
            # rewrite shows; the edit itself lies after the previous anchor that still agrees.
            report._fail(
                previous_anchor + 1,
                f"entries {previous_anchor + 1}..{anchor.seq} were rewritten: entry {anchor.seq} "
                f"disagrees with the head anchored in {anchor.key}",
            )
        else:
            previous_anchor = anchor.seq
    return report
