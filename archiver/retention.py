"""Retention decisions as one pure function: for every item, *why* it is kept or may go.

Everything that reasons about retention calls :func:`decide` (or :func:`assign` and
:func:`eligible_on`): the disposition report, ``retention dispose`` when it re-checks under
its lock, ``show`` and ``search`` when they print a retention column, the object-lock floor
chosen at write time. Keeping the rules in one function with no I/O (no catalog, no store,
no clock of its own: ``now`` is an argument) is what lets all of them agree, lets the tests
drive it with a clock they control and with generated data (hypothesis), and lets a records
officer read, in every :class:`Decision`, the one line naming the series rule or the hold
behind it.

Times: every input and output moment is a timezone-aware datetime, normally UTC. Only
cutoffs (the end of the calendar or fiscal year an item was created in) are computed on the
local calendar of :attr:`Policy.zone`, then returned in UTC: "the end of 2019" for a City in
Chicago is 2020-01-01 00:00 America/Chicago, which is 06:00 UTC, and periods counted from a
cutoff are counted on that local calendar too (so a cutoff six months later lands on local
midnight again, at 05:00 UTC under daylight time).

Precedence in :func:`decide`: an active hold covering the item beats everything (HELD); then
a permanent series (PERMANENT); then an event-triggered series whose event is not recorded
(AWAITING_EVENT); then a period not yet over (RETAINED); then a series that requires notice
to the historical society with no notice covering the item (AWAITING_NOTICE); else ELIGIBLE.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

Trigger = Literal["created", "captured", "cutoff", "event"]
DispositionAction = Literal["destroy", "transfer", "permanent"]
HoldKind = Literal["legal", "prr"]
NoticeKind = Literal["sent", "waiver"]

#: Wis. Stat. § 19.35(5): after a public-records request is denied, the requested records
#: may not be destroyed until at least 60 days after the denial.
PRR_DENIAL_DAYS = 60


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime (got {moment!r})")
    return moment


@dataclass(frozen=True)
class Period:
    """A retention period on the calendar: years, then months, then days."""

    years: int = 0
    months: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if min(self.years, self.months, self.days) < 0:
            raise ValueError(f"a retention period cannot be negative: {self}")

    @property
    def is_zero(self) -> bool:
        return self.years == self.months == self.days == 0

    def after(self, moment: datetime) -> datetime:
        """``moment`` plus this period, counted on ``moment``'s own calendar (its tzinfo).

        Years and months keep the day of the month, clamped to the month's length (Feb 29
        plus one year is Feb 28); days are whole calendar days. The result has ``moment``'s
        tzinfo; for a zone with daylight time the wall-clock time is kept, which is why
        cutoffs pass a local moment and convert the result to UTC afterwards.
        """
        _aware(moment, "the start of a period")
        month_index = moment.month - 1 + self.months
        year = moment.year + self.years + month_index // 12
        month = month_index % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return moment.replace(year=year, month=month, day=day) + timedelta(days=self.days)

    def __str__(self) -> str:
        parts = [
            f"{count} {unit}{'' if count == 1 else 's'}"
            for count, unit in ((self.years, "year"), (self.months, "month"), (self.days, "day"))
            if count
        ]
        return " ".join(parts) if parts else "0 days"


@dataclass(frozen=True)
class NoticeRule:
    """Whether the historical society must be told before disposition, and how long before."""

    required: bool
    days: int = 60
    to: str = "Wisconsin Historical Society"


@dataclass(frozen=True)
class Series:
    """A records series from a retention schedule (loaded by :mod:`archiver.series`)."""

    code: str
    title: str
    description: str
    period: Period
    trigger: Trigger
    cutoff: Literal["calendar", "fiscal"] | None  # only for trigger == "cutoff"
    event: str | None  # only for trigger == "event", e.g. "account-closed"
    disposition: DispositionAction
    notice: NoticeRule
    authority: str
    example: bool
    confirm: str | None
    default: bool
    source: str  # "file:line" of its [[series]] table


@dataclass(frozen=True)
class Policy:
    """The City's calendar: its time zone and the first day (month, day) of its fiscal year."""

    zone: ZoneInfo
    fiscal_year_start: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        month, day = self.fiscal_year_start
        # A fiscal year must start on the same day every year, so Feb 29 is not allowed.
        if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(2001, month)[1]:
            raise ValueError(
                f"fiscal_year_start {self.fiscal_year_start!r} is not a (month, day) that "
                "exists every year"
            )


@dataclass(frozen=True)
class ItemFacts:
    """What retention needs to know about one item."""

    item_id: int
    account: str
    kind: str
    state: str
    created_at: datetime | None  # on the platform; None when the platform does not say
    captured_at: datetime  # first capture
    series: str


@dataclass(frozen=True)
class Rule:
    """A ``[[retention.rules]]`` entry: items matching every non-empty field go to ``series``."""

    name: str
    series: str
    accounts: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()

    def matches(self, item: ItemFacts) -> bool:
        return (
            (not self.accounts or item.account in self.accounts)
            and (not self.kinds or item.kind in self.kinds)
            and (not self.states or item.state in self.states)
        )


@dataclass(frozen=True)
class Assignment:
    """The series an item belongs to, the rule that chose it, and why it won."""

    series: str
    rule: str  # the rule's name, or DEFAULT_RULE when no rule matched
    why: str


#: ``Assignment.rule`` when no configured rule matched and the default series applies.
DEFAULT_RULE = "default"


@dataclass(frozen=True)
class Hold:
    """A legal hold or a public-records-request hold, with its scope."""

    id: int
    case: str
    kind: HoldKind
    accounts: frozenset[str]  # empty = every account
    start: datetime | None  # item created_at (captured_at when unknown) in [start, end]
    end: datetime | None
    item_ids: frozenset[int] | None  # a --query hold, resolved by the caller; None = no query
    created_at: datetime
    released_at: datetime | None
    granted_on: datetime | None = None  # prr only
    denied_on: datetime | None = None  # prr only

    def active(self, now: datetime) -> bool:
        """Whether the hold still stops disposition at ``now``.

        A hold is active from the moment it exists (its ``created_at`` is deliberately not
        compared with ``now``, so a clock running behind can never let a held item go) until
        it is released; a public-records-request hold also ends when the request is granted,
        or 60 days after it is denied (Wis. Stat. § 19.35(5)).
        """
        if self.released_at is not None and self.released_at <= now:
            return False
        if self.kind == "prr":
            if self.granted_on is not None and self.granted_on <= now:
                return False
            if self.denied_on is not None and self.denied_on + timedelta(PRR_DENIAL_DAYS) <= now:
                return False
        return True

    def covers(self, item: ItemFacts) -> bool:
        """Whether the item is in the hold's scope (whatever the hold's state)."""
        if self.accounts and item.account not in self.accounts:
            return False
        moment = item.created_at or item.captured_at
        if self.start is not None and moment < self.start:
            return False
        if self.end is not None and moment > self.end:
            return False
        return self.item_ids is None or item.item_id in self.item_ids

    def describe(self) -> str:
        kind = "legal hold" if self.kind == "legal" else "public-records-request hold"
        text = f"{kind} {self.id} (case {self.case}"
        if self.kind == "prr" and self.denied_on is not None:
            until = self.denied_on + timedelta(PRR_DENIAL_DAYS)
            text += f"; denied {_day(self.denied_on)}, kept until {_moment(until)}"
        return text + ")"


@dataclass(frozen=True)
class Event:
    """Something that starts an event-triggered period, e.g. an account's closure."""

    kind: str
    account: str | None  # None = every account
    occurred_at: datetime


@dataclass(frozen=True)
class Notice:
    """A notice sent to, or a waiver received from, the historical society for a series.

    It covers the series' items whose retention ended on or before ``on`` (the records the
    notice listed); a "sent" notice is satisfied ``series.notice.days`` after ``on``, a
    waiver at once.
    """

    series: str
    kind: NoticeKind
    on: datetime
    reference: str


class Outcome(StrEnum):
    """What retention says about an item now."""

    ELIGIBLE = "eligible"
    RETAINED = "retained"
    HELD = "held"
    PERMANENT = "permanent"
    AWAITING_EVENT = "awaiting-event"
    AWAITING_NOTICE = "awaiting-notice"


@dataclass(frozen=True)
class Decision:
    """The decision for one item and the rule or hold behind it."""

    item_id: int
    series: str
    outcome: Outcome
    eligible_on: datetime | None  # when the period ends (None: permanent / event not recorded)
    action: DispositionAction  # what happens once eligible
    holds: tuple[int, ...]  # active holds covering the item, sorted
    notice: str | None  # reference of the notice that satisfies it, if one was needed
    reason: str  # one readable line: the series code and the rule or hold behind it

    @property
    def eligible(self) -> bool:
        return self.outcome is Outcome.ELIGIBLE


# --- formatting ---------------------------------------------------------------------------


def _moment(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M ") + (moment.tzname() or "")


# --- the period start -----------------------------------------------------------------------


def _cutoff(moment: datetime, kind: Literal["calendar", "fiscal"], policy: Policy) -> datetime:
    """The local midnight that ends the calendar or fiscal year containing ``moment``."""
    local = moment.astimezone(policy.zone)
    if kind == "calendar":
        return datetime(local.year + 1, 1, 1, tzinfo=policy.zone)
    month, day = policy.fiscal_year_start
    start = datetime(local.year, month, day, tzinfo=policy.zone)
    # Same tzinfo on both sides: Python compares wall-clock times, which is what a fiscal
    # year boundary is (local midnight), whatever the daylight-time offset.
    return start if local < start else start.replace(year=local.year + 1)


def _latest_event(item: ItemFacts, kind: str | None, events: Iterable[Event]) -> Event | None:
    matching = [
        e for e in events if e.kind == kind and (e.account is None or e.account == item.account)
    ]
    return max(matching, key=lambda e: e.occurred_at, default=None)


def _start(
    item: ItemFacts, series: Series, events: Iterable[Event], policy: Policy
) -> tuple[datetime, str] | None:
    """Where the series' period starts for the item (a moment on the calendar the period
    is counted on) and how to say it; None while the triggering event is not recorded."""
    if series.trigger == "created":
        if item.created_at is not None:
            return item.created_at, f"creation {_moment(item.created_at)}"
        return item.captured_at, f"first capture {_moment(item.captured_at)} (creation unknown)"
    if series.trigger == "captured":
        return item.captured_at, f"first capture {_moment(item.captured_at)}"
    if series.trigger == "cutoff":
        kind = series.cutoff or "calendar"
        end = _cutoff(item.created_at or item.captured_at, kind, policy)
        if kind == "calendar":
            year = f"calendar year {end.year - 1}"
        else:
            year = f"fiscal year ending {(end - timedelta(days=1)).date().isoformat()}"
        of = "" if item.created_at is not None else " of first capture (creation unknown)"
        return end, f"the end of {year}{of} ({_local(end)})"
    event = _latest_event(item, series.event, events)
    if event is None:
        return None
    return event.occurred_at, f"{event.kind} {_moment(event.occurred_at)}"


def eligible_on(
    item: ItemFacts, series: Series, events: Sequence[Event], policy: Policy
) -> datetime | None:
    """When the item's retention period under ``series`` ends, in UTC.

    None when it never ends (a permanent series) or cannot be known yet (an event-triggered
    series whose event is not recorded: the period is infinite until then).
    """
    if series.disposition == "permanent":
        return None
    start = _start(item, series, events, policy)
    return None if start is None else series.period.after(start[0]).astimezone(UTC)


def provisional_retain_until(
    series: Series, period_start: datetime, policy: Policy, now: datetime
) -> datetime | None:
    """The earliest moment any item of a partition whose period starts at ``period_start``
    (the first instant of its creation month) can become eligible: a floor for the store's
    object lock, so a lock never outlasts a record's retention.

    Eligibility grows with the creation time for every trigger but ``event``, so the
    partition's first instant gives the floor. An event-triggered series is assumed to see
    its event after the records it ends are written (an account closes after its posts), so
    the floor is ``now`` plus the period, extended once the event is recorded. None for a
    permanent series (the caller may lock for as long as it likes).
    """
    if series.disposition == "permanent":
        return None
    if series.trigger == "event":
        return series.period.after(_aware(now, "now")).astimezone(UTC)
    first = ItemFacts(
        item_id=0,
        account="",
        kind="",
        state="",
        created_at=_aware(period_start, "period_start"),
        captured_at=period_start,
        series=series.code,
    )
    return eligible_on(first, series, (), policy)


# --- assignment -----------------------------------------------------------------------------


def _longer(a: datetime | None, b: datetime | None) -> bool:
    """Whether a period ending at ``a`` is strictly longer than one ending at ``b``."""
    if a is None:
        return b is not None
    return b is not None and a > b


def assign(
    item: ItemFacts,
    rules: Sequence[Rule],
    series: Mapping[str, Series],
    default: str,
    events: Sequence[Event],
    policy: Policy,
) -> Assignment:
    """The series an item belongs to: the longest retention among those that apply.

    Every rule whose non-empty fields all match the item applies, and so does ``default``
    (the account's own series); the winner is the latest :func:`eligible_on`, where None
    (a permanent series, or an event not yet recorded) counts as infinitely long. Ties go
    to the first matching rule, then to the default. So rules can only lengthen retention:
    a series shorter than the account's own takes effect only as an account's series.
    """

    def lookup(code: str, where: str) -> Series:
        try:
            return series[code]
        except KeyError:
            raise ValueError(
                f"{where} names series {code!r}, which no retention schedule defines"
            ) from None

    candidates = [
        (rule.name, lookup(rule.series, f"rule {rule.name!r}"))
        for rule in rules
        if rule.matches(item)
    ]
    candidates.append((DEFAULT_RULE, lookup(default, f"the default series of {item.account}")))
    ends = [eligible_on(item, s, events, policy) for _, s in candidates]
    best = 0
    for index in range(1, len(candidates)):
        if _longer(ends[index], ends[best]):
            best = index
    name, chosen = candidates[best]

    def by(rule: str) -> str:
        return "the account's series" if rule == DEFAULT_RULE else f"rule {rule!r}"

    why = f"{chosen.code} by {by(name)} ({_until(ends[best])})"
    if len(candidates) == 1:
        why = f"no rule matches; {why}"
    else:
        others = [
            f"{s.code} by {by(n)} ({_until(end)})"
            for index, ((n, s), end) in enumerate(zip(candidates, ends, strict=True))
            if index != best
        ]
        why += ", the longest retention; also applied: " + "; ".join(others)
    return Assignment(series=chosen.code, rule=name, why=why)


def _until(end: datetime | None) -> str:
    return "kept indefinitely" if end is None else f"eligible {_moment(end)}"


# --- decisions ------------------------------------------------------------------------------


def _satisfying_notice(
    series: Series, end: datetime, notices: Sequence[Notice], now: datetime
) -> tuple[Notice | None, str]:
    """The notice that lets an item whose period ended at ``end`` go, or why none does."""
    effective: list[tuple[datetime, str, Notice]] = []
    pending: list[tuple[datetime, Notice]] = []
    for notice in notices:
        # A notice lists the records that were eligible when it was sent; later ones need
        # their own notice.
        if notice.series != series.code or notice.on < end:
            continue
        at = notice.on
        if notice.kind == "sent":
            at = notice.on + timedelta(days=series.notice.days)
        if at <= now:
            effective.append((at, notice.reference, notice))
        else:
            pending.append((at, notice))
    if effective:
        return min(effective, key=lambda e: (e[0], e[1]))[2], ""
    if pending:
        at, notice = min(pending, key=lambda p: (p[0], p[1].reference))
        return None, (
            f"notice {notice.reference} to the {series.notice.to} {notice.kind} "
            f"{_day(notice.on)}; its {series.notice.days} days end {_moment(at)}"
        )
    return None, (
        f"{series.notice.days} days' notice to the {series.notice.to} (or its waiver) is "
        "required and none recorded covers it"
    )


def _decide_one(
    item: ItemFacts,
    series: Mapping[str, Series],
    holds: Sequence[Hold],
    events: Sequence[Event],
    notices: Sequence[Notice],
    now: datetime,
    policy: Policy,
) -> Decision:
    try:
        s = series[item.series]
    except KeyError:
        raise ValueError(
            f"item {item.item_id} belongs to series {item.series!r}, which no retention "
            "schedule defines; restore that series' schedule or reassign the item"
        ) from None
    held = tuple(sorted(h.id for h in holds if h.active(now) and h.covers(item)))
    start = None if s.disposition == "permanent" else _start(item, s, events, policy)
    end = None if start is None else s.period.after(start[0]).astimezone(UTC)
    rule = (
        ""
        if start is None or end is None
        else f"{s.period} after {start[1]} → eligible {_moment(end)}"
    )

    def decision(outcome: Outcome, reason: str, notice: str | None = None) -> Decision:
        return Decision(
            item_id=item.item_id,
            series=s.code,
            outcome=outcome,
            eligible_on=end,
            action=s.disposition,
            holds=held,
            notice=notice,
            reason=f"{s.code}: {reason}",
        )

    if held:
        by_id = {h.id: h for h in holds}
        names = ", ".join(by_id[i].describe() for i in held)
        return decision(Outcome.HELD, f"held by {names}" + (f"; otherwise {rule}" if rule else ""))
    if s.disposition == "permanent":
        return decision(Outcome.PERMANENT, "permanent series; never eligible for disposition")
    if end is None:
        return decision(
            Outcome.AWAITING_EVENT,
            f"{s.period} after event {s.event!r} for account {item.account}, "
            "which is not recorded yet",
        )
    if now < end:
        return decision(Outcome.RETAINED, rule)
    if s.notice.required:
        notice, why = _satisfying_notice(s, end, notices, now)
        if notice is None:
            return decision(Outcome.AWAITING_NOTICE, f"{rule}; {why}")
        return decision(
            Outcome.ELIGIBLE,
            f"{rule}; notice {notice.reference} ({notice.kind} {_day(notice.on)}) → "
            f"{s.disposition}",
            notice=notice.reference,
        )
    return decision(Outcome.ELIGIBLE, f"{rule} → {s.disposition}")


def decide(
    items: Iterable[ItemFacts],
    series: Mapping[str, Series],
    holds: Sequence[Hold],
    events: Sequence[Event],
    notices: Sequence[Notice],
    now: datetime,
    policy: Policy,
) -> list[Decision]:
    """One decision per item, in the order given (see the module docstring for precedence).

    Raises ValueError when an item names a series that ``series`` does not define: an item
    is never silently kept or let go under a schedule nobody can read.
    """
    _aware(now, "now")
    return [_decide_one(item, series, holds, events, notices, now, policy) for item in items]
