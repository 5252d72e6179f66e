"""Rate-limit policies: waits read from Retry-After and each platform's quota headers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from archiver.ratelimit import (
    BACKOFF_CAP,
    HeaderPolicy,
    RateLimitPolicy,
    full_jitter,
    is_retryable,
    parse_reset,
    parse_retry_after,
    policy_for,
    policy_names,
)

NOW = datetime(2026, 11, 23, 21, 30, 0, tzinfo=UTC)


class Fixed(random.Random):
    """A random source that always draws the same unit value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Mon, 23 Nov 2026 21:30:42 GMT", 42.0),
        (format_datetime(at(-30), usegmt=True), 0.0),  # in the past: retry now
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_mastodon_iso_reset() -> None:
    assert parse_reset("2026-11-23T21:35:00.123456Z", NOW, "iso") == pytest.approx(300.123456)
    assert parse_reset("2026-11-23T21:35:00+00:00", NOW, "iso") == 300.0
    assert parse_reset("1795988100", NOW, "iso") is None  # an epoch is not ISO 8601
    assert parse_reset("tomorrow", NOW, "iso") is None


def test_epoch_and_delta_resets() -> None:
    epoch = str(int(NOW.timestamp()) + 120)
    assert parse_reset(epoch, NOW, "epoch") == 120.0
    assert parse_reset("30", NOW, "delta") == 30.0
    assert parse_reset("2026-11-23T21:35:00Z", NOW, "epoch") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T21:31:00.000000Z", 60.0),  # ISO time (Mastodon)
        (str(int(NOW.timestamp()) + 90), 90.0),  # epoch seconds (Bluesky, X)
        ("45", 45.0),  # delta-seconds (IETF draft)
        ("20261123", 20261123.0),  # digits only are a number, never a compact ISO date
        ("nan", None),
    ],
)
def test_auto_reset_recognises_the_form(value: str, expected: float | None) -> None:
    assert parse_reset(value, NOW, "auto") == expected


def test_retryable_statuses() -> None:
    assert [s for s in (200, 301, 400, 404, 408, 429) if is_retryable(s)] == [429]
    assert [s for s in (500, 501, 502, 503, 504, 505, 599) if is_retryable(s)] == [
        500,
        502,
        503,
        504,
        599,
    ]


# --------------------------------------------------------------------------- backoff


def test_full_jitter_is_bounded_exponential() -> None:
    top = [full_jitter(n, lambda: 0.999999) for n in range(1, 10)]
    assert [round(t) for t in top] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert full_jitter(1, lambda: 0.0) == 0.0
    assert full_jitter(10_000, lambda: 0.5) == BACKOFF_CAP / 2  # no overflow


def test_backoff_draws_from_the_injected_source() -> None:
    first = policy_for("default", rng=random.Random(7))
    second = policy_for("default", rng=random.Random(7))
    waits = [first.backoff(n) for n in range(1, 8)]
    assert waits == [second.backoff(n) for n in range(1, 8)]
    assert all(0 <= w <= min(60, 2 ** (n - 1)) for n, w in enumerate(waits, start=1))


# --------------------------------------------------------------------------- policies


def test_registry() -> None:
    assert set(policy_names()) == {"default", "mastodon", "bluesky"}
    for name in policy_names():
        policy = policy_for(name)
        assert isinstance(policy, RateLimitPolicy)
        assert policy.name == name
    assert policy_for("Mastodon").name == "mastodon"
    assert policy_for("myspace").name == "default"


def test_not_retryable_statuses_get_none() -> None:
    policy = policy_for("mastodon")
    for status in (200, 304, 400, 401, 403, 404, 410, 501):
        assert policy.retry_delay(status, {"Retry-After": "5"}, 1, NOW) is None


def test_mastodon_429_waits_for_the_iso_reset() -> None:
    policy = policy_for("mastodon", rng=Fixed(0.5))
    headers = {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2026-11-23T21:35:00.123456Z",
    }
    # reset - now + the 1 s margin for clock skew
    assert policy.retry_delay(429, headers, 1, NOW) == pytest.approx(301.123456)
    # Retry-After, when present, wins.
    assert policy.retry_delay(429, {**headers, "Retry-After": "7"}, 1, NOW) == 7.0
    # A reset that already passed (our clock is ahead): back off, never retry at once.
    assert policy.retry_delay(429, headers, 3, at(600)) == 2.0


def test_bluesky_429_waits_for_the_epoch_reset_or_the_window() -> None:
    policy = policy_for("bluesky", rng=Fixed(0.5))
    reset = str(int(NOW.timestamp()) + 120)
    headers = {
        "RateLimit-Limit": "3000",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": reset,
        "RateLimit-Policy": "3000;w=300",
    }
    assert policy.retry_delay(429, headers, 1, NOW) == 121.0
    without_reset = {k: v for k, v in headers.items() if k != "RateLimit-Reset"}
    assert policy.retry_delay(429, without_reset, 1, NOW) == 300.0
    # Mastodon's ISO header means nothing to the Bluesky policy: plain backoff.
    assert policy.retry_delay(429, {"X-RateLimit-Reset": "2026-11-23T21:35:00Z"}, 1, NOW) == 0.5


def test_default_understands_every_signal() -> None:
    policy = policy_for("default", rng=Fixed(0.5))
    epoch = str(int(NOW.timestamp()) + 60)
    assert policy.retry_delay(429, {"x-rate-limit-reset": epoch}, 1, NOW) == 61.0
    assert policy.retry_delay(429, {"RateLimit-Reset": "30"}, 1, NOW) == 31.0
    iso = {"X-RateLimit-Reset": "2026-11-23T21:31:00Z"}
    assert policy.retry_delay(429, iso, 1, NOW) == 61.0
    assert policy.retry_delay(429, {}, 2, NOW) == 1.0  # no signal: backoff (0.5 · 2)


def test_5xx_uses_retry_after_else_backoff() -> None:
    policy = policy_for("mastodon", rng=Fixed(0.5))
    assert policy.retry_delay(503, {"Retry-After": "120"}, 1, NOW) == 120.0
    http_date = {"Retry-After": "Mon, 23 Nov 2026 21:31:00 GMT"}
    assert policy.retry_delay(503, http_date, 1, NOW) == 60.0
    assert [policy.retry_delay(500, {}, n, NOW) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    # A 503 with quota headers is not a quota answer: backoff, not the reset.
    reset = {"X-RateLimit-Reset": "2026-11-23T21:35:00Z"}
    assert policy.retry_delay(503, reset, 1, NOW) == 0.5


def test_headers_are_case_insensitive() -> None:
    policy = policy_for("mastodon")
    for headers in (
        {"retry-after": "9"},
        {"RETRY-AFTER": "9"},
        httpx.Headers({"Retry-After": "9"}),
    ):
        assert policy.retry_delay(429, headers, 1, NOW) == 9.0


@pytest.mark.parametrize(
    ("name", "headers", "expected"),
    [
        (
            "mastodon",
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2026-11-23T21:31:00Z"},
            61.0,
        ),
        (
            "mastodon",
            {"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "2026-11-23T21:31:00Z"},
            0.0,
        ),
        ("mastodon", {"X-RateLimit-Remaining": "0"}, 0.0),  # no reset: nothing to wait for
        ("mastodon", {}, 0.0),
        (
            "bluesky",
            {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW.timestamp()) + 10)},
            11.0,
        ),
        ("bluesky", {"RateLimit-Remaining": "0", "RateLimit-Policy": "3000;w=300"}, 300.0),
        (
            "default",
            {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW.timestamp()) + 5)},
            6.0,
        ),
        ("default", {"RateLimit-Remaining": "3, 0", "RateLimit-Reset": "20"}, 21.0),
    ],
)
def test_pace_when_the_quota_is_used_up(
    name: str, headers: dict[str, str], expected: float
) -> None:
    assert policy_for(name).pace(headers, NOW) == expected


def test_custom_policy() -> None:
    policy = HeaderPolicy(
        "custom",
        remaining_headers=("x-left",),
        reset_headers=(("x-again", "delta"),),
        random_unit=lambda: 1.0,
        base=2.0,
        cap=5.0,
        reset_margin=0.0,
    )
    assert policy.pace({"X-Left": "0", "X-Again": "12"}, NOW) == 12.0
    assert [policy.backoff(n) for n in (1, 2, 3)] == [2.0, 4.0, 5.0]
