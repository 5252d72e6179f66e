"""Retention decisions for catalogued items: the catalog's facts fed to the pure function.

:func:`archiver.retention.decide` knows nothing of databases. This module reads what it
needs (items, holds with their query scopes resolved, events, notices) and calls it, so a
disposition report, the execution that re-checks it, ``archiver show`` and ``archiver
search`` all reach the same decision for the same item at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.catalog.models import Hold as HoldRow
from archiver.catalog.models import Item, ItemVersion, RetentionEvent, RetentionNotice
from archiver.config import Config
from archiver.errors import RetentionError
from archiver.retention import (
    Decision,
    Event,
    Hold,
    ItemFacts,
    Notice,
    Policy,
    Rule,
    decide,
)
from archiver.search import index, parse
from archiver.series import Schedules

_BATCH = 2000


@dataclass(frozen=True)
class RetentionContext:
    """Everything besides the items and the clock that retention decisions depend on."""

    schedules: Schedules
    policy: Policy
    rules: tuple[Rule, ...]
    holds: tuple[Hold, ...]
    events: tuple[Event, ...]
    notices: tuple[Notice, ...]


def policy_of(config: Config) -> Policy:
    return Policy(zone=config.archiver.zone, fiscal_year_start=config.retention.fiscal_year_start)


def rules_of(config: Config) -> tuple[Rule, ...]:
    return tuple(
        Rule(
            name=r.name,
            series=r.series,
            accounts=frozenset(r.accounts),
            kinds=frozenset(r.kinds),
            states=frozenset(r.states),
        )
        for r in config.retention.rules
    )


def matching_item_ids(session: Session, query: str) -> frozenset[int]:
    """Every item any of whose versions matches ``query`` (the search grammar)."""
    hits = index.backend(session).hits(parse(query)).subquery()
    stmt = select(ItemVersion.item_id).join(hits, hits.c.version_id == ItemVersion.id).distinct()
    return frozenset(session.scalars(stmt))


def hold_rows_to_holds(session: Session, rows: Iterable[HoldRow]) -> list[Hold]:
    """Catalog hold rows as the pure function's holds, query scopes resolved now.

    A query is resolved at every evaluation, so items captured after the hold was placed
    are covered as soon as they are indexed.
    """
    holds = []
    for row in rows:
        holds.append(
            Hold(
                id=row.id,
                case=row.case_id,
                kind="prr" if row.kind == "prr" else "legal",
                accounts=frozenset(row.accounts or ()),
                start=row.created_from,
                end=row.created_to,
                item_ids=matching_item_ids(session, row.query) if row.query else None,
                created_at=row.created_at,
                released_at=row.released_at,
                granted_on=row.granted_on,
                denied_on=row.denied_on,
            )
        )
    return holds


def load_context(session: Session, config: Config, schedules: Schedules) -> RetentionContext:
    """Read holds, events and notices; resolve every hold's query."""
    holds = hold_rows_to_holds(session, session.scalars(select(HoldRow).order_by(HoldRow.id)))
    events = tuple(
        Event(kind=e.kind, account=e.account_id, occurred_at=e.occurred_at)
        for e in session.scalars(select(RetentionEvent).order_by(RetentionEvent.id))
    )
    notices = tuple(
        Notice(
            series=n.series,
            kind="waiver" if n.kind == "waiver" else "sent",
            on=n.on,
            reference=n.reference,
        )
        for n in session.scalars(select(RetentionNotice).order_by(RetentionNotice.id))
    )
    return RetentionContext(
        schedules=schedules,
        policy=policy_of(config),
        rules=rules_of(config),
        holds=tuple(holds),
        events=events,
        notices=notices,
    )


def _facts(row: Item) -> ItemFacts:
    return ItemFacts(
        item_id=row.id,
        account=row.account_id,
        kind=row.kind,
        state=row.state,
        created_at=row.created_at,
        captured_at=row.first_captured_at,
        series=row.series,
    )


def item_facts(session: Session, item_ids: Iterable[int] | None = None) -> Iterator[ItemFacts]:
    """The not-disposed items (all of them, or those of ``item_ids``), in batches."""
    if item_ids is None:
        last = 0
        while True:
            rows = session.scalars(
                select(Item)
                .where(Item.id > last, Item.disposed_at.is_(None))
                .order_by(Item.id)
                .limit(_BATCH)
            ).all()
            if not rows:
                return
            yield from (_facts(r) for r in rows)
            last = rows[-1].id
    ids = sorted(set(item_ids))
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        rows = session.scalars(
            select(Item).where(Item.id.in_(chunk), Item.disposed_at.is_(None)).order_by(Item.id)
        ).all()
        yield from (_facts(r) for r in rows)


def _check_series(items: Sequence[ItemFacts], schedules: Schedules) -> None:
    unknown = sorted({i.series for i in items if i.series not in schedules})
    if unknown:
        raise RetentionError(
            f"items of series {', '.join(unknown)} are in the catalog but no schedule defines "
            "that series; add it to a schedule in [retention] schedules_dir, or move the "
            "items with a rule and `archiver retention reassign`"
        )


def evaluate(
    session: Session,
    ctx: RetentionContext,
    now: datetime,
    item_ids: Iterable[int] | None = None,
) -> dict[int, Decision]:
    """The decision for every not-disposed item (or those of ``item_ids``) at ``now``."""
    decisions: dict[int, Decision] = {}
    batch: list[ItemFacts] = []

    def flush() -> None:
        _check_series(batch, ctx.schedules)
        for d in decide(batch, ctx.schedules, ctx.holds, ctx.events, ctx.notices, now, ctx.policy):
            decisions[d.item_id] = d
        batch.clear()

    for facts in item_facts(session, item_ids):
        batch.append(facts)
        if len(batch) >= _BATCH:
            flush()
    if batch:
        flush()
    return decisions
