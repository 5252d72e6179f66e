"""The rebuild, end to end: list the store, verify and read each account's files, write rows.

The schema is created first; then every row is written in one transaction, so a rebuild that
stops (a damaged file, a database error, Ctrl-C) leaves the target without a single row, and
it can simply be run again.

Then the control facts (holds, events, notices, reassignments, certificates of destruction)
are replayed in the order they were recorded (:mod:`archiver.rebuild.replay`). They are
read and checked before anything is written: a fact of a kind this archiver does not know
stops the rebuild at once (:class:`~archiver.errors.IntegrityError`), and a
certificate whose JSON document in the store does not have the SHA-256 its fact recorded is
damage, like a WARC that fails its digest.

What is *not* rebuilt, because it is operational state rather than a record: capture runs,
checkpoints, leases, heartbeats and fixity events (``run_id`` columns are empty), and the
audit entries themselves, which lived only in the catalog; the store keeps just the anchored
chain heads, which the rebuilt log's first entry (``catalog.rebuild``) names and continues.
An account's next run after a rebuild finds no checkpoint and no last full walk, so it walks
the whole account: the safe way to pick up again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import Hold, RetentionEvent, RetentionNotice
from archiver.config import AccountSettings
from archiver.control import Fact
from archiver.errors import IntegrityError
from archiver.logging import get_logger
from archiver.rebuild import bodies, replay, write
from archiver.rebuild import facts as facts_module
from archiver.rebuild.facts import Orphan
from archiver.rebuild.replay import ReplayReport
from archiver.rebuild.scan import (
    SIDECAR,
    Anchor,
    Damage,
    Listing,
    Reader,
    ScannedFacts,
    ScannedFile,
    ScannedWarc,
    StoredObject,
    list_store,
)
from archiver.search import index as search_index
from archiver.store import ensure_layout
from archiver.store.base import Store

log = get_logger(__name__)

#: ``progress(done, total, key)``: called after each file is read.
Progress = Callable[[int, int, str], None]
#: Tables whose ids the rebuild takes from the facts rather than from the database.
_FACT_IDS = (Hold.__tablename__, RetentionEvent.__tablename__, RetentionNotice.__tablename__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RebuildReport:
    """What a rebuild read, wrote, dropped and could not use."""

    warc_files: int = 0
    parquet_files: int = 0
    control_files: int = 0  # every control object: partition-level, facts, certificates
    fact_files: int = 0
    certificate_files: int = 0
    records: int = 0
    accounts: list[str] = field(default_factory=list)
    items: int = 0
    versions: int = 0
    media: int = 0
    orphans: list[Orphan] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    unknown_objects: list[str] = field(default_factory=list)
    other_metadata: int = 0
    audit_seq: int | None = None
    search_index: str = "not rebuilt"
    retention: ReplayReport = field(default_factory=ReplayReport)

    def summary(self) -> dict[str, Any]:
        """Counts and lists, small enough for an audit entry."""
        return {
            "files": {
                "warc": self.warc_files,
                "parquet": self.parquet_files,
                "control": self.control_files,
                "facts": self.fact_files,
                "certificates": self.certificate_files,
            },
            "records": self.records,
            "accounts": len(self.accounts),
            "items": self.items,
            "versions": self.versions,
            "media": self.media,
            "orphans_dropped": len(self.orphans),
            "damaged": [asdict(d) for d in self.damaged],
            "problems": len(self.problems),
            "anchors": len(self.anchors),
            "retention": self.retention.summary(),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "accounts": self.accounts,
            "orphans": [asdict(o) for o in self.orphans],
            "problems": self.problems,
            "anchors": [asdict(a) for a in self.anchors],
            "unknown_objects": self.unknown_objects,
            "other_metadata": self.other_metadata,
            "audit_seq": self.audit_seq,
            "search_index": self.search_index,
            "retention": asdict(self.retention),
        }


def rebuild(
    store: Store,
    target: Catalog,
    *,
    actor: str,
    accounts: Sequence[AccountSettings] = (),
    skip_damaged: bool = False,
    tmp_dir: Path | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> RebuildReport:
    """Recreate every catalog fact of ``store`` in the empty catalog ``target``.

    ``accounts`` (the configuration's) adds what the store does not hold: handles,
    departments, whether an account is enabled, and configured accounts with no records yet.
    A file that fails verification raises :class:`IntegrityError` naming every such file,
    after the whole store was read and with nothing written, unless ``skip_damaged``: then
    each is left out and listed in the report.
    """
    ensure_layout(store, create=False)
    write.require_empty(target)
    upgrade(target)
    listing = list_store(store)
    run = _Run(listing, Reader(store, tmp_dir), progress)
    report = run.report
    report.problems += _sidecar_problems(listing)
    # Read first: an unknown fact stops the rebuild before the long part begins.
    facts = run.facts()
    certificates = run.certificates(facts)
    configured = {a.id: a for a in accounts}
    report.accounts = sorted(set(listing.accounts()) | set(configured))
    now = clock()
    with target.session() as session:
        for account in report.accounts:
            run.account(session, account, configured.get(account), now)
        for f in (*run.fact_files, *certificates):
            write.write_file(session, f, now)
        if report.damaged and not skip_damaged:
            raise IntegrityError(_damage_message(report.damaged))
        replayer = replay.Replay(session, accounts=configured, now=now)
        for fact, body in facts:
            replayer.apply(fact, body)
        report.retention = replayer.finish()
        report.problems += report.retention.problems
        write.advance_sequences(session, _FACT_IDS)
        # The search index is derived from the rows just written; in the same transaction,
        # so the target is never left searchable for less than it holds.
        indexed = search_index.rebuild(session)
        report.search_index = f"rebuilt ({indexed} versions indexed)"
        entry = write.write_audit(
            session, actor=actor, anchors=report.anchors, detail=report.summary(), at=clock()
        )
        report.audit_seq = entry.seq
    return report


class _Run:
    """One rebuild's reading of the store, account by account, and what it found."""

    def __init__(self, listing: Listing, reader: Reader, progress: Progress | None) -> None:
        self.listing = listing
        self.reader = reader
        self.progress = progress
        self.report = RebuildReport(unknown_objects=listing.unknown)
        self.files = _by_account(listing)
        kinds = (listing.warcs, listing.parquet, listing.control, listing.facts)
        self.total = sum(len(k) for k in (*kinds, listing.certificates))
        self.done = 0
        self.fact_files: list[ScannedFile] = []
        for obj in listing.anchors:
            anchor = reader.anchor(obj)
            if isinstance(anchor, Damage):
                self.report.damaged.append(anchor)
            else:
                self.report.anchors.append(anchor)

    def _read(self, obj: StoredObject, how: Callable[..., Any]) -> Any:
        result = how(obj, self.listing.sidecars.get(obj.key))
        self.done += 1
        if isinstance(result, Damage):
            self.report.damaged.append(result)
            log.error("stored file fails verification", key=result.key, problem=result.problem)
        if self.progress is not None:
            self.progress(self.done, self.total, obj.key)
        return result

    def _files(self, account: str, kind: str, how: Callable[..., Any], want: type) -> list[Any]:
        read = (self._read(o, how) for o in self.files.get(account, {}).get(kind, []))
        return [r for r in read if isinstance(r, want)]

    def facts(self) -> list[tuple[Fact, bodies.Body]]:
        """Every control fact, verified and checked, in the order it was recorded."""
        found: list[tuple[tuple[str, datetime, str, str], Fact, bodies.Body]] = []
        for obj in self.listing.facts:
            scanned = self._read(obj, self.reader.facts)
            if not isinstance(scanned, ScannedFacts):
                continue
            try:
                parsed = [(fact, bodies.parse(fact)) for fact in scanned.facts]
            except bodies.BodyError as exc:
                self.report.damaged.append(Damage(obj.key, str(exc)))
                continue
            self.fact_files.append(scanned.file)
            found += [(_replay_order(scanned.file.file_id, f), f, b) for f, b in parsed]
        self.report.fact_files = len(self.fact_files)
        self.report.control_files += len(self.fact_files)
        found.sort(key=lambda entry: entry[0])
        return [(fact, body) for _, fact, body in found]

    def certificates(self, facts: list[tuple[Fact, bodies.Body]]) -> list[ScannedFile]:
        """Every certificate file, verified; each must be the one its fact recorded.

        Returns those the catalog registers as stored files (the ones with a sidecar naming
        their file id).
        """
        read = [self._read(o, self.reader.certificate) for o in self.listing.certificates]
        scanned = {f.obj.key: f for f in read if isinstance(f, ScannedFile)}
        report = self.report
        damaged = {d.key for d in report.damaged}
        for fact, body in facts:
            if not isinstance(body, bodies.CertificateIssued):
                continue
            document = scanned.get(body.json_key)
            if document is not None and document.sha256 != body.sha256:
                report.damaged.append(
                    Damage(
                        body.json_key,
                        f"its bytes have sha256 {document.sha256}, the certificate fact "
                        f"{fact.key} recorded {body.sha256}",
                    )
                )
                scanned.pop(body.json_key)
                damaged.add(body.json_key)
            report.problems += [
                f"certificate {body.certificate}: {key} is not in the store"
                for key in (body.json_key, body.html_key)
                if key not in scanned and key not in damaged
            ]
        report.certificate_files = len(scanned)
        report.control_files += len(scanned)
        return [f for f in scanned.values() if f.stored_id is not None]

    def account(
        self, session: Session, account: str, settings: AccountSettings | None, now: datetime
    ) -> None:
        """Read, verify and write one account's files and rows."""
        report = self.report
        warcs: list[ScannedWarc] = self._files(account, "warc", self.reader.warc, ScannedWarc)
        warcs.sort(key=lambda w: (w.opened_at, w.obj.file_id or ""))
        parquet = self._files(account, "parquet", self.reader.parquet, ScannedFile)
        control = self._files(account, "control", self.reader.control, ScannedFile)
        if account not in self.files:
            # Configured but never captured: registered, as ``archiver run`` would.
            session.add(write.account_row(account, None, settings, now))
            session.flush()
        else:
            parquet_of = _parquet_links(parquet)
            found = facts_module.build(account, warcs, parquet_of)
            _check_platform(found, settings)
            write.write_account(session, found, settings, now)
            _count(report, found, warcs, parquet_of)
        for w in warcs:
            write.write_warc(session, w)
        for f in (*parquet, *control):
            write.write_file(session, f, now)
        report.warc_files += len(warcs)
        report.parquet_files += len(parquet)
        report.control_files += len(control)


def _replay_order(file_id: str, fact: Fact) -> tuple[str, datetime, str, str]:
    """Where a fact comes in the replay: in the order the facts were written.

    ``fact.at`` is the moment the command decided at, which ``ARCHIVER_NOW`` may fix for a
    whole rehearsal (a hold placed and released "at" the same second), and the fact id is a
    ULID of that moment with a random tail. The fact's WARC file id is a ULID of the wall
    clock when the file was written: its first 10 characters (milliseconds) order facts
    written by one command after another; within one millisecond, ``at`` decides.
    """
    return (file_id[:10], fact.at, file_id, fact.id)


def _sidecar_problems(listing: Listing) -> list[str]:
    """WARCs (capture files and facts) without their public sidecar, and sidecars without
    their file."""
    warcs = (*listing.warcs, *listing.facts)
    problems = [
        f"{w.key} has no {SIDECAR} sidecar; it was checked against the store's record only"
        for w in warcs
        if w.key not in listing.sidecars
    ]
    others = (*listing.parquet, *listing.control, *listing.certificates)
    files = {o.key for o in (*warcs, *others)}
    problems += [
        f"{key}{SIDECAR} describes a file that is not in the store"
        for key in sorted(set(listing.sidecars) - files)
    ]
    return problems


def _by_account(listing: Listing) -> dict[str, dict[str, list[StoredObject]]]:
    files: dict[str, dict[str, list[StoredObject]]] = defaultdict(lambda: defaultdict(list))
    for obj in (*listing.warcs, *listing.parquet, *listing.control):
        assert obj.account is not None
        files[obj.account][obj.kind].append(obj)
    return files


def _parquet_links(files: list[ScannedFile]) -> dict[str, str]:
    """Which Parquet file holds each version's row; the latest file wins.

    A roll that crashed after its file was stored but before the catalog commit is rolled
    again into a new file, which is the one the catalog registered.
    """
    links: dict[str, str] = {}
    for f in sorted(files, key=lambda f: f.obj.file_id or ""):
        for record_id in f.record_ids:
            links[record_id] = f.obj.file_id or ""
    return links


def _count(
    report: RebuildReport,
    facts: facts_module.AccountFacts,
    warcs: list[ScannedWarc],
    parquet_of: dict[str, str],
) -> None:
    report.records += len(facts.records)
    report.items += len(facts.items)
    report.versions += sum(len(i.versions) for i in facts.items)
    report.media += len(facts.media)
    report.orphans += facts.orphans
    report.problems += facts.problems
    report.other_metadata += facts.other_metadata
    rolled = {v.pointer.record_id for i in facts.items for v in i.versions}
    stray = len(set(parquet_of) - rolled)
    if stray:
        report.problems.append(
            f"{stray} Parquet row(s) of {facts.account} name a version record that was not "
            "rebuilt (dropped as an orphan, or in a damaged file)"
        )
    for w in warcs:
        info_account = w.warcinfo.get("account")
        if info_account and info_account != facts.account:
            report.problems.append(
                f"{w.obj.key}: its warcinfo names account {info_account}, its key {facts.account}"
            )


def _check_platform(facts: facts_module.AccountFacts, settings: AccountSettings | None) -> None:
    if settings is not None and facts.platform and facts.platform != settings.platform:
        facts.problems.append(
            f"account {facts.account}: its records are from {facts.platform}, the "
            f"configuration says {settings.platform}; the records' platform was kept"
        )


def _damage_message(damaged: list[Damage]) -> str:
    listed = "; ".join(f"{d.key}: {d.problem}" for d in damaged[:5])
    more = f" (and {len(damaged) - 5} more)" if len(damaged) > 5 else ""
    return (
        f"{len(damaged)} stored file(s) fail verification, so nothing was written: {listed}"
        f"{more}. Restore them from a replica, or rebuild without them with --skip-damaged"
    )
