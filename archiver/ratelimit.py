"""Per-platform rate-limit policies: how long to wait, read from what the platform says.

A policy is small, pure and clock-free: the archiving HTTP client (``archiver.http``) hands
it a response's status and headers and the current time, and it answers in seconds.

- :meth:`RateLimitPolicy.retry_delay`: after a 429, a 5xx: how long to wait before trying
  again, or ``None`` when the status is not worth retrying (the response goes to the
  connector).
- :meth:`RateLimitPolicy.pace`: after a successful response: how long to wait before the
  *next* request because the remaining quota is used up (0 otherwise).
- :meth:`RateLimitPolicy.backoff`: after a dropped connection or a timeout, or a 5xx that
  carries no signal: bounded exponential backoff with full jitter (base 1 s, cap 60 s), drawn
  from the policy's random source, which tests inject.

Signals, in order of precedence:

1. ``Retry-After`` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date. Every policy.
2. The platform's quota headers, when the answer is a 429 (or for :meth:`pace`):

   =========== ======================================= ======================================
   policy      headers                                 ``…-Reset`` is
   =========== ======================================= ======================================
   mastodon    ``X-RateLimit-Limit/Remaining/Reset``   an ISO 8601 time, e.g.
               (docs.joinmastodon.org/api/rate-limits) ``2026-11-23T21:35:00.123456Z``
   bluesky     ``RateLimit-Limit/Remaining/Reset`` and epoch seconds (atproto's xrpc-server
               ``RateLimit-Policy: 3000;w=300``        sends ``floor((now + msBeforeNext)/1000)``)
   default     all of the above and X's                recognised by form: ISO 8601 time,
               ``x-rate-limit-remaining/reset``        epoch seconds (> 10⁹) or delta-seconds
                                                       (IETF draft ``RateLimit-Reset``)
   =========== ======================================= ======================================

   A wait derived from a reset time gets :attr:`HeaderPolicy.reset_margin` (1 s) added: the
   platform's clock is not ours, and atproto rounds its reset down to the second. A reset
   that already passed (clock skew) falls back to backoff, so a 429 is never retried at once.
   Without a reset, a Bluesky ``RateLimit-Policy`` window (``w=``) is waited out instead.
3. Otherwise (429 or a retryable 5xx without a usable signal): :meth:`backoff`.

Retryable: 429 and 5xx except 501 (Not Implemented) and 505 (HTTP Version Not Supported),
which no wait will change. Every other status (2xx, 3xx, 4xx) is the connector's to judge.

A connector names its policy (``rate_limit = "mastodon"``); :func:`policy_for` builds it,
and an unknown name gets the default policy, which understands every signal above.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "HeaderPolicy",
    "RateLimitPolicy",
    "ResetStyle",
    "full_jitter",
    "is_retryable",
    "parse_reset",
    "parse_retry_after",
    "policy_for",
    "policy_names",
]

#: Seconds: the first backoff ceiling, doubled each attempt, never above :data:`BACKOFF_CAP`.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: A numeric reset above this is an epoch time, below it delta-seconds (10⁹ s is 31 years).
_EPOCH_THRESHOLD = 1e9
_NOT_RETRYABLE_5XX = frozenset({501, 505})
_WINDOW = re.compile(r"(?:^|;)\s*w\s*=\s*(\d+(?:\.\d+)?)")

#: How a ``…-Reset`` header states its time.
ResetStyle = Literal["iso", "epoch", "delta", "auto"]


@runtime_checkable
class RateLimitPolicy(Protocol):
    """What the archiving client asks a platform's policy (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def retry_delay(
        self, status: int, headers: Mapping[str, str], attempt: int, now: datetime
    ) -> float | None:
        """Seconds to wait before retrying after ``status``, or None if it is not retryable.

        ``attempt`` is the number of attempts made so far (1 after the first).
        """
        ...

    def pace(self, headers: Mapping[str, str], now: datetime) -> float:
        """Seconds to wait before the next request because the quota is exhausted, else 0."""
        ...

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after a connection error or timeout on attempt ``attempt``."""
        ...


def is_retryable(status: int) -> bool:
    """429 and 5xx other than 501/505: statuses a later attempt may get past."""
    return status == 429 or (500 <= status <= 599 and status not in _NOT_RETRYABLE_5XX)


def full_jitter(
    attempt: int,
    random_unit: Callable[[], float],
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^(attempt-1))].

    ``random_unit`` returns a float in [0, 1) (``random.Random().random``).
    """
    exponent = min(max(attempt - 1, 0), 62)  # 2**62 s is past any cap; avoids overflow
    ceiling = min(cap, base * float(2**exponent))
    return ceiling * random_unit()


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` a ``Retry-After`` value asks for (>= 0); None if unusable."""
    if value is None or not (text := value.strip()):
        return None
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" or a zone email.utils did not know: RFC 9110 says GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _parse_iso(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_reset(value: str | None, now: datetime, style: ResetStyle = "auto") -> float | None:
    """Seconds from ``now`` until a ``…-Reset`` time (negative if it passed); None if unusable.

    ``style`` says how the platform writes it; ``"auto"`` recognises the form (module table).
    """
    if value is None or not (text := value.strip()):
        return None
    numeric = _is_number(text)
    if style == "iso" or (style == "auto" and not numeric):
        moment = _parse_iso(text)
        return None if moment is None else (moment - now).total_seconds()
    if not numeric:
        return None
    number = float(text)
    if not math.isfinite(number) or number < 0:
        return None
    if style == "epoch" or (style == "auto" and number > _EPOCH_THRESHOLD):
        return number - now.timestamp()
    return number


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\d+(?:\.\d+)?", text) is not None


def _first_number(value: str | None) -> float | None:
    """The smallest number of a (possibly comma-joined, repeated) numeric header."""
    if value is None:
        return None
    numbers = [float(part) for part in value.split(",") if _is_number(part.strip())]
    return min(numbers) if numbers else None


@dataclass(frozen=True)
class HeaderPolicy:
    """A :class:`RateLimitPolicy` driven by ``Retry-After`` and a platform's quota headers.

    ``remaining_headers`` and ``reset_headers`` (with how each states its time) are looked
    up case-insensitively, first match wins. ``random_unit`` is the jitter source.
    """

    name: str
    remaining_headers: tuple[str, ...]
    reset_headers: tuple[tuple[str, ResetStyle], ...]
    window_header: str | None = None
    random_unit: Callable[[], float] = field(default=random.random, compare=False)
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    reset_margin: float = 1.0

    def retry_delay(
        self, status: int, headers: Mapping[str, str], attempt: int, now: datetime
    ) -> float | None:
        if not is_retryable(status):
            return None
        lower = _lower(headers)
        retry_after = parse_retry_after(lower.get("retry-after"), now)
        if retry_after is not None:
            return retry_after
        if status == 429:
            wait = self._until_reset(lower, now)
            if wait is not None:
                return wait
        return self.backoff(attempt)

    def pace(self, headers: Mapping[str, str], now: datetime) -> float:
        lower = _lower(headers)
        remaining = next(
            (n for h in self.remaining_headers if (n := _first_number(lower.get(h))) is not None),
            None,
        )
        if remaining is None or remaining > 0:
            return 0.0
        return self._until_reset(lower, now) or 0.0

    def backoff(self, attempt: int) -> float:
        return full_jitter(attempt, self.random_unit, base=self.base, cap=self.cap)

    def _until_reset(self, lower: Mapping[str, str], now: datetime) -> float | None:
        """Seconds until the quota resets (with the margin); None if unknown or passed."""
        for header, style in self.reset_headers:
            seconds = parse_reset(lower.get(header), now, style)
            if seconds is not None:
                return seconds + self.reset_margin if seconds > 0 else None
        if self.window_header is not None:
            match = _WINDOW.search(lower.get(self.window_header, ""))
            if match:
                return float(match.group(1))
        return None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _default(random_unit: Callable[[], float]) -> HeaderPolicy:
    return HeaderPolicy(
        "default",
        remaining_headers=(
            "ratelimit-remaining",
            "x-ratelimit-remaining",
            "x-rate-limit-remaining",
        ),
        reset_headers=(
            ("ratelimit-reset", "auto"),
            ("x-ratelimit-reset", "auto"),
            ("x-rate-limit-reset", "epoch"),
        ),
        window_header="ratelimit-policy",
        random_unit=random_unit,
    )


def _mastodon(random_unit: Callable[[], float]) -> HeaderPolicy:
    return HeaderPolicy(
        "mastodon",
        remaining_headers=("x-ratelimit-remaining",),
        reset_headers=(("x-ratelimit-reset", "iso"),),
        random_unit=random_unit,
    )


def _bluesky(random_unit: Callable[[], float]) -> HeaderPolicy:
    return HeaderPolicy(
        "bluesky",
        remaining_headers=("ratelimit-remaining",),
        reset_headers=(("ratelimit-reset", "epoch"),),
        window_header="ratelimit-policy",
        random_unit=random_unit,
    )


_REGISTRY: dict[str, Callable[[Callable[[], float]], HeaderPolicy]] = {
    "default": _default,
    "mastodon": _mastodon,
    "bluesky": _bluesky,
}


def policy_names() -> tuple[str, ...]:
    """The names :func:`policy_for` knows."""
    return tuple(_REGISTRY)


def policy_for(name: str, *, rng: random.Random | None = None) -> RateLimitPolicy:
    """The policy called ``name`` (a connector's ``rate_limit``); unknown names get the default.

    ``rng`` is the jitter source (tests pass a seeded or stubbed ``random.Random``).
    """
    factory = _REGISTRY.get(name.strip().lower(), _default)
    return factory(rng.random if rng is not None else random.random)
