"""Carrying out a disposition report: re-check, plan, journal, destroy, certify.

:func:`dispose` is ``archiver retention dispose REPORT``:

1. The report must be executable (not expired, not carried out, approved by a second
   officer where ``[retention] require_approval``; :func:`report.check_executable`).
2. Under the ``retention`` lock (hold changes take it too) every item of the report is
   evaluated again, now: an item held, retained or otherwise no longer eligible since the
   report is *excluded* (listed, not destroyed); an item of a ``transfer`` series goes only
   if the receiving archive's receipt covers it. If any item waits for notice to the
   historical society, nothing is destroyed: the whole disposition is refused, naming the
   series and the command that records the notice.
3. The leases of the items' accounts are taken (no capture writes to them meanwhile), the
   spool's waiting files are stored, and the plan (:mod:`.plan`) is written as a
   :class:`DispositionRun` with one :class:`DispositionStep` per action, in state
   ``planned``, before anything is destroyed.
4. The steps run in order, each idempotent and marked done in the transaction that records
   its effect: ``compact`` (a new verified file holds the records that stay; the catalog
   pointers of the kept records move to it), ``delete`` (a file deleted whole, or the old
   file of a compaction; a GOVERNANCE retention is bypassed, a COMPLIANCE one leaves the
   step ``pending`` until it ends), ``scrub`` (items become stubs, the search index forgets
   them), ``secure-delete`` (nothing destroyed stays in the database files), and
   ``certificate`` (the certificate of destruction, stored permanently, and the final
   ``retention.disposed`` audit entry naming it).

A crash anywhere rolls forward: ``dispose --resume`` (or the daemon at its next start,
:func:`resume_unfinished`) runs the steps not yet done, to the same end state. Objects
that waited for a COMPLIANCE lock are deleted by a later resume once the lock has ended.

Test hook, not for production: ``crash_at`` (or the environment variable
``ARCHIVER_TEST_CRASH_AT``) ``"<step kind>:<n>"`` kills the process (SIGKILL) right after
the n-th step of that kind is recorded done, so tests can check that a kill -9 rolls forward.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from ulid import ULID

from archiver import audit, clock, lease, locks
from archiver.app import App
from archiver.catalog.db import Catalog
from archiver.catalog.models import (
    Certificate,
    DispositionRun,
    DispositionStep,
    Item,
    NamedLock,
)
from archiver.disposition import report
from archiver.disposition.journal import (
    CERTIFY,
    COMPACT,
    CRASH_ENV,
    DELETE,
    DONE,
    LOCK_TTL,
    RUNNING,
    SCRUB,
    SECURE,
    CrashHook,
    Journal,
    fence,
)
from archiver.disposition.plan import Plan, backfill_links, batches, make_plan
from archiver.disposition.scrub import checkpoint
from archiver.errors import ArchiverError, RetentionError
from archiver.evaluate import RetentionContext, evaluate, load_context
from archiver.lease import LeaseHeldError
from archiver.logging import get_logger
from archiver.retention import Decision, Outcome
from archiver.spool import DAMAGED_DIR, Spool
from archiver.startup import release_dead_leases
from archiver.warc import SIDECAR_SUFFIX, read_sidecar
from archiver.warc_recovery import CLOSED_SUFFIX, OPEN_SUFFIX

log = get_logger(__name__)

#: How long to wait for the retention lock (a hold change in progress) before refusing.
LOCK_WAIT = timedelta(seconds=10)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


# -- the result --------------------------------------------------------------------------


@dataclass
class DisposeResult:
    """What a disposition run did (or, while pending, has done so far)."""

    run_id: str
    report_id: str
    state: str
    certificate_id: str
    items: int
    series: list[dict[str, Any]]  # {code, title, count}
    files_deleted: list[dict[str, Any]]  # {file_id, key, kind}
    files_compacted: list[dict[str, Any]]  # {old_file_id, old_key, new_file_id, new_key, kind}
    pending: list[dict[str, Any]]  # {file_id, key, retain_until, why}
    excluded: list[dict[str, Any]]  # {item_id, reason}
    exchanges_kept: int
    certificate_json: str | None = None
    certificate_html: str | None = None
    certificate_sha256: str | None = None
    resumed: bool = False
    notes: list[str] = field(default_factory=list)  # e.g. a spent legal hold lifted

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# -- entry points ------------------------------------------------------------------------


def dispose(
    app: App,
    report_id: str,
    *,
    resume: bool = False,
    now: datetime | None = None,
    crash_at: str | None = None,
) -> DisposeResult:
    """Carry out disposition report ``report_id``; with ``resume``, finish its unfinished run.

    Raises :class:`RetentionError` (exit 7) when the report may not be carried out, when an
    item waits for notice, when a capture holds an account's lease, or when a run of the
    report is unfinished and ``resume`` was not asked (or finished and it was).
    """
    now = now or clock.now()
    hook = CrashHook(crash_at if crash_at is not None else os.environ.get(CRASH_ENV))
    catalog = app.checked_catalog()
    with catalog.reader() as s:
        unfinished = _unfinished(s, report_id)
        finished = s.scalars(
            select(DispositionRun).where(
                DispositionRun.report_id == report_id, DispositionRun.state == DONE
            )
        ).first()
        run_id = unfinished.id if unfinished is not None else None
    if resume and run_id is None:
        if finished is not None:
            return _result(catalog, finished.id, resumed=True)
        raise RetentionError(
            f"no disposition of report {report_id} was interrupted: there is nothing to "
            f"resume; carry it out with `archiver retention dispose {report_id}`"
        )
    if not resume and run_id is not None:
        raise RetentionError(
            f"a disposition of report {report_id} (run {run_id}) is unfinished: an earlier "
            f"attempt stopped midway; finish it with `archiver retention dispose {report_id} "
            "--resume`"
        )
    if run_id is None:
        with catalog.reader() as s:
            report.check_executable(s, report_id, now, app.config, app.actor.display)
    holder = f"{app.config.archiver.node}:{os.getpid()}"
    _release_dead_lock(catalog, app.config.archiver.node)
    release_dead_leases(catalog, app.config.archiver.node, clock=_utcnow)
    with locks.held(catalog, locks.RETENTION, holder, ttl=LOCK_TTL, wait=LOCK_WAIT) as gen:
        if run_id is None:
            with catalog.reader() as s:
                report.check_executable(s, report_id, now, app.config, app.actor.display)
                if _unfinished(s, report_id) is not None:
                    raise RetentionError(
                        f"another process started a disposition of report {report_id} just "
                        f"now; see how it ended with `archiver retention dispose {report_id} "
                        "--resume`"
                    )
                accounts = _report_accounts(s, report_id)
        else:
            with catalog.reader() as s:
                run = s.get(DispositionRun, run_id)
                assert run is not None
                accounts = Plan.from_json(run.plan.get("plan", {})).accounts
        with _leases(catalog, accounts, holder) as leases:
            if run_id is None:
                run_id = _start(app, report_id, now, gen, leases)
            Journal(app, run_id, gen, leases, hook, now).run()
    checkpoint(catalog)  # the last commits' pages leave the write-ahead log too
    return _result(catalog, run_id, resumed=resume)


def _unfinished(session: Session, report_id: str) -> DispositionRun | None:
    return session.scalars(
        select(DispositionRun)
        .where(DispositionRun.report_id == report_id, DispositionRun.state != DONE)
        .order_by(DispositionRun.started_at.desc())
    ).first()


def resume_unfinished(app: App) -> list[DisposeResult]:
    """Finish every unfinished disposition run (the daemon calls this at start)."""
    catalog = app.catalog
    with catalog.reader() as s:
        reports = list(
            s.scalars(
                select(DispositionRun.report_id)
                .where(DispositionRun.state != DONE)
                .order_by(DispositionRun.started_at)
            )
        )
    results = []
    for report_id in dict.fromkeys(reports):
        log.info("finishing an interrupted disposition", report=report_id)
        results.append(dispose(app, report_id, resume=True, crash_at=""))
    return results


# -- locks and leases --------------------------------------------------------------------


def _release_dead_lock(catalog: Catalog, node: str) -> None:
    """Free the retention lock when a process of this node that held it is gone (kill -9)."""
    prefix = f"{node}:"
    with catalog.reader() as s:
        row = s.get(NamedLock, locks.RETENTION)
        holder = row.holder if row is not None else None
        generation = row.generation if row is not None else 0
    if not holder or not holder.startswith(prefix):
        return
    pid = holder.removeprefix(prefix)
    if not pid.isdigit() or int(pid) == os.getpid():
        return
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        locks.release(catalog, locks.RETENTION, generation)
        log.warning("retention lock of a dead process released", holder=holder)
    except PermissionError:
        return


@contextmanager
def _leases(catalog: Catalog, accounts: list[str], holder: str) -> Iterator[dict[str, int]]:
    """Hold the accounts' capture leases: no capture writes to their files meanwhile."""
    taken: dict[str, int] = {}
    try:
        for account in accounts:
            try:
                taken[account] = lease.acquire(catalog, account, holder, _utcnow(), LOCK_TTL)
            except LeaseHeldError as exc:
                raise RetentionError(
                    f"{exc}; the disposition waits for no capture: run it again once the "
                    "capture has finished (nothing was destroyed)"
                ) from None
        yield taken
    finally:
        for account, generation in taken.items():
            with contextlib.suppress(ArchiverError):
                lease.release(catalog, account, generation)


# -- starting a run ----------------------------------------------------------------------


def _report_accounts(session: Session, report_id: str) -> list[str]:
    view = report.load_report(session, report_id)
    found: set[str] = set()
    for chunk in batches(view.item_ids):
        found.update(session.scalars(select(Item.account_id).where(Item.id.in_(chunk))))
    return sorted(found)


def _refuse_notice(
    app: App, report_id: str, waiting: list[Decision], ctx: RetentionContext
) -> None:
    by_series: dict[str, list[Decision]] = defaultdict(list)
    for d in waiting:
        by_series[d.series].append(d)
    parts = []
    for code, decisions in sorted(by_series.items()):
        since = min((d.eligible_on for d in decisions if d.eligible_on), default=None)
        series = app.schedules.get(code)
        to = series.notice.to if series is not None else "the historical society"
        days = series.notice.days if series is not None else 60
        text = (
            f"series {code}: {len(decisions)} item(s) eligible since "
            f"{since.date().isoformat() if since else 'unknown'} need {days} days' written "
            f"notice to the {to} first"
        )
        sent = [
            n
            for n in ctx.notices
            if n.series == code and n.kind == "sent" and (since is None or n.on >= since)
        ]
        if sent:
            latest = max(sent, key=lambda n: n.on)
            text += (
                f"; notice {latest.reference} was sent on {latest.on.date().isoformat()}: "
                f"destruction may proceed from {(latest.on + timedelta(days=days)).isoformat()}"
            )
        else:
            text += (
                f"; record it with `archiver retention notice record --series {code} "
                f"--sent-on DATE --reference REF` (then wait {days} days) or, for a waiver, "
                f"`--waiver-on DATE --reference REF`"
            )
        parts.append(text)
    app.record(
        "retention.dispose.refused",
        subject=report_id,
        detail={
            "why": "awaiting notice",
            "series": {k: len(v) for k, v in sorted(by_series.items())},
        },
    )
    raise RetentionError(
        f"disposition of report {report_id} refused, nothing was destroyed: " + "; ".join(parts)
    )


@dataclass
class _Selection:
    """The report's items re-evaluated now."""

    destroy: list[int]
    excluded: list[dict[str, Any]]
    decisions: dict[int, Decision]
    waiting: list[Decision]  # items that wait for notice to the historical society
    ctx: RetentionContext


def _select(app: App, session: Session, report_id: str, now: datetime) -> _Selection:
    """Re-evaluate the report's items now: what to destroy, what is excluded and why."""
    view = report.load_report(session, report_id)
    ctx = load_context(session, app.config, app.schedules)
    decisions = evaluate(session, ctx, now, view.item_ids)
    waiting = [d for d in decisions.values() if d.outcome is Outcome.AWAITING_NOTICE]
    receipt = report.transfer_receipt(session, report_id)
    received = {int(i) for i in (receipt or {}).get("items", [])}
    destroy: list[int] = []
    excluded: list[dict[str, Any]] = []
    for item_id in view.item_ids:
        d = decisions.get(item_id)
        if d is None:
            excluded.append({"item_id": item_id, "reason": "already disposed of"})
        elif not d.eligible:
            excluded.append({"item_id": item_id, "reason": f"{d.outcome.value}: {d.reason}"})
        elif d.action == "transfer" and item_id not in received:
            excluded.append(
                {
                    "item_id": item_id,
                    "reason": f"series {d.series} is transferred: its items are destroyed "
                    "only once the receiving archive's receipt for them is recorded "
                    f"(`archiver retention transfer {report_id}`, then `archiver retention "
                    f"receipt {report_id}`)",
                }
            )
        elif d.action == "permanent":
            excluded.append({"item_id": item_id, "reason": f"permanent: {d.reason}"})
        else:
            destroy.append(item_id)
    return _Selection(destroy, excluded, decisions, waiting, ctx)


def _spool_conflicts(app: App, partitions: set[str]) -> list[str]:
    """Spool files (open, or closed and waiting) of partitions the disposition rewrites."""
    spool = app.spool_dir
    if not spool.is_dir():
        return []
    found = []
    for sidecar in sorted(spool.glob(f"*{SIDECAR_SUFFIX}")):
        try:
            side = read_sidecar(sidecar)
        except ArchiverError:
            continue
        for suffix in (OPEN_SUFFIX, CLOSED_SUFFIX):
            path = spool / f"{side.file_id}{suffix}"
            if path.exists() and side.partition.name in partitions:
                found.append(f"{path} ({side.partition.name})")
    return found


def _damaged_conflicts(app: App, partitions: set[str]) -> list[str]:
    """Files crash recovery set aside in the spool's ``damaged/`` that may hold records of
    the partitions the disposition rewrites (or whose partition cannot be read).

    A certificate of destruction must be true: while such a copy exists, the records in
    it were not destroyed, whatever the store says.
    """
    damaged = app.spool_dir / DAMAGED_DIR
    if not damaged.is_dir():
        return []
    found = []
    for path in sorted(p for p in damaged.iterdir() if p.is_file()):
        if path.name.endswith(SIDECAR_SUFFIX):
            continue  # a spool sidecar names a partition; it holds no record
        partition = _warcinfo_partition(path)
        if partition is None or partition in partitions:
            found.append(f"{path} ({partition or 'partition unreadable'})")
    return found


def _warcinfo_partition(path: Path) -> str | None:
    """The ``isPartOf`` of the file's first record (its warcinfo), if it can be read."""
    try:
        with path.open("rb") as f:
            head = zlib.decompressobj(wbits=31).decompress(f.read(1 << 16), 1 << 16)
    except (OSError, zlib.error):
        return None
    # The WARC head, then the warcinfo block of ``name: value`` lines.
    _warc_head, sep, block = head.partition(b"\r\n\r\n")
    for line in block.split(b"\r\n") if sep else []:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"ispartof":
            return value.strip().decode("utf-8", "replace")
    return None


def _start(
    app: App, report_id: str, now: datetime, generation: int, leases: Mapping[str, int]
) -> str:
    """Re-check, plan and journal a new run; return its id. Nothing is destroyed yet."""
    catalog = app.catalog
    # Closed files waiting for the store hold catalogued records: store them first.
    Spool(app.spool_dir, app.store, catalog, max_bytes=app.config.spool.max_bytes).store_waiting()
    # Read, then written in a transaction of its own: the retention lock and the accounts'
    # leases keep holds, reassignments and captures from changing these items meanwhile.
    with catalog.reader() as s:
        chosen = _select(app, s, report_id, now)
    if chosen.waiting:
        _refuse_notice(app, report_id, chosen.waiting, chosen.ctx)
    destroy, excluded, decisions, ctx = (
        chosen.destroy,
        chosen.excluded,
        chosen.decisions,
        chosen.ctx,
    )
    if not destroy:
        raise RetentionError(
            f"nothing in report {report_id} may be destroyed now, nothing was: "
            + "; ".join(f"item {e['item_id']}: {e['reason']}" for e in excluded[:5])
            + (f"; and {len(excluded) - 5} more" if len(excluded) > 5 else "")
        )
    with catalog.session() as s:
        backfill_links(s, app.store, destroy)
    with catalog.reader() as s:
        plan = make_plan(s, app.store, destroy, lambda ids: evaluate(s, ctx, now, ids))
        view = report.load_report(s, report_id)
    if plan.unstored:
        raise RetentionError(
            f"records of the items to destroy lie in {len(plan.unstored)} file(s) not in "
            f"the store yet ({', '.join(sorted(plan.unstored)[:3])}): they are in the "
            "spool; start `archiver run` (or wait for the capture to end) so they are "
            "stored, then try again. Nothing was destroyed"
        )
    conflicts = _spool_conflicts(app, set(plan.partitions))
    if conflicts:
        raise RetentionError(
            "the spool holds files of partitions this disposition rewrites: "
            + ", ".join(conflicts[:3])
            + "; start `archiver run` so they are recovered and stored, then try again. "
            "Nothing was destroyed"
        )
    damaged = _damaged_conflicts(app, set(plan.partitions))
    if damaged:
        raise RetentionError(
            f"the spool's {DAMAGED_DIR}/ directory holds {len(damaged)} file(s) that crash "
            "recovery set aside and that may hold copies of records this disposition would "
            "destroy: " + ", ".join(damaged[:3]) + ". A certificate of destruction cannot be "
            "issued while they exist: examine each (`warcio index PATH` lists its records), "
            "move what must be kept out of the spool, remove the rest, then try again. "
            "Nothing was destroyed"
        )
    notices: dict[str, set[str]] = defaultdict(set)
    for item_id in destroy:
        d = decisions[item_id]
        if d.notice:
            notices[d.series].add(d.notice)
    run_id = str(ULID())
    certificate_id = str(ULID())
    series = _series_summary(app, plan)
    with catalog.session() as s:
        s.add(
            DispositionRun(
                id=run_id,
                report_id=report_id,
                started_at=now,
                started_by=app.actor.display,
                state=RUNNING,
                certificate_id=None,
                plan={
                    "plan": plan.as_json(),
                    "excluded": excluded,
                    "certificate_id": certificate_id,
                    "executed_at": _iso(now),
                    "approvers": list(view.approvals),
                    "notices": {k: sorted(v) for k, v in sorted(notices.items())},
                    "series": series,
                },
            )
        )
        s.flush()
        for seq, (kind, subject, detail) in enumerate(_steps(plan), start=1):
            s.add(
                DispositionStep(
                    run_id=run_id,
                    seq=seq,
                    kind=kind,
                    subject=subject,
                    detail=detail,
                    state="planned",
                )
            )
        audit.append(
            s,
            actor=app.actor.display,
            action="retention.dispose",
            subject=report_id,
            detail={
                "run": run_id,
                "certificate": certificate_id,
                "items": len(plan.items),
                "excluded": len(excluded),
                "series": {x["code"]: x["count"] for x in series},
                "files_to_delete": sum(1 for f in plan.files if f.action == "delete"),
                "files_to_compact": sum(1 for f in plan.files if f.action == "compact"),
                "records": len(plan.records),
                "exchanges_kept": len(plan.exchanges_kept),
            },
        )
        fence(s, generation, leases)
    log.info(
        "disposition planned",
        report=report_id,
        run=run_id,
        items=len(plan.items),
        excluded=len(excluded),
        files=len(plan.files),
    )
    return run_id


def _series_summary(app: App, plan: Plan) -> list[dict[str, Any]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for item in plan.items:
        groups[item.series].append(item.created_at or item.first_captured_at)
    out = []
    for code, dates in sorted(groups.items()):
        series = app.schedules.get(code)
        out.append(
            {
                "code": code,
                "title": series.title if series is not None else code,
                "authority": series.authority if series is not None else "",
                "count": len(dates),
                "earliest_created": min(dates),
                "latest_created": max(dates),
            }
        )
    return out


def _steps(plan: Plan) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """The journal: compactions, then deletions, then the catalog, then the certificate."""
    for f in plan.files:
        if f.action == "compact":
            yield COMPACT, f.key, {"file": asdict(f) | {"drop": list(f.drop)}}
    for f in plan.files:
        yield DELETE, f.key, {"file_id": f.file_id, "key": f.key, "kind": f.kind,
                              "whole": f.action == "delete"}  # fmt: skip
    yield SCRUB, None, {}
    yield SECURE, None, {}
    yield CERTIFY, None, {}


# -- reading a run back ------------------------------------------------------------------


def _result(catalog: Catalog, run_id: str, *, resumed: bool) -> DisposeResult:
    """What the run did so far, from its journal."""
    with catalog.reader() as s:
        run = s.get(DispositionRun, run_id)
        assert run is not None
        doc = dict(run.plan)
        plan = Plan.from_json(doc.get("plan", {}))
        cert = None
        if run.certificate_id:
            cert = s.get(Certificate, run.certificate_id)
        deleted: list[dict[str, Any]] = []
        compacted: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        notes: list[str] = []
        by_id = {f.file_id: f for f in plan.files}
        for step in s.scalars(
            select(DispositionStep)
            .where(DispositionStep.run_id == run_id)
            .order_by(DispositionStep.seq)
        ):
            d = step.detail
            notes.extend(d.get("notes") or [])
            if step.kind == COMPACT and step.state == "done":
                f = by_id[d["file"]["file_id"]]
                compacted.append(
                    {
                        "kind": f.kind,
                        "old_file_id": f.file_id,
                        "old_key": f.key,
                        "new_file_id": d["result"]["new_file_id"],
                        "new_key": d["result"]["new_key"],
                    }
                )
            elif step.kind == DELETE and step.state == "pending":
                pending.append(
                    {
                        "file_id": d["file_id"],
                        "key": d["key"],
                        "retain_until": d.get("pending_until"),
                        "why": d.get("why"),
                    }
                )
            elif step.kind == DELETE and step.state == "done" and d.get("whole"):
                deleted.append({"file_id": d["file_id"], "key": d["key"], "kind": d["kind"]})
        return DisposeResult(
            run_id=run.id,
            report_id=run.report_id,
            state=run.state,
            certificate_id=str(doc.get("certificate_id")),
            items=len(plan.items),
            series=[
                {"code": x["code"], "title": x["title"], "count": x["count"]}
                for x in doc.get("series", [])
            ],
            files_deleted=deleted,
            files_compacted=compacted,
            pending=pending,
            excluded=list(doc.get("excluded", [])),
            exchanges_kept=len(plan.exchanges_kept),
            certificate_json=cert.json_key if cert is not None else None,
            certificate_html=cert.html_key if cert is not None else None,
            certificate_sha256=cert.sha256 if cert is not None else None,
            resumed=resumed,
            notes=notes,
        )
