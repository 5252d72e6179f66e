"""Running a disposition run's journal: each step done once, marked done with its effect.

A run's steps (:class:`~archiver.catalog.models.DispositionStep`) are written before any of
them runs (:mod:`.execute`); :class:`Journal` runs those not yet done, in order, each in
the transaction that records its effect, so a crash between two steps leaves the catalog
consistent with the store and the next run of the journal picks up where it stopped:

- ``compact``: the stored file is read once to find its orphans (records no catalog row
  points to: they go too), then rewritten without the dropped records
  (:func:`archiver.compact.compact_warc`, :func:`~archiver.compact.compact_parquet`) under
  the id the plan chose; the catalog pointers of the kept records (``warc_records``,
  ``item_versions``, ``media``) move to the new file. A compaction interrupted after its
  new file was stored is resumed from it, not written again.
- ``delete``: a file deleted whole, or the old file of a compaction, with its sidecar. A
  legal hold on it is lifted first (its records are destroyed, or copied to the new file,
  which keeps the hold); a GOVERNANCE retention is bypassed; a COMPLIANCE retention leaves
  the step (and the file) ``pending`` until it ends: a later run of the journal deletes it.
- ``scrub`` and ``secure-delete``: :mod:`.scrub`.
- ``certificate``: the certificate's data is fixed in the journal first (with the audit
  chain's head), so that a resumed run writes the very same bytes; then the certificate is
  stored (:func:`.certificate.write_certificate`) and the ``retention.disposed`` audit
  entry naming it and its SHA-256 closes the run.

Test hook, not for production: :class:`CrashHook` (``ARCHIVER_TEST_CRASH_AT`` =
``<step kind>:<n>``) SIGKILLs the process right after the n-th step of that kind is done.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from archiver import audit, lease, locks
from archiver.app import App
from archiver.catalog.models import (
    DispositionReport,
    DispositionRun,
    DispositionStep,
    ItemVersion,
    Media,
    StoredFile,
    WarcRecord,
)
from archiver.compact import compact_parquet, compact_warc
from archiver.disposition import report
from archiver.disposition.certificate import CertificateData, write_certificate
from archiver.disposition.plan import Plan, PlannedFile, batches
from archiver.disposition.scrub import scrub_items, secure_delete, secure_session
from archiver.errors import ArchiverError, IntegrityError, ObjectNotFoundError, RetentionError
from archiver.layout import Partition, sidecar_key
from archiver.logging import get_logger
from archiver.warc_check import ExpectedRecord, WarcChecker

log = get_logger(__name__)

#: The test hook's environment variable: ``<step kind>:<n>``.
CRASH_ENV = "ARCHIVER_TEST_CRASH_AT"
#: How long the retention lock and the accounts' leases last without a step renewing them.
LOCK_TTL = timedelta(minutes=30)

COMPACT, DELETE, SCRUB, SECURE, CERTIFY = (
    "compact",
    "delete",
    "scrub",
    "secure-delete",
    "certificate",
)
STEP_KINDS = (COMPACT, DELETE, SCRUB, SECURE, CERTIFY)
#: Run states: "running" (steps remain), "pending" (only deletions waiting for a lock to
#: end), "done".
RUNNING, PENDING, DONE = "running", "pending", "done"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


# -- the crash hook (tests only) --------------------------------------------------------


class CrashHook:
    """Kills this process after the n-th step of a kind is done (``kind:n``; tests only)."""

    def __init__(self, spec: str | None) -> None:
        self.kind: str | None = None
        self.n = 0
        self.seen: Counter[str] = Counter()
        if spec:
            kind, _, n = spec.partition(":")
            if kind not in STEP_KINDS or not n.isdigit() or int(n) < 1:
                raise ArchiverError(
                    f"{CRASH_ENV}={spec!r}: expected <step kind>:<n> with a kind among "
                    f"{', '.join(STEP_KINDS)} (a test hook; unset it)"
                )
            self.kind, self.n = kind, int(n)

    def after(self, kind: str) -> None:
        self.seen[kind] += 1
        if kind == self.kind and self.seen[kind] == self.n:
            log.warning("test hook: killing the process", after=f"{kind}:{self.n}")
            os.kill(os.getpid(), signal.SIGKILL)


def fence(session: Session, generation: int, leases: Mapping[str, int]) -> None:
    """In the caller's transaction: renew the retention lock and the accounts' leases, or
    raise if another process took one over (it then commits nothing)."""
    now = _utcnow()
    locks.fence(session, locks.RETENTION, generation, now, LOCK_TTL)
    for account, lease_gen in leases.items():
        lease.fence(session, account, lease_gen, now, LOCK_TTL)


# -- running the steps -------------------------------------------------------------------


class Journal:
    """Runs the steps of one disposition run that are not done yet."""

    def __init__(
        self,
        app: App,
        run_id: str,
        generation: int,
        leases: Mapping[str, int],
        hook: CrashHook,
        now: datetime,
    ) -> None:
        self.app = app
        self.catalog = app.catalog
        self.store = app.store
        self.run_id = run_id
        self.generation = generation
        self.leases = leases
        self.hook = hook
        self.now = now
        with self.catalog.reader() as s:
            run = s.get(DispositionRun, run_id)
            assert run is not None
            self.doc = dict(run.plan)
            self.report_id = run.report_id
            self.started_by = run.started_by
        self.plan = Plan.from_json(self.doc.get("plan", {}))

    @contextmanager
    def _step(self, seq: int) -> Iterator[tuple[Session, DispositionStep]]:
        """One step's transaction: the step's row, the lock and leases fenced."""
        with self.catalog.session() as s:
            secure_session(s)
            step = s.get(DispositionStep, (self.run_id, seq))
            assert step is not None
            yield s, step
            fence(s, self.generation, self.leases)

    def run(self) -> None:
        with self.catalog.reader() as s:
            steps = [
                (st.seq, st.kind, st.state, dict(st.detail))
                for st in s.scalars(
                    select(DispositionStep)
                    .where(DispositionStep.run_id == self.run_id)
                    .order_by(DispositionStep.seq)
                )
            ]
        for seq, kind, state, detail in steps:
            if state == "done":
                continue
            handler = {
                COMPACT: self._compact,
                DELETE: self._delete,
                SCRUB: self._scrub,
                SECURE: self._secure,
                CERTIFY: self._certify,
            }[kind]
            if handler(seq, detail) == "done":
                log.info("disposition step done", run=self.run_id, step=seq, kind=kind)
                self.hook.after(kind)
        self._finish()

    # -- compact -------------------------------------------------------------------------

    def _known(self, file_id: str) -> list[ExpectedRecord]:
        with self.catalog.reader() as s:
            return [
                ExpectedRecord(*row)
                for row in s.execute(
                    select(
                        WarcRecord.record_id,
                        WarcRecord.offset,
                        WarcRecord.length,
                        WarcRecord.warc_type,
                        WarcRecord.block_digest,
                        WarcRecord.payload_digest,
                    ).where(WarcRecord.file_id == file_id)
                )
            ]

    def _orphans(self, key: str, known: list[ExpectedRecord]) -> set[str]:
        """Records of the stored file no catalog row points to: garbage that goes too."""
        checker = WarcChecker(known)
        for chunk in self.store.open(key):
            checker.feed(chunk)
        check = checker.finish()
        if check.problems:
            first = check.problems[0]
            raise IntegrityError(
                f"{key}: record {first.record_id} at offset {first.offset}: {first.problem}; "
                "damaged evidence is not compacted (run `archiver verify --file`); the "
                "disposition stops here and can be resumed once it is resolved"
            )
        return {o for o in check.orphans if o.startswith("<")}

    def _compact(self, seq: int, detail: dict[str, Any]) -> str:
        f = PlannedFile(**{**detail["file"], "drop": tuple(detail["file"]["drop"])})
        partition = Partition.parse(f.partition)
        work = self.app.spool_dir
        if f.kind == "warc":
            known = self._known(f.file_id)
            orphans = self._orphans(f.key, known)
            result = compact_warc(
                self.store,
                f.key,
                set(f.drop) | orphans,
                work_dir=work,
                info=self.app.warc_info(),
                partition=partition,
                known={k.record_id: (k.offset, k.length) for k in known},
                file_id=f.new_file_id,
            )
            if result.dangling:
                log.warning("kept records refer to dropped ones", key=f.key, pairs=result.dangling)
            with self._step(seq) as (s, step):
                if result.new_file_id is not None:
                    assert result.new_key is not None and result.sha256 is not None
                    self._add_file(s, result.new_file_id, result.new_key, "warc", f, result)
                    self._repoint(s, result.new_file_id, result.kept)
                dropped = [rid for rid, _ in result.dropped]
                for chunk in batches(dropped):
                    s.execute(delete(WarcRecord).where(WarcRecord.record_id.in_(chunk)))
                step.detail = {
                    **detail,
                    "result": {
                        "new_file_id": result.new_file_id,
                        "new_key": result.new_key,
                        "new_sha256": result.sha256,
                        "new_size": result.size,
                        "records": result.records,
                        "dropped": [{"record_id": r, "block_digest": d} for r, d in result.dropped],
                        "orphans": sorted(orphans),
                        "dangling": [list(p) for p in result.dangling],
                    },
                }
                step.state, step.done_at = "done", self.now
            return "done"
        pq = compact_parquet(
            self.store, f.key, f.drop, work_dir=work, partition=partition, file_id=f.new_file_id
        )
        with self._step(seq) as (s, step):
            if pq.new_file_id is not None:
                assert pq.new_key is not None and pq.sha256 is not None
                self._add_file(s, pq.new_file_id, pq.new_key, "parquet", f, pq)
                for chunk in batches(pq.kept):
                    s.execute(
                        update(ItemVersion)
                        .where(
                            ItemVersion.parquet_file_id == f.file_id,
                            ItemVersion.warc_record_id.in_(chunk),
                        )
                        .values(parquet_file_id=pq.new_file_id)
                    )
            step.detail = {
                **detail,
                "result": {
                    "new_file_id": pq.new_file_id,
                    "new_key": pq.new_key,
                    "new_sha256": pq.sha256,
                    "new_size": pq.size,
                    "records": pq.rows,
                    "dropped": [{"record_id": r} for r in pq.dropped],
                },
            }
            step.state, step.done_at = "done", self.now
        return "done"

    def _add_file(
        self, s: Session, file_id: str, key: str, kind: str, old: PlannedFile, result: Any
    ) -> None:
        if s.get(StoredFile, file_id) is not None:
            return
        first = getattr(result, "first_record_at", None)
        s.add(
            StoredFile(
                id=file_id,
                key=key,
                kind=kind,
                partition=old.partition,
                sha256=result.sha256,
                size=result.size,
                records=getattr(result, "records", getattr(result, "rows", 0)),
                created_at=first or self.now,
                stored_at=_utcnow(),
                retain_until=result.retain_until,
                legal_hold=result.legal_hold,
                state="stored",
            )
        )

    def _repoint(self, s: Session, new_id: str, kept: Mapping[str, tuple[int, int]]) -> None:
        """Kept records now lie in the new file: move every catalog pointer to them."""
        if not kept:
            return
        rows = [
            {"rid": rid, "fid": new_id, "off": offset, "len": length}
            for rid, (offset, length) in kept.items()
        ]
        at: dict[str, Any] = {n: bindparam(n) for n in ("fid", "off", "len")}
        records, versions, media = (
            cast(Table, WarcRecord.__table__),
            cast(Table, ItemVersion.__table__),
            cast(Table, Media.__table__),
        )
        # Core statements, each executed once for every kept record (executemany).
        s.execute(
            update(records)
            .where(records.c.record_id == bindparam("rid"))
            .values(file_id=at["fid"], offset=at["off"], length=at["len"]),
            rows,
        )
        for table in (versions, media):
            s.execute(
                update(table)
                .where(table.c.warc_record_id == bindparam("rid"))
                .values(warc_file_id=at["fid"], warc_offset=at["off"], warc_length=at["len"]),
                rows,
            )

    # -- delete --------------------------------------------------------------------------

    def _delete(self, seq: int, detail: dict[str, Any]) -> str:
        key, file_id = detail["key"], detail["file_id"]
        keys = [key, sidecar_key(key)] if detail["kind"] in ("warc", "parquet") else [key]
        outcome, pending_until, why = "done", None, None
        notes: list[str] = list(detail.get("notes") or [])  # kept from an earlier attempt
        for k in keys:
            try:
                info = self.store.head(k)
            except ObjectNotFoundError:
                continue  # deleted already (a resumed run), or never had a sidecar
            try:
                if info.legal_hold:
                    # The records it held are destroyed, or were copied to the compacted
                    # file (which keeps the hold): the hold on this object is spent.
                    self.store.set_legal_hold(k, False)
                    notes.append(f"legal hold on {k} lifted: no kept record remains in it")
                self.store.delete_all_versions(k, bypass_governance=True)
            except ObjectNotFoundError:
                continue
            except RetentionError as exc:
                now = _utcnow()
                info = self.store.head(k)
                if info.retain_until is None or info.retain_until <= now or info.legal_hold:
                    raise
                # COMPLIANCE: nobody may delete it before then, not even with the bypass.
                outcome = "pending"
                pending_until = max(pending_until or info.retain_until, info.retain_until)
                why = f"locked until {info.retain_until.isoformat()}: {exc}"
                break
        with self._step(seq) as (s, step):
            row = s.get(StoredFile, file_id)
            if row is not None:
                row.state = "disposed" if outcome == "done" else "pending"
                row.pending_until = pending_until
                if outcome == "done":
                    row.disposed_at = self.now
            if detail.get("whole"):
                s.execute(delete(WarcRecord).where(WarcRecord.file_id == file_id))
            step.detail = {
                **detail,
                "pending_until": _iso(pending_until),
                "why": why,
                "notes": notes,
            }
            step.state = outcome
            step.done_at = self.now if outcome == "done" else None
        if outcome == "pending":
            log.warning("deletion waits for an object lock", key=key, until=_iso(pending_until))
        return outcome

    # -- the catalog ---------------------------------------------------------------------

    def _scrub(self, seq: int, detail: dict[str, Any]) -> str:
        with self._step(seq) as (s, step):
            counts = scrub_items(
                s, self.plan, certificate_id=self.doc["certificate_id"], disposed_at=self.now
            )
            step.detail = {**detail, "counts": counts}
            step.state, step.done_at = "done", self.now
        return "done"

    def _secure(self, seq: int, detail: dict[str, Any]) -> str:
        done = secure_delete(self.catalog)
        with self._step(seq) as (_s, step):
            step.detail = {**detail, "done": done}
            step.state, step.done_at = "done", self.now
        return "done"

    # -- the certificate -----------------------------------------------------------------

    def _certify(self, seq: int, detail: dict[str, Any]) -> str:
        if "data" not in detail:
            # The audit head goes into the certificate before the entry that names it; kept
            # in the journal, so a resumed run writes the very same bytes.
            with self._step(seq) as (s, step):
                head = audit.head(s) or (0, "")
                data = self._certificate_data(s, head)
                detail = {**detail, "data": asdict(data)}
                step.detail = detail
        raw = dict(detail["data"])
        seq_hash = raw.pop("audit_head")
        data = CertificateData(**raw, audit_head=(int(seq_hash[0]), str(seq_hash[1])))
        with self._step(seq) as (s, step):
            cert = write_certificate(
                self.store,
                s,
                data,
                info=self.app.warc_info(),
                tmp_dir=self.app.spool_dir,
                actor=self.started_by,
            )
            run = s.get(DispositionRun, self.run_id)
            assert run is not None
            run.certificate_id = cert.id
            row = s.get(DispositionReport, self.report_id)
            if row is not None:
                row.status = report.DISPOSED
            audit.append(
                s,
                actor=self.started_by,
                action="retention.disposed",
                subject=cert.id,
                detail={
                    "certificate": cert.id,
                    "sha256": cert.sha256,
                    "json_key": cert.json_key,
                    "html_key": cert.html_key,
                    "report": self.report_id,
                    "run": self.run_id,
                    "items": len(data.items),
                    "records": len(data.records_destroyed),
                    "pending": len(data.pending),
                },
            )
            step.state, step.done_at = "done", self.now
        return "done"

    def _certificate_data(self, s: Session, head: tuple[int, str]) -> CertificateData:
        files_deleted: list[dict[str, Any]] = []
        parquet_deleted: list[dict[str, Any]] = []
        files_compacted: list[dict[str, Any]] = []
        parquet_compacted: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        planned = {f.file_id: f for f in self.plan.files}
        types = {r.record_id: r.warc_type for r in self.plan.records}
        records = [asdict(r) for r in self.plan.records]
        for step in s.scalars(
            select(DispositionStep)
            .where(DispositionStep.run_id == self.run_id)
            .order_by(DispositionStep.seq)
        ):
            d = step.detail
            if step.kind == COMPACT:
                f = planned[d["file"]["file_id"]]
                res = d["result"]
                entry = {
                    "old_file_id": f.file_id,
                    "old_key": f.key,
                    "old_sha256": f.sha256,
                    "new_file_id": res["new_file_id"],
                    "new_key": res["new_key"],
                    "new_sha256": res["new_sha256"],
                    "dropped": [
                        {**x, "warc_type": types.get(x["record_id"], "orphan")}
                        for x in res["dropped"]
                    ],
                }
                (files_compacted if f.kind == "warc" else parquet_compacted).append(entry)
                records.extend(
                    {
                        "record_id": x["record_id"],
                        "warc_type": "orphan",
                        "block_digest": x.get("block_digest"),
                        "file_id": f.file_id,
                        "why": "uncatalogued (orphan) record of a compacted file",
                    }
                    for x in res["dropped"]
                    if f.kind == "warc" and x["record_id"] in set(res.get("orphans", []))
                )
            elif step.kind == DELETE:
                f = planned[d["file_id"]]
                if step.state == "pending":
                    pending.append(
                        {
                            "file_id": f.file_id,
                            "key": f.key,
                            "retain_until": d.get("pending_until"),
                            "why": d.get("why"),
                        }
                    )
                elif d.get("whole"):
                    entry = {
                        "file_id": f.file_id,
                        "key": f.key,
                        "sha256": f.sha256,
                        "size": f.size,
                        "records": f.records,
                    }
                    (files_deleted if f.kind == "warc" else parquet_deleted).append(entry)
        return CertificateData(
            certificate_id=self.doc["certificate_id"],
            run_id=self.run_id,
            report_id=self.report_id,
            executed_by=self.started_by,
            executed_at=self.doc["executed_at"],
            approvers=list(self.doc.get("approvers", [])),
            notices={k: list(v) for k, v in self.doc.get("notices", {}).items()},
            audit_head=head,
            series=list(self.doc.get("series", [])),
            items=[asdict(i) for i in self.plan.items],
            files_deleted=files_deleted,
            files_compacted=files_compacted,
            parquet_deleted=parquet_deleted,
            parquet_compacted=parquet_compacted,
            records_destroyed=records,
            exchanges_kept=[asdict(e) for e in self.plan.exchanges_kept],
            pending=pending,
            excluded=list(self.doc.get("excluded", [])),
        )

    def _finish(self) -> None:
        with self.catalog.session() as s:
            run = s.get(DispositionRun, self.run_id)
            assert run is not None
            states = Counter(
                s.scalars(
                    select(DispositionStep.state).where(DispositionStep.run_id == self.run_id)
                )
            )
            before = run.state
            if states["planned"]:
                return  # a step failed before the end: the run stays unfinished
            run.state = PENDING if states["pending"] else DONE
            if run.state == DONE:
                run.finished_at = self.now
            if before == PENDING and run.state == DONE:
                audit.append(
                    s,
                    actor=self.app.actor.display,
                    action="retention.pending.deleted",
                    subject=run.certificate_id,
                    detail={"run": self.run_id, "report": self.report_id},
                )
