"""Disposition reports: what may go now, grouped for a records officer, and their approval.

A report is the first step of disposition (report → approval → execution). It evaluates
every item not yet disposed of with the pure retention rules (:mod:`archiver.evaluate`,
:mod:`archiver.retention`) at one moment and stores:

- one :class:`~archiver.catalog.models.DispositionReportItem` per ELIGIBLE item (what an
  execution may destroy or transfer, after re-checking it under the retention lock);
- a summary (JSON) the officer reads: eligible items grouped by series and creation month
  (in the City's time zone) with counts and sizes, the action (destroy or transfer), the
  notice status of each series (not required; satisfied, by which reference; or missing:
  how many items wait for a notice and from when destruction may proceed), the items a
  notice would release (AWAITING_NOTICE, listed but not part of the report), and how many
  items are kept, by outcome.

A report expires (``[retention] report_ttl``): eligibility changes with time, holds and
notices, so an execution works from a recent look. With ``[retention] require_approval``
a second officer, not the one who executes, must approve it. A transfer series' receipt
from the receiving archive is recorded on the report (:func:`record_receipt`); disposition
destroys transferred items only once it exists (:func:`transfer_receipt`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from ulid import ULID

from archiver import audit
from archiver.catalog.models import (
    DispositionApproval,
    DispositionReport,
    DispositionReportItem,
    Item,
    ItemMedia,
    ItemVersion,
    Media,
)
from archiver.config import Config
from archiver.errors import RetentionError
from archiver.evaluate import RetentionContext, evaluate
from archiver.retention import Decision, Notice, Outcome, Series

#: Items read from the catalog per query (well under every database's parameter limit).
BATCH = 500
#: What a report's ``status`` may be.
OPEN, DISPOSED, EXPIRED = "open", "disposed", "expired"
#: How to make a new report, for messages.
MAKE_REPORT = "make a new report: archiver retention report"


@dataclass(frozen=True)
class ReportView:
    """A stored report as the commands and disposition read it."""

    id: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    status: str
    item_ids: list[int]
    approvals: list[str]
    summary: dict[str, Any] = field(default_factory=dict)

    def expired(self, now: datetime) -> bool:
        return self.status == EXPIRED or (self.status == OPEN and now >= self.expires_at)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def person(actor: str) -> str:
    """The person behind an actor's display name: ``alice (via sudo as archiver)`` is alice.

    Approval compares people, not how they reached the archiver, so an officer cannot
    approve their own execution by running one command through sudo and the other not.
    """
    return actor.split(" (via sudo as ", 1)[0]


# --- making a report ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    item_id: int
    series: str
    created: datetime  # created_at, or first capture when the platform gave no date
    month: str  # YYYY-MM in the City's zone
    version_bytes: int
    media: frozenset[tuple[int, int]]  # (media id, stored record length) the item owns


def _batches(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def _rows(session: Session, ids: Iterable[int], ctx: RetentionContext) -> dict[int, _Row]:
    """Dates, months and stored sizes of ``ids`` (a few queries per batch)."""
    zone = ctx.policy.zone
    rows: dict[int, _Row] = {}
    for batch in _batches(sorted(set(ids))):
        version_bytes: dict[int, int] = {
            item_id: int(total or 0)
            for item_id, total in session.execute(
                select(ItemVersion.item_id, func.sum(ItemVersion.warc_length))
                .where(ItemVersion.item_id.in_(batch))
                .group_by(ItemVersion.item_id)
            ).all()
        }
        media: dict[int, set[tuple[int, int]]] = defaultdict(set)
        for item_id, media_id, length in session.execute(
            select(ItemVersion.item_id, Media.id, Media.warc_length)
            .join(ItemMedia, ItemMedia.version_id == ItemVersion.id)
            .join(Media, Media.id == ItemMedia.media_id)
            .where(ItemVersion.item_id.in_(batch))
            .distinct()
        ).all():
            media[item_id].add((media_id, int(length)))
        for item_id, series, created_at, captured_at in session.execute(
            select(Item.id, Item.series, Item.created_at, Item.first_captured_at).where(
                Item.id.in_(batch)
            )
        ).all():
            created = created_at or captured_at
            rows[item_id] = _Row(
                item_id=item_id,
                series=series,
                created=created,
                month=created.astimezone(zone).strftime("%Y-%m"),
                version_bytes=version_bytes.get(item_id, 0),
                media=frozenset(media.get(item_id, ())),
            )
    return rows


def _size(rows: Iterable[_Row]) -> int:
    """Stored bytes of the items' records: versions, plus each owned media record once."""
    total, media = 0, set[tuple[int, int]]()
    for row in rows:
        total += row.version_bytes
        media |= row.media
    return total + sum(length for _, length in media)


def _group(
    decisions: Sequence[Decision], rows: dict[int, _Row]
) -> dict[tuple[str, str], list[Decision]]:
    groups: dict[tuple[str, str], list[Decision]] = defaultdict(list)
    for d in decisions:
        groups[(d.series, rows[d.item_id].month)].append(d)
    return dict(sorted(groups.items()))


def _dates(decisions: Sequence[Decision], rows: dict[int, _Row]) -> dict[str, Any]:
    created = [rows[d.item_id].created for d in decisions]
    eligible = [d.eligible_on for d in decisions if d.eligible_on is not None]
    return {
        "earliest_created": _iso(min(created)),
        "latest_created": _iso(max(created)),
        "earliest_eligible": _iso(min(eligible)) if eligible else None,
        "latest_eligible": _iso(max(eligible)) if eligible else None,
    }


def _notice_status(
    series: Series,
    eligible: Sequence[Decision],
    awaiting: Sequence[Decision],
    notices: Sequence[Notice],
    now: datetime,
) -> dict[str, Any]:
    """Whether the series needs notice before destruction and where that stands."""
    rule = series.notice
    status: dict[str, Any] = {"required": rule.required, "to": rule.to, "days": rule.days}
    if not rule.required:
        status["status"] = "not required"
        return status
    status["satisfied_by"] = sorted({d.notice for d in eligible if d.notice})
    if not awaiting:
        status["status"] = "satisfied"
        return status
    status["status"] = "partly satisfied" if eligible else "missing"
    # A "sent" notice recorded but whose days have not run yet releases the items it
    # covers (eligible on or before the day it was sent) when they have.
    pending = [
        n
        for n in notices
        if n.series == series.code and n.kind == "sent" and n.on + timedelta(rule.days) > now
    ]
    releases: list[datetime | None] = []
    for d in awaiting:
        covering = [
            n.on + timedelta(rule.days)
            for n in pending
            if d.eligible_on is not None and n.on >= d.eligible_on
        ]
        releases.append(min(covering) if covering else None)
    latest = max((d.eligible_on for d in awaiting if d.eligible_on is not None), default=now)
    proceed_from = (
        max(r for r in releases if r is not None)
        if releases and all(r is not None for r in releases)
        else None
    )
    if proceed_from is not None:
        refs = ", ".join(sorted({n.reference for n in pending}))
        what = (
            f"the notice recorded ({refs}) covers them: destruction may proceed from "
            f"{proceed_from.astimezone(UTC):%Y-%m-%d %H:%M} UTC; make a new report then"
        )
    else:
        what = (
            f"send the {rule.to} written notice listing these records (dated on or after "
            f"{latest.astimezone(UTC):%Y-%m-%d}) and record it with `archiver retention "
            f"notice record`: destruction may proceed {rule.days} days after the notice, "
            "or at once when the notice is waived and the waiver is recorded"
        )
    status["awaiting"] = {
        "items": len(awaiting),
        "earliest_eligible": _iso(
            min((d.eligible_on for d in awaiting if d.eligible_on), default=None)
        ),
        "latest_eligible": _iso(latest),
        "pending_notices": [
            {
                "reference": n.reference,
                "on": _iso(n.on),
                "effective_at": _iso(n.on + timedelta(rule.days)),
                "covers": sum(1 for d in awaiting if d.eligible_on and n.on >= d.eligible_on),
            }
            for n in sorted(pending, key=lambda n: (n.on, n.reference))
        ],
        # When every awaiting item is released by a notice already recorded (else None).
        "proceed_from": _iso(proceed_from),
        "if_sent_now": _iso(now + timedelta(rule.days)),
        "what_to_do": what,
    }
    return status


@dataclass(frozen=True)
class Computed:
    """A report before it is stored: the eligible decisions and the summary."""

    now: datetime
    series: str | None
    eligible: list[Decision]
    summary: dict[str, Any]


def compute_report(
    session: Session, ctx: RetentionContext, now: datetime, *, series: str | None = None
) -> Computed:
    """Evaluate every item not disposed of (of ``series`` only, when given): read-only, so
    a command can run it in a reader session that never blocks captures."""
    if series is not None and series not in ctx.schedules:
        known = ", ".join(sorted(ctx.schedules))
        raise RetentionError(
            f"no records series {series!r} in the retention schedules; known series: {known}"
        )
    scope: Iterable[int] | None = None
    if series is not None:
        scope = session.scalars(
            select(Item.id).where(Item.series == series, Item.disposed_at.is_(None))
        ).all()
    decisions = list(evaluate(session, ctx, now, scope).values())
    eligible = [d for d in decisions if d.outcome is Outcome.ELIGIBLE]
    awaiting = [d for d in decisions if d.outcome is Outcome.AWAITING_NOTICE]
    rows = _rows(session, (d.item_id for d in (*eligible, *awaiting)), ctx)
    kept: dict[str, int] = defaultdict(int)
    for d in decisions:
        if d.outcome is not Outcome.ELIGIBLE:
            kept[d.outcome.value] += 1

    groups = []
    for (code, month), members in _group(eligible, rows).items():
        groups.append(
            {
                "series": code,
                "month": month,
                "action": members[0].action,
                "items": len(members),
                "bytes": _size(rows[d.item_id] for d in members),
                "notice": sorted({d.notice for d in members if d.notice}),
                **_dates(members, rows),
            }
        )
    waiting = []
    for (code, month), members in _group(awaiting, rows).items():
        waiting.append(
            {
                "series": code,
                "month": month,
                "action": members[0].action,
                "items": len(members),
                "bytes": _size(rows[d.item_id] for d in members),
                "item_ids": sorted(d.item_id for d in members),
                **_dates(members, rows),
            }
        )
    by_series: dict[str, dict[str, Any]] = {}
    for code in sorted({d.series for d in (*eligible, *awaiting)}):
        s = ctx.schedules[code]
        mine = [d for d in eligible if d.series == code]
        theirs = [d for d in awaiting if d.series == code]
        by_series[code] = {
            "title": s.title,
            "authority": s.authority,
            "action": s.disposition,
            "example": s.example,
            "items": len(mine),
            "bytes": _size(rows[d.item_id] for d in mine),
            "awaiting_notice": len(theirs),
            "notice": _notice_status(s, mine, theirs, ctx.notices, now),
        }
    summary: dict[str, Any] = {
        "as_of": _iso(now),
        "zone": str(ctx.policy.zone),
        "scope": {"series": series},
        "totals": {
            "eligible": {"items": len(eligible), "bytes": _size(rows[d.item_id] for d in eligible)},
            "awaiting_notice": {
                "items": len(awaiting),
                "bytes": _size(rows[d.item_id] for d in awaiting),
            },
            "evaluated": len(decisions),
        },
        "groups": groups,
        "awaiting_notice": waiting,
        "series": by_series,
        "kept": dict(sorted(kept.items())),
        "transfers": [],
        "transfer_receipt": None,
    }
    return Computed(now=now, series=series, eligible=eligible, summary=summary)


def store_report(session: Session, computed: Computed, actor: str, ttl: timedelta) -> str:
    """Store a computed report and its eligible items; audited ("retention.report")."""
    now, eligible, summary = computed.now, computed.eligible, computed.summary
    report_id = str(ULID.from_datetime(now))
    session.add(
        DispositionReport(
            id=report_id,
            created_at=now,
            created_by=actor,
            expires_at=now + ttl,
            status=OPEN,
            summary=summary,
        )
    )
    session.flush()
    session.add_all(
        DispositionReportItem(
            report_id=report_id,
            item_id=d.item_id,
            series=d.series,
            eligible_on=d.eligible_on,
            reason=d.reason,
        )
        for d in eligible
    )
    audit.append(
        session,
        actor=actor,
        action="retention.report",
        subject=report_id,
        detail={
            "eligible": len(eligible),
            "awaiting_notice": summary["totals"]["awaiting_notice"]["items"],
            "kept": summary["kept"],
            "series": computed.series,
            "expires_at": _iso(now + ttl),
        },
    )
    return report_id


def make_report(
    session: Session,
    ctx: RetentionContext,
    now: datetime,
    actor: str,
    ttl: timedelta,
    *,
    series: str | None = None,
) -> str:
    """Evaluate every item not disposed of (of ``series`` only, when given) and store a
    report of what is eligible now; returns its id (a ULID). Audited ("retention.report").
    """
    return store_report(session, compute_report(session, ctx, now, series=series), actor, ttl)


# --- reading and checking ------------------------------------------------------------------


def _get(session: Session, report_id: str) -> DispositionReport:
    row = session.get(DispositionReport, report_id)
    if row is None:
        raise RetentionError(
            f"no disposition report {report_id!r}; list the reports with `archiver retention "
            "reports`, or make one with `archiver retention report`"
        )
    return row


def load_report(session: Session, report_id: str) -> ReportView:
    """The stored report ``report_id``; RetentionError (exit 7) when there is none."""
    row = _get(session, report_id)
    item_ids = session.scalars(
        select(DispositionReportItem.item_id)
        .where(DispositionReportItem.report_id == report_id)
        .order_by(DispositionReportItem.item_id)
    ).all()
    approvals = session.scalars(
        select(DispositionApproval.approved_by)
        .where(DispositionApproval.report_id == report_id)
        .order_by(DispositionApproval.approved_at, DispositionApproval.approved_by)
    ).all()
    return ReportView(
        id=row.id,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        status=row.status,
        item_ids=list(item_ids),
        approvals=list(approvals),
        summary=dict(row.summary or {}),
    )


def list_reports(session: Session) -> list[ReportView]:
    """Every report, newest first (without their item lists, which can be long)."""
    counts: dict[str, int] = {
        report_id: count
        for report_id, count in session.execute(
            select(DispositionReportItem.report_id, func.count()).group_by(
                DispositionReportItem.report_id
            )
        ).all()
    }
    approvals: dict[str, list[str]] = defaultdict(list)
    for report_id, approver in session.execute(
        select(DispositionApproval.report_id, DispositionApproval.approved_by).order_by(
            DispositionApproval.approved_at
        )
    ).all():
        approvals[report_id].append(approver)
    views = []
    for row in session.scalars(select(DispositionReport).order_by(DispositionReport.id.desc())):
        summary = dict(row.summary or {})
        summary["report_items"] = counts.get(row.id, 0)
        views.append(
            ReportView(
                id=row.id,
                created_at=row.created_at,
                created_by=row.created_by,
                expires_at=row.expires_at,
                status=row.status,
                item_ids=[],
                approvals=approvals.get(row.id, []),
                summary=summary,
            )
        )
    return views


def refuse_closed(row: DispositionReport, now: datetime, doing: str) -> None:
    if row.status == DISPOSED:
        raise RetentionError(
            f"disposition report {row.id} was already carried out; nothing is left to {doing} "
            f"(for items that became eligible since, {MAKE_REPORT})"
        )
    if row.status == EXPIRED or now >= row.expires_at:
        raise RetentionError(
            f"disposition report {row.id} expired at {row.expires_at.isoformat()}: "
            f"eligibility changes with time, holds and notices; {MAKE_REPORT}"
        )


def check_executable(
    session: Session, report_id: str, now: datetime, config: Config, executor: str
) -> None:
    """Refuse (RetentionError, exit 7, saying what to do) to carry out a report that is
    unknown, expired, already carried out, or lacks a required second officer's approval."""
    row = _get(session, report_id)
    refuse_closed(row, now, "dispose of")
    if not config.retention.require_approval:
        return
    approvers = session.scalars(
        select(DispositionApproval.approved_by).where(DispositionApproval.report_id == report_id)
    ).all()
    others = [a for a in approvers if person(a) != person(executor)]
    if not others:
        mine = " (your own approval does not count)" if approvers else ""
        raise RetentionError(
            f"disposition report {report_id} needs the approval of an officer other than "
            f"{person(executor)}{mine} ([retention] require_approval = true): another officer "
            f"runs `archiver retention approve {report_id}`"
        )


def approve(
    session: Session, report_id: str, approver: str, now: datetime, note: str | None
) -> None:
    """Record ``approver``'s approval of an open report; audited ("retention.approve")."""
    row = _get(session, report_id)
    refuse_closed(row, now, "approve")
    mine = [
        a
        for a in session.scalars(
            select(DispositionApproval.approved_by).where(
                DispositionApproval.report_id == report_id
            )
        ).all()
        if person(a) == person(approver)
    ]
    if mine:
        raise RetentionError(
            f"{person(approver)} already approved disposition report {report_id}; "
            "a second approval must come from another officer"
        )
    session.add(
        DispositionApproval(report_id=report_id, approved_by=approver, approved_at=now, note=note)
    )
    audit.append(
        session,
        actor=approver,
        action="retention.approve",
        subject=report_id,
        detail={"note": note, "report_created_by": row.created_by},
    )


# --- transfers and receipts -------------------------------------------------------------------


def record_transfer(session: Session, report_id: str, transfer: dict[str, Any]) -> None:
    """Note on the report that a transfer package was made (see :mod:`.transfer`)."""
    row = _get(session, report_id)
    summary = dict(row.summary or {})
    summary["transfers"] = [*summary.get("transfers", []), transfer]
    row.summary = summary  # a new dict: the JSON column does not track changes in place


def record_receipt(
    session: Session,
    report_id: str,
    *,
    reference: str,
    received_on: datetime,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Record the receiving archive's receipt of the report's latest transfer package.

    Refused when no package was made for the report, when a receipt is already recorded for
    it, or when ``received_on`` is before the package was made. A report that expired (the
    receiving archive took its time) still takes its receipt: a later report's disposition
    counts it (:func:`transfer_receipt`). Audited ("retention.receipt").
    """
    row = _get(session, report_id)
    summary = dict(row.summary or {})
    transfers = summary.get("transfers") or []
    if not transfers:
        raise RetentionError(
            f"no transfer package was made for disposition report {report_id}; make one with "
            f"`archiver retention transfer {report_id} --out DIR`, deliver it, then record the "
            "receiving archive's receipt"
        )
    if summary.get("transfer_receipt"):
        existing = summary["transfer_receipt"]
        raise RetentionError(
            f"a receipt ({existing.get('reference')}) is already recorded for disposition "
            f"report {report_id}"
        )
    bag = transfers[-1]
    made = datetime.fromisoformat(bag["made_at"])
    # A day's slack: the receipt names a day in the receiving archive's time zone.
    if received_on < made - timedelta(days=1):
        raise RetentionError(
            f"the receipt is dated {received_on:%Y-%m-%d}, before the transfer package "
            f"{bag.get('name')} was made ({made:%Y-%m-%d}); check --received-on"
        )
    receipt: dict[str, Any] = {
        "reference": reference,
        "received_on": _iso(received_on),
        "recorded_at": _iso(now),
        "recorded_by": actor,
        "report": report_id,
        "bag": {k: v for k, v in bag.items() if k not in ("items", "item_versions")},
        "items": list(bag.get("items", [])),
        "item_versions": dict(bag.get("item_versions", {})),
    }
    summary["transfer_receipt"] = receipt
    row.summary = summary
    audit.append(
        session,
        actor=actor,
        action="retention.receipt",
        subject=report_id,
        detail={
            "reference": reference,
            "received_on": _iso(received_on),
            "bag": bag.get("name"),
            "payload_oxum": bag.get("payload_oxum"),
            "tagmanifest_sha256": bag.get("tagmanifest_sha256"),
            "items": len(receipt["items"]),
        },
    )
    return receipt


def transfer_receipt(session: Session, report_id: str) -> dict[str, Any] | None:
    """What the receiving archive confirmed holding of report ``report_id``'s items, or None.

    ``{"reference", "received_on", "recorded_at", "recorded_by", "report", "bag": {...},
    "items": [ids], "references": [...]}``: ``items`` are the report's items that a recorded
    receipt covers, this report's or an earlier one's (a receipt that arrived after its
    report expired still counts for the next report), and that have had no new version
    captured since their package was made. Only those items of a transfer series may be
    destroyed; None when there are none.
    """
    row = _get(session, report_id)
    wanted = set(
        session.scalars(
            select(DispositionReportItem.item_id).where(
                DispositionReportItem.report_id == report_id
            )
        ).all()
    )
    own = (row.summary or {}).get("transfer_receipt")
    others = []
    for summary in session.scalars(
        select(DispositionReport.summary).where(DispositionReport.id != report_id)
    ):
        found = (summary or {}).get("transfer_receipt")
        if isinstance(found, dict):
            others.append(found)
    # This report's own receipt first, then the most recent.
    others.sort(key=lambda r: str(r.get("recorded_at") or ""), reverse=True)
    receipts = ([own] if isinstance(own, dict) else []) + others
    versions: dict[int, int] = {}
    for batch in _batches(sorted(wanted)):
        versions.update(
            (item_id, count)
            for item_id, count in session.execute(
                select(Item.id, Item.versions).where(Item.id.in_(batch))
            ).all()
        )
    covered: dict[int, dict[str, Any]] = {}
    for receipt in receipts:
        bagged = receipt.get("item_versions") or {}
        for item_id in receipt.get("items", []):
            item_id = int(item_id)
            if item_id not in wanted or item_id in covered:
                continue
            # A version captured after the package was made is not in the receiving archive.
            if str(item_id) in bagged and int(bagged[str(item_id)]) < versions.get(item_id, 0):
                continue
            covered[item_id] = receipt
    if not covered:
        return None
    mine = [r for r in covered.values() if r is own]
    first = mine[0] if mine else covered[min(covered)]
    result = {k: v for k, v in first.items() if k != "item_versions"}
    result["items"] = sorted(covered)
    result["references"] = sorted({str(r.get("reference")) for r in covered.values()})
    return result
