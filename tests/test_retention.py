"""The retention rules as a pure function: properties over generated data, then a clock we
control walking items through their retention, holds, notices, events and DST cutoffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.retention import (
    DEFAULT_RULE,
    Decision,
    Event,
    Hold,
    ItemFacts,
    Notice,
    NoticeRule,
    Outcome,
    Period,
    Policy,
    Rule,
    Series,
    assign,
    decide,
    eligible_on,
    provisional_retain_until,
)

CHICAGO = ZoneInfo("America/Chicago")
POLICY = Policy(zone=CHICAGO, fiscal_year_start=(7, 1))
PROPERTIES = settings(max_examples=200, deadline=None, database=None)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=CHICAGO, fold=fold)  # type: ignore[misc]


SEVEN_YEARS = Period(years=7)
NO_NOTICE = NoticeRule(required=False)
CREATED = datetime(2018, 3, 4, 15, 0, tzinfo=UTC)


def series(
    code: str = "WI-DEFAULT",
    *,
    period: Period = SEVEN_YEARS,
    trigger: Any = "created",
    cutoff: Any = None,
    event: str | None = None,
    disposition: Any = "destroy",
    notice: NoticeRule = NO_NOTICE,
) -> Series:
    return Series(
        code=code,
        title=code,
        description="",
        period=period,
        trigger=trigger,
        cutoff=cutoff,
        event=event,
        disposition=disposition,
        notice=notice,
        authority="Wis. Stat. § 19.21(4)",
        example=False,
        confirm=None,
        default=False,
        source="test:1",
    )


def item(
    item_id: int = 1,
    created: datetime | None = CREATED,
    *,
    account: str = "mke-bluesky",
    kind: str = "post",
    state: str = "present",
    captured: datetime | None = None,
    series_code: str = "WI-DEFAULT",
) -> ItemFacts:
    return ItemFacts(
        item_id=item_id,
        account=account,
        kind=kind,
        state=state,
        created_at=created,
        captured_at=captured or created or utc(2020, 1, 1),
        series=series_code,
    )


def hold(
    hold_id: int = 1,
    *,
    kind: Any = "legal",
    accounts: frozenset[str] = frozenset(),
    start: datetime | None = None,
    end: datetime | None = None,
    item_ids: frozenset[int] | None = None,
    released: datetime | None = None,
    granted: datetime | None = None,
    denied: datetime | None = None,
) -> Hold:
    return Hold(
        id=hold_id,
        case=f"CASE-{hold_id}",
        kind=kind,
        accounts=accounts,
        start=start,
        end=end,
        item_ids=item_ids,
        created_at=utc(2020, 1, 1),
        released_at=released,
        granted_on=granted,
        denied_on=denied,
    )


def one(
    facts: ItemFacts,
    library: Sequence[Series],
    now: datetime,
    *,
    holds: Sequence[Hold] = (),
    events: Sequence[Event] = (),
    notices: Sequence[Notice] = (),
    policy: Policy = POLICY,
) -> Decision:
    [decision] = decide([facts], {s.code: s for s in library}, holds, events, notices, now, policy)
    return decision


# --- generated data ---------------------------------------------------------------------------

MOMENTS = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
)
ACCOUNTS = ("a", "b", "c")
KINDS = ("post", "comment", "reply")
STATES = ("present", "hidden", "deleted")
EVENT_KINDS = ("account-closed", "contract-ended")
POLICIES = st.builds(
    Policy,
    zone=st.sampled_from([CHICAGO, ZoneInfo("UTC"), ZoneInfo("Australia/Lord_Howe")]),
    fiscal_year_start=st.sampled_from([(1, 1), (7, 1), (10, 1), (2, 28)]),
)


@st.composite
def series_library(draw: st.DrawFn) -> dict[str, Series]:
    count = draw(st.integers(1, 5))
    out: dict[str, Series] = {}
    for index in range(count):
        trigger = draw(st.sampled_from(["created", "captured", "cutoff", "event"]))
        out[f"S{index}"] = series(
            f"S{index}",
            period=Period(
                years=draw(st.integers(0, 8)),
                months=draw(st.integers(0, 14)),
                days=draw(st.integers(0, 400)),
            ),
            trigger=trigger,
            cutoff=draw(st.sampled_from(["calendar", "fiscal"])) if trigger == "cutoff" else None,
            event=draw(st.sampled_from(EVENT_KINDS)) if trigger == "event" else None,
            disposition=draw(st.sampled_from(["destroy", "destroy", "transfer", "permanent"])),
            notice=NoticeRule(required=draw(st.booleans()), days=draw(st.integers(0, 90))),
        )
    return out


@st.composite
def world(draw: st.DrawFn, min_items: int = 0) -> dict[str, Any]:
    """Series, items, holds, events, notices, a policy and a clock, all related."""
    library = draw(series_library())
    codes = sorted(library)
    items = []
    for item_id in range(draw(st.integers(min_items, 12))):
        created = draw(st.none() | MOMENTS)
        captured = (
            draw(MOMENTS)
            if created is None
            else created + draw(st.timedeltas(timedelta(0), timedelta(days=900)))
        )
        items.append(
            ItemFacts(
                item_id=item_id,
                account=draw(st.sampled_from(ACCOUNTS)),
                kind=draw(st.sampled_from(KINDS)),
                state=draw(st.sampled_from(STATES)),
                created_at=created,
                captured_at=captured,
                series=draw(st.sampled_from(codes)),
            )
        )
    ids = [i.item_id for i in items]
    holds = []
    for hold_id in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["legal", "prr"]))
        holds.append(
            Hold(
                id=hold_id + 1,
                case=f"C{hold_id}",
                kind=kind,
                accounts=frozenset(draw(st.sets(st.sampled_from(ACCOUNTS), max_size=2))),
                start=draw(st.none() | MOMENTS),
                end=draw(st.none() | MOMENTS),
                item_ids=(
                    frozenset(draw(st.sets(st.sampled_from(ids))))
                    if ids and draw(st.booleans())
                    else None
                ),
                created_at=draw(MOMENTS),
                released_at=draw(st.none() | MOMENTS),
                granted_on=draw(st.none() | MOMENTS) if kind == "prr" else None,
                denied_on=draw(st.none() | MOMENTS) if kind == "prr" else None,
            )
        )
    events = [
        Event(
            kind=draw(st.sampled_from(EVENT_KINDS)),
            account=draw(st.none() | st.sampled_from(ACCOUNTS)),
            occurred_at=draw(MOMENTS),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    notices = [
        Notice(
            series=draw(st.sampled_from(codes)),
            kind=draw(st.sampled_from(["sent", "waiver"])),
            on=draw(MOMENTS),
            reference=f"N{n}",
        )
        for n in range(draw(st.integers(0, 3)))
    ]
    return {
        "items": items,
        "series": library,
        "holds": holds,
        "events": events,
        "notices": notices,
        "now": draw(MOMENTS),
        "policy": draw(POLICIES),
    }


def run(w: dict[str, Any], **changes: Any) -> list[Decision]:
    args = {**w, **changes}
    return decide(
        args["items"],
        args["series"],
        args["holds"],
        args["events"],
        args["notices"],
        args["now"],
        args["policy"],
    )


def eligible_ids(decisions: Sequence[Decision]) -> set[int]:
    return {d.item_id for d in decisions if d.eligible}


# --- properties -------------------------------------------------------------------------------


@PROPERTIES
@given(world())
def test_an_item_covered_by_an_active_hold_is_never_eligible(w: dict[str, Any]) -> None:
    for facts, decision in zip(w["items"], run(w), strict=True):
        covering = sorted(h.id for h in w["holds"] if h.active(w["now"]) and h.covers(facts))
        if covering:
            assert decision.outcome is Outcome.HELD and not decision.eligible
            assert decision.holds == tuple(covering)
            assert all(f"case C{i - 1}" in decision.reason for i in covering)
        else:
            assert decision.outcome is not Outcome.HELD and decision.holds == ()


@PROPERTIES
@given(world())
def test_every_item_gets_one_decision_and_eligible_and_kept_partition_the_items(
    w: dict[str, Any],
) -> None:
    decisions = run(w)
    assert [d.item_id for d in decisions] == [i.item_id for i in w["items"]]
    everything = {i.item_id for i in w["items"]}
    eligible = {d.item_id for d in decisions if d.eligible}
    kept = {d.item_id for d in decisions if d.outcome is not Outcome.ELIGIBLE}
    assert eligible | kept == everything and not eligible & kept
    for facts, d in zip(w["items"], decisions, strict=True):
        s = w["series"][facts.series]
        assert d.series == s.code and d.reason.startswith(f"{s.code}: ") and "\n" not in d.reason
        assert d.eligible_on == eligible_on(facts, s, w["events"], w["policy"])
        assert d.action == s.disposition
        if d.eligible:
            assert d.eligible_on is not None and d.eligible_on <= w["now"]
            assert (d.notice is not None) == s.notice.required


@st.composite
def assignment_case(draw: st.DrawFn) -> dict[str, Any]:
    w = draw(world(min_items=1))
    codes = sorted(w["series"])
    rules = [
        Rule(
            name=f"r{n}",
            series=draw(st.sampled_from(codes)),
            accounts=frozenset(draw(st.sets(st.sampled_from(ACCOUNTS), max_size=2))),
            kinds=frozenset(draw(st.sets(st.sampled_from(KINDS), max_size=2))),
            states=frozenset(draw(st.sets(st.sampled_from(STATES), max_size=2))),
        )
        for n in range(draw(st.integers(0, 5)))
    ]
    return {**w, "rules": rules, "default": draw(st.sampled_from(codes))}


def _at_least(a: datetime | None, b: datetime | None) -> bool:
    """a >= b where None is an infinitely long retention."""
    return a is None or (b is not None and a >= b)


@PROPERTIES
@given(assignment_case())
def test_the_longest_applicable_retention_wins_the_assignment(case: dict[str, Any]) -> None:
    library, events, policy = case["series"], case["events"], case["policy"]
    for facts in case["items"]:
        chosen = assign(facts, case["rules"], library, case["default"], events, policy)
        applicable = [r for r in case["rules"] if r.matches(facts)]
        codes = [r.series for r in applicable] + [case["default"]]
        assert chosen.series in codes
        assert chosen.rule in [r.name for r in applicable] + [DEFAULT_RULE]
        best = eligible_on(facts, library[chosen.series], events, policy)
        for code in codes:
            assert _at_least(best, eligible_on(facts, library[code], events, policy))
        assert chosen.why.startswith(("no rule matches; ", chosen.series))


@PROPERTIES
@given(world(), st.timedeltas(timedelta(0), timedelta(days=4000)))
def test_an_eligible_item_stays_eligible_as_time_passes(
    w: dict[str, Any], later: timedelta
) -> None:
    before = eligible_ids(run(w))
    after = eligible_ids(run(w, now=w["now"] + later))
    assert before <= after


@PROPERTIES
@given(world(), st.data())
def test_releasing_a_hold_never_makes_fewer_items_eligible(
    w: dict[str, Any], data: st.DataObject
) -> None:
    before = eligible_ids(run(w))
    released = [
        replace(h, released_at=w["now"]) if data.draw(st.booleans()) else h for h in w["holds"]
    ]
    assert before <= eligible_ids(run(w, holds=released))


@PROPERTIES
@given(series_library(), POLICIES, MOMENTS, st.data())
def test_the_provisional_lock_never_outlasts_an_item_of_its_partition(
    library: dict[str, Series], policy: Policy, moment: datetime, data: st.DataObject
) -> None:
    period_start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (period_start + timedelta(days=32)).replace(day=1)
    created = data.draw(
        st.datetimes(
            min_value=period_start.replace(tzinfo=None),
            max_value=(month_end - timedelta(microseconds=1)).replace(tzinfo=None),
            timezones=st.just(UTC),
        )
    )
    facts = item(created=created, captured=created + timedelta(days=data.draw(st.integers(0, 99))))
    for s in library.values():
        floor = provisional_retain_until(s, period_start, policy, now=period_start)
        end = eligible_on(facts, s, (), policy)
        if s.disposition == "permanent":
            assert floor is None and end is None
        elif s.trigger != "event":
            assert floor is not None and end is not None and floor <= end


# --- a clock we control -----------------------------------------------------------------------

SEVEN = series("WI-DEFAULT")


def test_an_item_ages_into_eligibility_exactly_when_its_period_ends() -> None:
    facts = item(created=utc(2018, 3, 4, 15, 0))
    before = one(facts, [SEVEN], utc(2025, 3, 4, 14, 59, 59))
    at = one(facts, [SEVEN], utc(2025, 3, 4, 15, 0))
    assert before.outcome is Outcome.RETAINED and at.outcome is Outcome.ELIGIBLE
    assert at.eligible_on == utc(2025, 3, 4, 15, 0) and at.action == "destroy"
    assert before.reason == (
        "WI-DEFAULT: 7 years after creation 2018-03-04 15:00 UTC → eligible 2025-03-04 15:00 UTC"
    )
    assert at.reason.endswith("→ destroy")


def test_a_period_from_february_29_ends_on_february_28() -> None:
    assert Period(years=1).after(utc(2020, 2, 29, 12)) == utc(2021, 2, 28, 12)
    assert Period(months=1).after(utc(2021, 1, 31)) == utc(2021, 2, 28)
    assert Period(years=1, months=13, days=1).after(utc(2020, 1, 1)) == utc(2022, 2, 2)


def test_an_item_without_a_creation_date_counts_from_its_first_capture() -> None:
    facts = item(created=None, captured=utc(2019, 5, 6))
    decision = one(facts, [SEVEN], utc(2026, 5, 5))
    assert decision.eligible_on == utc(2026, 5, 6) and decision.outcome is Outcome.RETAINED
    assert "first capture 2019-05-06 00:00 UTC (creation unknown)" in decision.reason


def test_a_captured_trigger_counts_from_the_first_capture_not_the_creation() -> None:
    s = series("CAP", period=Period(days=90), trigger="captured")
    facts = item(created=utc(2010, 1, 1), captured=utc(2020, 1, 1), series_code="CAP")
    assert one(facts, [s], utc(2020, 3, 30)).outcome is Outcome.RETAINED
    assert one(facts, [s], utc(2020, 3, 31)).outcome is Outcome.ELIGIBLE


def test_a_legal_hold_keeps_an_eligible_item_and_its_release_lets_it_go() -> None:
    facts = item()
    now = utc(2030, 1, 1)
    legal = hold(7, accounts=frozenset({"mke-bluesky"}))
    held = one(facts, [SEVEN], now, holds=[legal])
    assert held.outcome is Outcome.HELD and held.holds == (7,) and not held.eligible
    assert held.reason.startswith("WI-DEFAULT: held by legal hold 7 (case CASE-7)")
    assert "otherwise 7 years after creation" in held.reason
    released = one(facts, [SEVEN], now, holds=[replace(legal, released_at=now)])
    assert released.outcome is Outcome.ELIGIBLE and released.holds == ()


def test_a_hold_released_later_still_holds_now() -> None:
    facts = item()
    later = hold(released=utc(2031, 1, 1))
    assert one(facts, [SEVEN], utc(2030, 1, 1), holds=[later]).outcome is Outcome.HELD


def test_a_hold_covers_only_its_accounts_dates_and_query_results() -> None:
    facts = item(5, created=utc(2018, 6, 1), account="mke-bluesky")
    assert hold(accounts=frozenset({"mke-bluesky"})).covers(facts)
    assert not hold(accounts=frozenset({"mke-mastodon"})).covers(facts)
    assert hold(start=utc(2018, 6, 1), end=utc(2018, 6, 1)).covers(facts)  # inclusive
    assert not hold(start=utc(2018, 6, 2)).covers(facts)
    assert not hold(end=utc(2018, 5, 31)).covers(facts)
    assert hold(item_ids=frozenset({5})).covers(facts)
    assert not hold(item_ids=frozenset()).covers(facts)
    uncreated = item(6, created=None, captured=utc(2019, 1, 1))
    assert hold(start=utc(2018, 12, 1), end=utc(2019, 2, 1)).covers(uncreated)


def test_a_public_records_request_hold_keeps_items_until_the_request_is_granted() -> None:
    facts = item()
    prr = hold(3, kind="prr")
    assert one(facts, [SEVEN], utc(2030, 1, 1), holds=[prr]).outcome is Outcome.HELD
    granted = replace(prr, granted_on=utc(2030, 2, 1))
    assert one(facts, [SEVEN], utc(2030, 1, 31), holds=[granted]).outcome is Outcome.HELD
    assert one(facts, [SEVEN], utc(2030, 2, 1), holds=[granted]).outcome is Outcome.ELIGIBLE


def test_a_denied_request_keeps_items_sixty_days_after_the_denial() -> None:
    facts = item()
    denied = hold(4, kind="prr", denied=utc(2030, 1, 10))
    day_59 = one(facts, [SEVEN], utc(2030, 1, 10) + timedelta(days=59), holds=[denied])
    day_60 = one(facts, [SEVEN], utc(2030, 1, 10) + timedelta(days=60), holds=[denied])
    assert day_59.outcome is Outcome.HELD and day_60.outcome is Outcome.ELIGIBLE
    assert "public-records-request hold 4 (case CASE-4; denied 2030-01-10" in day_59.reason


NOTIFIED = series(notice=NoticeRule(required=True, days=60))


def test_a_series_requiring_notice_waits_for_one() -> None:
    decision = one(item(), [NOTIFIED], utc(2030, 1, 1))
    assert decision.outcome is Outcome.AWAITING_NOTICE and decision.notice is None
    assert "60 days' notice to the Wisconsin Historical Society" in decision.reason


def test_a_sent_notice_lets_items_go_once_its_days_have_passed() -> None:
    sent = Notice("WI-DEFAULT", "sent", utc(2029, 1, 1), "WHS-2029-01")
    waiting = one(item(), [NOTIFIED], utc(2029, 3, 1, 23, 59), notices=[sent])
    assert waiting.outcome is Outcome.AWAITING_NOTICE
    assert "notice WHS-2029-01" in waiting.reason and "2029-03-02 00:00 UTC" in waiting.reason
    gone = one(item(), [NOTIFIED], utc(2029, 3, 2), notices=[sent])
    assert gone.outcome is Outcome.ELIGIBLE and gone.notice == "WHS-2029-01"
    assert "notice WHS-2029-01 (sent 2029-01-01)" in gone.reason


def test_a_waiver_lets_items_go_at_once() -> None:
    waiver = Notice("WI-DEFAULT", "waiver", utc(2029, 1, 1), "WHS-WAIVER-7")
    decision = one(item(), [NOTIFIED], utc(2029, 1, 1), notices=[waiver])
    assert decision.outcome is Outcome.ELIGIBLE and decision.notice == "WHS-WAIVER-7"


def test_a_notice_sent_before_an_item_was_eligible_does_not_cover_it() -> None:
    # The item's period ends 2025-03-04 15:00; the notice listed only what was eligible
    # on 2025-03-01.
    early = Notice("WI-DEFAULT", "sent", utc(2025, 3, 1), "WHS-EARLY")
    other = Notice("OTHER", "waiver", utc(2026, 1, 1), "WHS-OTHER-SERIES")
    decision = one(item(), [NOTIFIED], utc(2030, 1, 1), notices=[early, other])
    assert decision.outcome is Outcome.AWAITING_NOTICE


def test_a_hold_beats_a_satisfied_notice() -> None:
    waiver = Notice("WI-DEFAULT", "waiver", utc(2029, 1, 1), "WHS-WAIVER-7")
    decision = one(item(), [NOTIFIED], utc(2030, 1, 1), holds=[hold()], notices=[waiver])
    assert decision.outcome is Outcome.HELD and decision.notice is None


CLOSED = series("ACCOUNT", period=Period(years=3), trigger="event", event="account-closed")


def test_an_event_series_awaits_its_event_then_counts_from_it() -> None:
    facts = item(series_code="ACCOUNT")
    waiting = one(facts, [CLOSED], utc(2040, 1, 1))
    assert waiting.outcome is Outcome.AWAITING_EVENT and waiting.eligible_on is None
    assert "'account-closed' for account mke-bluesky, which is not recorded yet" in waiting.reason
    elsewhere = [Event("account-closed", "mke-mastodon", utc(2021, 5, 1))]
    assert one(facts, [CLOSED], utc(2040, 1, 1), events=elsewhere).outcome is (
        Outcome.AWAITING_EVENT
    )
    closed = [*elsewhere, Event("account-closed", "mke-bluesky", utc(2021, 5, 1))]
    retained = one(facts, [CLOSED], utc(2024, 4, 30), events=closed)
    assert retained.outcome is Outcome.RETAINED and retained.eligible_on == utc(2024, 5, 1)
    assert "3 years after account-closed 2021-05-01 00:00 UTC" in retained.reason
    assert one(facts, [CLOSED], utc(2024, 5, 1), events=closed).outcome is Outcome.ELIGIBLE


def test_the_latest_matching_event_counts_and_an_event_for_every_account_matches() -> None:
    facts = item(series_code="ACCOUNT")
    events = [
        Event("account-closed", None, utc(2021, 5, 1)),
        Event("account-closed", "mke-bluesky", utc(2022, 5, 1)),
        Event("contract-ended", "mke-bluesky", utc(2030, 1, 1)),
    ]
    assert eligible_on(facts, CLOSED, events, POLICY) == utc(2025, 5, 1)


def test_a_permanent_series_is_never_eligible() -> None:
    forever = series("FOREVER", disposition="permanent")
    decision = one(item(series_code="FOREVER"), [forever], utc(2999, 1, 1))
    assert decision.outcome is Outcome.PERMANENT and decision.eligible_on is None
    assert decision.action == "permanent" and "never eligible" in decision.reason


def test_a_transfer_series_reports_its_action() -> None:
    transfer = series("XFER", disposition="transfer")
    decision = one(item(series_code="XFER"), [transfer], utc(2030, 1, 1))
    assert decision.eligible and decision.action == "transfer"
    assert decision.reason.endswith("→ transfer")


def test_an_item_of_an_unknown_series_is_an_error_not_a_silent_decision() -> None:
    with pytest.raises(ValueError, match="series 'GONE', which no retention schedule defines"):
        one(item(series_code="GONE"), [SEVEN], utc(2030, 1, 1))


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide([item()], {"WI-DEFAULT": SEVEN}, [], [], [], datetime(2030, 1, 1), POLICY)


# --- assignment -------------------------------------------------------------------------------

LONGER = series("MODERATED", period=Period(years=10), trigger="cutoff", cutoff="calendar")
SHORT = series("TRANSITORY", period=Period(days=90), trigger="captured")
LIBRARY = {s.code: s for s in (SEVEN, LONGER, SHORT)}


def test_an_item_no_rule_matches_gets_its_accounts_series() -> None:
    rules = [Rule("removed", "MODERATED", states=frozenset({"hidden"}))]
    chosen = assign(item(), rules, LIBRARY, "WI-DEFAULT", [], POLICY)
    assert chosen.series == "WI-DEFAULT" and chosen.rule == DEFAULT_RULE
    assert chosen.why.startswith("no rule matches; WI-DEFAULT by the account's series")


def test_a_moderator_removed_comment_goes_to_the_longer_series() -> None:
    rules = [
        Rule("transitory", "TRANSITORY", kinds=frozenset({"comment"})),
        Rule("removed", "MODERATED", kinds=frozenset({"comment"}), states=frozenset({"hidden"})),
    ]
    hidden = item(kind="comment", state="hidden")
    chosen = assign(hidden, rules, LIBRARY, "WI-DEFAULT", [], POLICY)
    assert chosen.series == "MODERATED" and chosen.rule == "removed"
    assert "the longest retention" in chosen.why and "TRANSITORY by rule 'transitory'" in chosen.why
    # A shorter series never beats the account's own.
    shown = assign(item(kind="comment"), rules, LIBRARY, "WI-DEFAULT", [], POLICY)
    assert shown.series == "WI-DEFAULT" and shown.rule == DEFAULT_RULE


def test_ties_go_to_the_first_matching_rule() -> None:
    rules = [Rule("first", "WI-DEFAULT"), Rule("second", "WI-DEFAULT")]
    assert assign(item(), rules, LIBRARY, "WI-DEFAULT", [], POLICY).rule == "first"


def test_an_event_not_yet_recorded_counts_as_the_longest_retention() -> None:
    library = {**LIBRARY, "ACCOUNT": CLOSED}
    rules = [Rule("profiles", "ACCOUNT", kinds=frozenset({"profile"}))]
    profile = item(kind="profile")
    assert assign(profile, rules, library, "MODERATED", [], POLICY).series == "ACCOUNT"
    closed = [Event("account-closed", None, utc(2018, 4, 1))]
    assert assign(profile, rules, library, "MODERATED", closed, POLICY).series == "MODERATED"


def test_a_rule_naming_an_unknown_series_is_an_error() -> None:
    with pytest.raises(ValueError, match="rule 'typo' names series 'NOPE'"):
        assign(item(), [Rule("typo", "NOPE")], LIBRARY, "WI-DEFAULT", [], POLICY)


# --- cutoffs in the City's time zone, across DST ------------------------------------------------

CALENDAR = series("CAL", period=Period(years=7), trigger="cutoff", cutoff="calendar")
FISCAL = series("FY", period=Period(years=7), trigger="cutoff", cutoff="fiscal")


def cutoff_of(s: Series, created: datetime, policy: Policy = POLICY) -> datetime | None:
    return eligible_on(item(created=created.astimezone(UTC), series_code=s.code), s, [], policy)


def test_new_years_eve_in_chicago_belongs_to_the_local_calendar_year() -> None:
    late = local(2019, 12, 31, 23, 30)
    assert late.astimezone(UTC) == utc(2020, 1, 1, 5, 30)
    # End of 2019 in Chicago (2020-01-01 00:00 CST = 06:00 UTC), plus 7 years.
    assert cutoff_of(CALENDAR, late) == utc(2027, 1, 1, 6, 0)
    assert cutoff_of(CALENDAR, local(2020, 1, 1, 0, 0)) == utc(2028, 1, 1, 6, 0)
    # In UTC the same instant is already 2020.
    assert cutoff_of(CALENDAR, late, Policy(ZoneInfo("UTC"))) == utc(2028, 1, 1)
    decision = one(
        item(created=late.astimezone(UTC), series_code="CAL"), [CALENDAR], utc(2027, 1, 1)
    )
    assert "the end of calendar year 2019 (2020-01-01 00:00 CST)" in decision.reason


def test_the_fiscal_year_turns_at_local_midnight_under_daylight_time() -> None:
    last = local(2020, 6, 30, 23, 59)
    first = local(2020, 7, 1, 0, 0)
    # July 1 00:00 CDT is 05:00 UTC.
    assert cutoff_of(FISCAL, last) == utc(2027, 7, 1, 5, 0)
    assert cutoff_of(FISCAL, first) == utc(2028, 7, 1, 5, 0)
    decision = one(item(created=last.astimezone(UTC), series_code="FY"), [FISCAL], utc(2027, 7, 1))
    assert "the end of fiscal year ending 2020-06-30 (2020-07-01 00:00 CDT)" in decision.reason


def test_a_period_from_a_cutoff_is_counted_on_the_local_calendar_across_dst() -> None:
    half = series("HALF", period=Period(months=6), trigger="cutoff", cutoff="calendar")
    # End of 2020 is 06:00 UTC (CST); six months later local midnight is 05:00 UTC (CDT).
    assert cutoff_of(half, local(2020, 5, 5, 12)) == utc(2021, 7, 1, 5, 0)
    fiscal_half = series("FH", period=Period(months=6), trigger="cutoff", cutoff="fiscal")
    assert cutoff_of(fiscal_half, local(2020, 5, 5, 12)) == utc(2021, 1, 1, 6, 0)


def test_times_in_the_dst_gap_and_overlap_are_decided_deterministically() -> None:
    # 2020-03-08 02:30 does not exist in Chicago; fold=0 reads it with the offset before the
    # change (CST), i.e. 08:30 UTC, which is 03:30 CDT. Either way: calendar year 2020.
    gap = local(2020, 3, 8, 2, 30)
    assert gap.astimezone(UTC) == utc(2020, 3, 8, 8, 30)
    # 2020-11-01 01:30 happens twice (CDT then CST): two different instants.
    first, second = local(2020, 11, 1, 1, 30), local(2020, 11, 1, 1, 30, fold=1)
    assert first.astimezone(UTC) == utc(2020, 11, 1, 6, 30)
    assert second.astimezone(UTC) == utc(2020, 11, 1, 7, 30)
    for moment, fiscal_end in ((gap, 2027), (first, 2028), (second, 2028)):
        assert cutoff_of(CALENDAR, moment) == utc(2028, 1, 1, 6, 0)
        assert cutoff_of(FISCAL, moment) == utc(fiscal_end, 7, 1, 5, 0)
        assert cutoff_of(CALENDAR, moment.replace(fold=1 - moment.fold)) == utc(2028, 1, 1, 6, 0)


def test_a_fiscal_year_may_start_on_any_day_that_exists_every_year() -> None:
    with pytest.raises(ValueError, match="exists every year"):
        Policy(CHICAGO, (2, 29))
    october = Policy(CHICAGO, (10, 1))
    assert cutoff_of(FISCAL, local(2020, 9, 30, 23, 0), october) == utc(2027, 10, 1, 5, 0)
    assert cutoff_of(FISCAL, local(2020, 10, 1, 0, 0), october) == utc(2028, 10, 1, 5, 0)


# --- provisional object-lock floors ------------------------------------------------------------


def test_the_provisional_retain_until_of_a_partition_is_its_first_items_eligibility() -> None:
    now = utc(2026, 1, 15)
    assert provisional_retain_until(SEVEN, utc(2020, 3, 1), POLICY, now) == utc(2027, 3, 1)
    # A partition starting 2020-01-01 00:00 UTC holds Chicago's New Year's Eve 2019.
    assert provisional_retain_until(CALENDAR, utc(2020, 1, 1), POLICY, now) == utc(2027, 1, 1, 6)
    assert provisional_retain_until(CLOSED, utc(2020, 1, 1), POLICY, now) == utc(2029, 1, 15)
    forever = series("FOREVER", disposition="permanent")
    assert provisional_retain_until(forever, utc(2020, 1, 1), POLICY, now) is None
