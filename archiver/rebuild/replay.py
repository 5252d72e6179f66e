"""Replaying the store's control facts into a rebuilt catalog, in the order they happened.

The WARC and Parquet scan rebuilds accounts, items and versions; what people decided about
those records (holds, events, notices, reassignments, destructions) is in the control facts
(:mod:`archiver.control`), replayed here oldest first:

- ``hold.created`` creates the hold with the fact's id (it is cited by that id), its scope
  and reason, ``created_by`` = who recorded the fact, ``created_at`` = when;
  ``hold.released`` and ``hold.closed`` set its release and its request's outcome;
- ``event.recorded`` and ``notice.recorded`` create the event or notice with the fact's id;
- ``assignment.changed`` moves items (by account and platform item id) to another series
  under a rule; a later fact wins. An item without any assignment fact keeps the series of
  the partition its records are stored in, with the rule :data:`PARTITION_RULE`;
- ``disposition.certificate`` registers the certificate and turns every item it lists into
  a stub: the item's row with only what the certificate records (series, dates, content
  hash, disposal time, certificate), no text and no versions. The item's records are gone
  from the store, so the certificate is the only evidence it existed; when some are still
  there (a deletion waiting for a COMPLIANCE lock), the item rebuilt from them is cut back
  to the same stub, so destroyed text never comes back. The certificate row points at its
  disposition run, which points at its report: both are working state the store does not
  keep, so minimal rows marked as rebuilt (run state ``done``, plan ``{"rebuilt": true}``)
  stand in for them.

A fact is written before the catalog commit it describes, so a crash in between leaves a
fact for something the live catalog never committed. Replaying it errs on the safe side (a
hold that was about to be placed is placed); a fact naming an item the store holds no
record of is counted and listed, never fatal; one naming a hold no fact created is a
problem.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from archiver.catalog.models import (
    Account,
    Certificate,
    DispositionReport,
    DispositionRun,
    Item,
    ItemMedia,
    ItemVersion,
    RetentionEvent,
    RetentionNotice,
)
from archiver.catalog.models import Hold as HoldRow
from archiver.config import AccountSettings
from archiver.control import Fact
from archiver.rebuild import bodies
from archiver.rebuild.write import PARTITION_RULE, account_row

ItemKey = tuple[str, str]  # (account, platform item id)
#: ``items.kind`` of a stub whose certificate does not say what the item was.
UNKNOWN_KIND = "unknown"
#: ``items.state`` of a stub whose certificate does not say.
STUB_STATE = "present"
#: Marks the stand-in rows of a certificate's disposition run and report.
REBUILT: dict[str, Any] = {"rebuilt": True}
_BATCH = 500


@dataclass(slots=True)
class ReplayReport:
    """What the replay of the control facts recreated, and what it could not place."""

    facts: int = 0
    holds: int = 0
    holds_released: int = 0
    holds_closed: int = 0
    events: int = 0
    notices: int = 0
    #: Items (stubs included) whose series and rule an ``assignment.changed`` fact set.
    reassigned: int = 0
    certificates: int = 0
    stubs: int = 0
    #: Items named by a fact but not in the rebuilt catalog: "account item (fact key)".
    unmatched: list[str] = field(default_factory=list)
    #: Facts replaced by a later fact about the same hold, event, notice or certificate id.
    superseded: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "facts": self.facts,
            "holds": self.holds,
            "holds_released": self.holds_released,
            "holds_closed": self.holds_closed,
            "events": self.events,
            "notices": self.notices,
            "reassigned": self.reassigned,
            "certificates": self.certificates,
            "stubs": self.stubs,
            "unmatched": len(self.unmatched),
        }


class Replay:
    """Applies facts, oldest first, to a rebuilt catalog's session; :meth:`finish` ends it."""

    def __init__(
        self, session: Session, *, accounts: Mapping[str, AccountSettings], now: datetime
    ) -> None:
        # The scan's rows are written; forgetting their objects keeps memory flat and lets
        # the bulk updates below be the only truth about them.
        session.flush()
        session.expunge_all()
        self.session = session
        self.accounts = accounts
        self.now = now
        self.report = ReplayReport()
        self.holds: dict[int, HoldRow] = {}
        self.events: dict[int, RetentionEvent] = {}
        self.notices: dict[int, RetentionNotice] = {}
        self.certificates: dict[str, Certificate] = {}
        self.series: dict[ItemKey, str] = {}
        self.rules: dict[ItemKey, str] = {}
        self.named_by: dict[ItemKey, str] = {}
        self.destroyed: dict[ItemKey, tuple[bodies.CertificateIssued, bodies.Destroyed]] = {}

    def apply(self, fact: Fact, body: bodies.Body) -> None:
        """Apply one fact (facts must come oldest first)."""
        self.report.facts += 1
        if isinstance(body, bodies.HoldCreated):
            self._hold_created(fact, body)
        elif isinstance(body, bodies.HoldReleased):
            self._hold_released(fact, body)
        elif isinstance(body, bodies.HoldClosed):
            self._hold_closed(fact, body)
        elif isinstance(body, bodies.EventRecorded):
            self._event(fact, body)
        elif isinstance(body, bodies.NoticeRecorded):
            self._notice(fact, body)
        elif isinstance(body, bodies.AssignmentChanged):
            for change in body.changes:
                key = (change.account, change.item)
                self.series[key], self.rules[key] = change.to, change.rule
                self.named_by[key] = fact.key
        else:
            self._certificate(fact, body)

    # -- holds, events, notices ----------------------------------------------------------

    def _hold_created(self, fact: Fact, b: bodies.HoldCreated) -> None:
        row = self.holds.get(b.hold)
        if row is None:
            row = self.holds[b.hold] = HoldRow(id=b.hold)
            self.session.add(row)
        else:
            self._superseded(fact, f"hold {b.hold}")
        row.case_id, row.kind, row.reason = b.case, b.kind, b.reason
        row.accounts = list(b.accounts)
        row.created_from, row.created_to, row.query = b.created_from, b.created_to, b.query
        row.created_at, row.created_by = fact.at, fact.actor
        row.released_at = row.released_by = row.release_reason = None
        row.granted_on = row.denied_on = None

    def _hold(self, fact: Fact, hold: int) -> HoldRow | None:
        row = self.holds.get(hold)
        if row is None:
            self.report.problems.append(
                f"control fact {fact.key} ({fact.kind}) names hold {hold}, which no "
                "hold.created fact in the store creates; it was not applied"
            )
        return row

    def _hold_released(self, fact: Fact, b: bodies.HoldReleased) -> None:
        row = self._hold(fact, b.hold)
        if row is not None:
            row.released_at, row.released_by, row.release_reason = fact.at, fact.actor, b.reason

    def _hold_closed(self, fact: Fact, b: bodies.HoldClosed) -> None:
        row = self._hold(fact, b.hold)
        if row is not None:
            row.granted_on = b.granted_on or row.granted_on
            row.denied_on = b.denied_on or row.denied_on

    def _event(self, fact: Fact, b: bodies.EventRecorded) -> None:
        row = self.events.get(b.event)
        if row is None:
            row = self.events[b.event] = RetentionEvent(id=b.event)
            self.session.add(row)
        else:
            self._superseded(fact, f"event {b.event}")
        row.kind, row.account_id, row.occurred_at, row.note = (
            b.kind,
            b.account,
            b.occurred_at,
            b.note,
        )
        row.recorded_at, row.recorded_by = fact.at, fact.actor

    def _notice(self, fact: Fact, b: bodies.NoticeRecorded) -> None:
        row = self.notices.get(b.notice)
        if row is None:
            row = self.notices[b.notice] = RetentionNotice(id=b.notice)
            self.session.add(row)
        else:
            self._superseded(fact, f"notice {b.notice}")
        row.series, row.kind, row.on, row.reference, row.note = (
            b.series,
            b.kind,
            b.on,
            b.reference,
            b.note,
        )
        row.recorded_at, row.recorded_by = fact.at, fact.actor

    def _superseded(self, fact: Fact, what: str) -> None:
        self.report.superseded.append(f"{fact.key}: {what} recorded again; the later fact was kept")

    # -- certificates ----------------------------------------------------------------------

    def _certificate(self, fact: Fact, b: bodies.CertificateIssued) -> None:
        s = self.session
        if s.get(DispositionReport, b.report) is None:
            s.add(
                DispositionReport(
                    id=b.report,
                    created_at=fact.at,
                    created_by=fact.actor,
                    expires_at=fact.at,
                    status="disposed",
                    summary=dict(REBUILT),
                )
            )
            s.flush()
        if s.get(DispositionRun, b.run) is None:
            s.add(
                DispositionRun(
                    id=b.run,
                    report_id=b.report,
                    started_at=fact.at,
                    started_by=fact.actor,
                    finished_at=fact.at,
                    state="done",
                    plan=dict(REBUILT),
                    certificate_id=b.certificate,
                )
            )
            s.flush()
        row = self.certificates.get(b.certificate)
        if row is None:
            row = self.certificates[b.certificate] = Certificate(id=b.certificate)
            s.add(row)
        else:
            self._superseded(fact, f"certificate {b.certificate}")
        row.run_id, row.created_at = b.run, fact.at
        row.json_key, row.html_key, row.sha256 = b.json_key, b.html_key, b.sha256
        row.summary = {
            **REBUILT,
            "report": b.report,
            "disposed_at": b.disposed_at.isoformat(),
            "items": len(b.items),
        }
        s.flush()
        for entry in b.items:
            key = (entry.account, entry.item)
            self.destroyed[key] = (b, entry)
            self.series[key] = entry.series
            self.named_by[key] = fact.key

    # -- the end ---------------------------------------------------------------------------

    def finish(self) -> ReplayReport:
        """Write the stubs and the assignments; count what the catalog now holds."""
        r = self.report
        r.holds = len(self.holds)
        r.holds_released = sum(h.released_at is not None for h in self.holds.values())
        r.holds_closed = sum(
            h.granted_on is not None or h.denied_on is not None for h in self.holds.values()
        )
        r.events, r.notices = len(self.events), len(self.notices)
        r.certificates = len(self.certificates)
        self.session.flush()
        self._stubs()
        self._assign()
        self.session.flush()
        return r

    def _ids(self, account: str, items: Iterable[str]) -> dict[str, int]:
        """The rebuilt ``items.id`` of each of ``items`` of ``account`` that exists."""
        found: dict[str, int] = {}
        listed = list(items)
        for start in range(0, len(listed), _BATCH):
            chunk = listed[start : start + _BATCH]
            rows = self.session.execute(
                select(Item.platform_item_id, Item.id).where(
                    Item.account_id == account, Item.platform_item_id.in_(chunk)
                )
            )
            found.update((item, item_id) for item, item_id in rows)
        return found

    def _stubs(self) -> None:
        s = self.session
        for account, keys in _by_account(self.destroyed).items():
            if s.get(Account, account) is None:
                # Every file of the account was destroyed and no configuration names it.
                s.add(account_row(account, None, self.accounts.get(account), self.now))
                s.flush()
            existing = self._ids(account, keys)
            for item in keys:
                key = (account, item)
                certificate, entry = self.destroyed[key]
                values = {
                    "series": self.series[key],
                    "series_rule": self.rules.get(key, PARTITION_RULE),
                    "created_at": entry.created_at,
                    "first_captured_at": entry.first_captured_at,
                    "content_sha256": entry.content_sha256,
                    "text": None,
                    "versions": 0,
                    "disposed_at": certificate.disposed_at,
                    "certificate_id": certificate.certificate,
                }
                if item in existing:
                    self._cut_back(existing[item], values)
                else:
                    s.add(
                        Item(
                            account_id=account,
                            platform_item_id=item,
                            kind=entry.kind or UNKNOWN_KIND,
                            partition=entry.partition or "",
                            last_seen_at=entry.first_captured_at,
                            state=entry.state or STUB_STATE,
                            **values,
                        )
                    )
                self.report.stubs += 1
                self.report.reassigned += key in self.rules
            s.flush()
            s.expunge_all()  # a certificate may list many thousands of items
            self._link_children(account, keys)

    def _cut_back(self, item_id: int, values: dict[str, Any]) -> None:
        """An item rebuilt from records a certificate says were destroyed becomes its stub."""
        s = self.session
        versions = select(ItemVersion.id).where(ItemVersion.item_id == item_id)
        s.execute(delete(ItemMedia).where(ItemMedia.version_id.in_(versions)))
        s.execute(delete(ItemVersion).where(ItemVersion.item_id == item_id))
        # What the disposition clears of a stub besides its text: who wrote it, where.
        cleared = {"author": None, "permalink": None, "edited_at": None}
        s.execute(update(Item).where(Item.id == item_id).values(**values, **cleared))

    def _link_children(self, account: str, parents: list[str]) -> None:
        """Point replies at the stubs of their destroyed parents, as the live rows do."""
        ids = self._ids(account, parents)
        for start in range(0, len(parents), _BATCH):
            chunk = parents[start : start + _BATCH]
            children = self.session.execute(
                select(Item.id, Item.platform_parent_id).where(
                    Item.account_id == account,
                    Item.parent_id.is_(None),
                    Item.platform_parent_id.in_(chunk),
                )
            )
            links = [{"id": i, "parent_id": ids[p]} for i, p in children if p in ids]
            if links:
                self.session.execute(update(Item), links)

    def _assign(self) -> None:
        """Each reassigned item's last series and rule; items not found are listed."""
        moved = {k: v for k, v in self.series.items() if k not in self.destroyed}
        for account, keys in _by_account(moved).items():
            existing = self._ids(account, keys)
            rows = []
            for item in keys:
                key = (account, item)
                if item in existing:
                    rows.append(
                        {"id": existing[item], "series": moved[key], "series_rule": self.rules[key]}
                    )
                else:
                    self.report.unmatched.append(f"{account} {item} ({self.named_by[key]})")
            for start in range(0, len(rows), _BATCH):
                self.session.execute(update(Item), rows[start : start + _BATCH])
            self.report.reassigned += len(rows)


def _by_account(keys: Iterable[ItemKey]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for account, item in keys:
        grouped[account].append(item)
    return dict(sorted(grouped.items()))
