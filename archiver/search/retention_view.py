"""Retention seen from a search result or ``archiver show``: holds, decisions, stubs.

A :class:`RetentionView` is loaded once per command (:func:`archiver.evaluate.load_context`:
the schedules, rules, holds with their query scopes resolved, events and notices) at one
``now``, then asked only about the items shown (or, for filters, the candidates scanned):
decisions come from :func:`archiver.evaluate.evaluate` for those ids, never for the whole
catalog. An item whose series no loaded schedule defines gets no decision (its
:attr:`RetentionInfo.outcome` is None and the reason says why) instead of failing the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.catalog.db import Catalog
from archiver.catalog.models import Item
from archiver.config import Config
from archiver.evaluate import RetentionContext, evaluate, item_facts, load_context
from archiver.retention import Decision, Hold, ItemFacts
from archiver.search.model import HoldRef, RetentionInfo, SearchFilters
from archiver.series import Schedules

#: What :attr:`RetentionInfo.outcome` says of a destroyed item's stub.
DISPOSED = "disposed"


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


class RetentionView:
    """Retention decisions for chosen items at one moment (a search's :class:`RetentionLens`)."""

    def __init__(self, ctx: RetentionContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now
        self._by_id = {h.id: h for h in ctx.holds}

    @classmethod
    def load(
        cls, catalog: Catalog, config: Config, schedules: Schedules, now: datetime
    ) -> RetentionView:
        with catalog.reader() as s:
            return cls(load_context(s, config, schedules), now)

    def covering(self, item: ItemFacts) -> tuple[Hold, ...]:
        """The holds active now that cover ``item`` (as :func:`archiver.retention.decide`
        counts them), by id."""
        return tuple(
            h for h in sorted(self.ctx.holds, key=lambda h: h.id)
            if h.active(self.now) and h.covers(item)
        )  # fmt: skip

    def decisions(self, session: Session, facts: Sequence[ItemFacts]) -> dict[int, Decision]:
        """The decisions for the items whose series a loaded schedule defines."""
        known = [f.item_id for f in facts if f.series in self.ctx.schedules]
        return evaluate(session, self.ctx, self.now, known) if known else {}

    def keep(self, session: Session, ids: Sequence[int], filters: SearchFilters) -> set[int]:
        facts = list(item_facts(session, ids))  # disposed items: no facts, never held
        kept = set(ids)
        if filters.held is not None:
            held = {f.item_id for f in facts if self.covering(f)}
            kept = kept & held if filters.held else kept - held
        if filters.retention:
            decided = self.decisions(session, [f for f in facts if f.item_id in kept])
            wanted = set(filters.retention)
            kept = {i for i in kept if i in decided and decided[i].outcome.value in wanted}
        return kept

    def describe(self, session: Session, ids: Sequence[int]) -> dict[int, RetentionInfo]:
        rows = session.execute(
            select(
                Item.id, Item.series, Item.series_rule, Item.disposed_at, Item.certificate_id
            ).where(Item.id.in_(list(ids)))
        ).all()
        facts = {f.item_id: f for f in item_facts(session, ids)}
        decided = self.decisions(session, list(facts.values()))
        infos: dict[int, RetentionInfo] = {}
        for row in rows:
            if row.disposed_at is not None:
                infos[row.id] = RetentionInfo(
                    series=row.series,
                    rule=row.series_rule,
                    outcome=DISPOSED,
                    eligible_on=None,
                    action=None,
                    reason=(
                        f"{row.series}: disposed {_day(row.disposed_at)}; certificate of "
                        f"destruction {row.certificate_id or '(not recorded)'}"
                    ),
                    disposed_at=row.disposed_at,
                    certificate=row.certificate_id,
                )
                continue
            item = facts.get(row.id)
            holds = tuple(
                HoldRef(h.id, h.case, h.kind) for h in (self.covering(item) if item else ())
            )
            decision = decided.get(row.id)
            if decision is None:
                infos[row.id] = RetentionInfo(
                    series=row.series,
                    rule=row.series_rule,
                    outcome=None,
                    eligible_on=None,
                    action=None,
                    reason=(
                        f"{row.series}: no loaded retention schedule defines this series; "
                        "add it to [retention] schedules_dir or reassign the item"
                    ),
                    holds=holds,
                )
                continue
            infos[row.id] = RetentionInfo(
                series=decision.series,
                rule=row.series_rule,
                outcome=decision.outcome.value,
                eligible_on=decision.eligible_on,
                action=decision.action,
                reason=decision.reason,
                holds=holds,
            )
        return infos
