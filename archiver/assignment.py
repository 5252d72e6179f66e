"""Which records series each item belongs to: at capture, when its state changes, on reassign.

The rule is :func:`archiver.retention.assign` (pure: every matching ``[[retention.rules]]``
entry applies, and so does the account's own series; the longest retention wins). This
module feeds it from the configuration and the catalog, and records every *move* (an item
whose series changes) the same way wherever it happens:

- a control fact ``assignment.changed`` in the store (:mod:`archiver.control`), written
  before the catalog commit that moves the items, so a rebuilt catalog keeps the move;
- the items' ``series`` and ``series_rule`` in the catalog;
- an audit entry ``retention.reassign``.

Capture assigns each new item and re-evaluates an item whenever it gets a new version (an
edit, a moderator hiding it, a deletion): a function call per item, a fact only on a move.
``archiver retention reassign`` re-evaluates every item not yet disposed of against the
current rules (after the rules or an account's series changed). Records already stored stay
where they are (stored objects are never rewritten): an item's later records go to the
partition of its new series, and retention follows the item's series, not the partition's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from archiver import audit
from archiver.catalog.models import Account, Item, RetentionEvent
from archiver.config import Config
from archiver.control import Fact, write_fact
from archiver.evaluate import policy_of, rules_of
from archiver.retention import Assignment, Event, ItemFacts, Policy, Rule, assign
from archiver.series import Schedules
from archiver.store.base import Store
from archiver.warc import WarcInfo

#: The audit action of every move, at capture or by ``retention reassign``.
AUDIT_ACTION = "retention.reassign"
#: At most this many moves per control fact, so a large reassignment stays many small files.
FACT_CHUNK = 2000
_BATCH = 2000


def load_events(session: Session) -> tuple[Event, ...]:
    """Every recorded retention event, oldest record first."""
    return tuple(
        Event(kind=e.kind, account=e.account_id, occurred_at=e.occurred_at)
        for e in session.scalars(select(RetentionEvent).order_by(RetentionEvent.id))
    )


@dataclass(frozen=True)
class Assigner:
    """The assignment rules of one configuration and schedule set, with the recorded events."""

    schedules: Schedules
    rules: tuple[Rule, ...]
    policy: Policy
    events: tuple[Event, ...]

    @classmethod
    def of(cls, config: Config, schedules: Schedules, session: Session) -> Assigner:
        return cls(schedules, rules_of(config), policy_of(config), load_events(session))

    def default_for(self, account_series: str) -> str:
        """The series an account's items default to.

        An account whose series no schedule defines (only possible for an account removed
        from the configuration, which is validated) defaults to the schedules' default
        series: "records not otherwise scheduled" is exactly what that series is for.
        """
        return account_series if account_series in self.schedules else self.schedules.default

    def assign(self, item: ItemFacts, account_series: str) -> Assignment:
        return assign(
            item,
            self.rules,
            self.schedules,
            self.default_for(account_series),
            self.events,
            self.policy,
        )


@dataclass(frozen=True, slots=True)
class Move:
    """One item moved from one series to another, and the rule that moved it."""

    item_id: int
    account: str
    platform_item_id: str
    kind: str
    created_at: datetime | None
    from_series: str
    to_series: str
    rule: str
    why: str

    def fact_entry(self) -> dict[str, str]:
        """The move as the ``assignment.changed`` fact lists it."""
        return {
            "account": self.account,
            "item": self.platform_item_id,
            "from": self.from_series,
            "to": self.to_series,
            "rule": self.rule,
            "why": self.why,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "account": self.account,
            "item": self.platform_item_id,
            "kind": self.kind,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "from": self.from_series,
            "to": self.to_series,
            "rule": self.rule,
            "why": self.why,
        }


def record_moves(
    store: Store,
    session: Session,
    moves: Sequence[Move],
    *,
    cause: str,
    actor: str,
    info: WarcInfo,
    at: datetime,
    tmp_dir: Path | None,
    subject: str | None,
    detail: Mapping[str, Any],
) -> list[Fact]:
    """Write the moves to the store as ``assignment.changed`` facts and audit them, in
    ``session`` (before the caller commits the moved rows in the same transaction)."""
    facts = [
        write_fact(
            store,
            session,
            "assignment.changed",
            {"cause": cause, "changes": [m.fact_entry() for m in moves[i : i + FACT_CHUNK]]},
            actor=actor,
            info=info,
            at=at,
            tmp_dir=tmp_dir,
        )
        for i in range(0, len(moves), FACT_CHUNK)
    ]
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION,
        subject=subject,
        detail={
            "cause": cause,
            "moved": len(moves),
            **detail,
            "facts": [f.key for f in facts],
        },
        clock=lambda: at,
    )
    return facts


# --- archiver retention reassign --------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """The moves from one series to another by one rule."""

    from_series: str
    to_series: str
    rule: str
    count: int
    examples: tuple[Move, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_series,
            "to": self.to_series,
            "rule": self.rule,
            "count": self.count,
            "examples": [m.as_dict() for m in self.examples],
        }


@dataclass(frozen=True)
class ReassignPlan:
    """What re-evaluating every item against the current rules would change."""

    evaluated: int
    moves: tuple[Move, ...]

    def groups(self, examples: int = 3) -> list[Group]:
        """The moves counted from → to per rule (largest first), with a few examples each."""
        keys = Counter((m.from_series, m.to_series, m.rule) for m in self.moves)
        out = []
        for (src, dst, rule), count in sorted(keys.items(), key=lambda kv: (-kv[1], kv[0])):
            picked = tuple(
                m for m in self.moves if (m.from_series, m.to_series, m.rule) == (src, dst, rule)
            )[:examples]
            out.append(Group(src, dst, rule, count, picked))
        return out

    def summary(self) -> list[dict[str, Any]]:
        """The groups without examples (what the audit entry keeps)."""
        return [
            {"from": g.from_series, "to": g.to_series, "rule": g.rule, "count": g.count}
            for g in self.groups(examples=0)
        ]


def account_series(session: Session, config: Config) -> dict[str, str]:
    """Each account's own series: as configured, else as the catalog last knew it."""
    known = {a.id: a.series for a in session.scalars(select(Account))}
    known.update({a.id: a.series for a in config.accounts})
    return known


def _rows(session: Session) -> Iterator[Any]:
    last = 0
    while True:
        rows = session.execute(
            select(
                Item.id,
                Item.account_id,
                Item.platform_item_id,
                Item.kind,
                Item.state,
                Item.created_at,
                Item.first_captured_at,
                Item.series,
            )
            .where(Item.id > last, Item.disposed_at.is_(None))
            .order_by(Item.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def plan_reassign(
    session: Session, assigner: Assigner, accounts: Mapping[str, str]
) -> ReassignPlan:
    """Re-evaluate every item not disposed of; the items whose series would change."""
    moves: list[Move] = []
    evaluated = 0
    for row in _rows(session):
        evaluated += 1
        facts = ItemFacts(
            item_id=row.id,
            account=row.account_id,
            kind=row.kind,
            state=row.state,
            created_at=row.created_at,
            captured_at=row.first_captured_at,
            series=row.series,
        )
        got = assigner.assign(facts, accounts.get(row.account_id, row.series))
        if got.series != row.series:
            moves.append(
                Move(
                    row.id,
                    row.account_id,
                    row.platform_item_id,
                    row.kind,
                    row.created_at,
                    row.series,
                    got.series,
                    got.rule,
                    got.why,
                )
            )
    return ReassignPlan(evaluated, tuple(moves))


def apply_moves(session: Session, moves: Iterable[Move]) -> None:
    """Set the moved items' series and rule (in the caller's transaction)."""
    for move in moves:
        session.execute(
            update(Item)
            .where(Item.id == move.item_id)
            .values(series=move.to_series, series_rule=move.rule)
        )
