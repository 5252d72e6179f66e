"""Removing credentials from anything the archiver writes: logs and WARC request records.

Redaction rules
===============

1. **Secret names** (:func:`is_secret_name`). A name is split into words on every
   character that is not a letter or digit and at camelCase boundaries, then lowercased;
   trailing all-digit words are dropped (``X-Hub-Signature-256`` -> ``x hub signature``).
   The name is secret when

   - its last word is one of :data:`SECRET_WORDS` (``token``, ``secret``, ``password``,
     ``passwd``, ``passphrase``, ``authorization``, ``auth``, ``cookie``, ``credential``,
     ``session``, ``signature``, ``apikey`` and their plurals), or
   - its last word *ends with* one of the unambiguous long words (``accesstoken``,
     ``clientsecret``, ``xapikey``; not ``auth`` or ``session``, which end ``oauth`` and
     ``possession``), or
   - its last two words are one of :data:`SECRET_PAIRS` (``api_key``, ``access_key``,
     ``client_secret``, ``session_id``, ``appsecret_proof``, ...).

   So ``access_token``, ``X-Auth-Token``, ``page_token``, ``Authorization``,
   ``client_secret``, ``apiKey`` and ``Set-Cookie`` are secret, while ``token_count``,
   ``token_type``, ``auth_method`` and ``session_count`` are not: a name is judged by what
   it ends with, which is what its value is.

2. **Mapping keys.** In a mapping (the event dict, or any nested dict) the value of a
   secret-named key is replaced by ``"[REDACTED]"`` whatever its type, except ``None``,
   ``""`` and booleans, which cannot carry a secret and whose absence is worth logging.

3. **Text.** Every string, at any depth (the event message, exception text, values in
   nested lists and dicts), is scrubbed of

   - registered secrets (:func:`register_secret`), verbatim and URL-/JSON-escaped;
   - credentials in URLs: the password of ``user:password@``, and query or fragment
     parameters with secret names (``?access_token=abc&x=1`` ->
     ``?access_token=[REDACTED]&x=1``);
   - ``Bearer <token>`` (token of 8+ characters) and ``Basic <base64>`` (only when it
     decodes to ``user:password``), with or without an ``Authorization:`` prefix;
   - header lines ``Name: value`` with a secret name (at the start of a line);
   - ``"name": "value"`` / ``'name': 'value'`` pairs (JSON, Python reprs) and
     ``name=value`` pairs (form bodies, DSNs, ``--password=...``, keyword reprs) with a
     secret name.

4. Other objects are scrubbed through their ``repr``: if it changes, the scrubbed ``repr``
   is logged instead of the object.

Redaction is idempotent: text that was redacted once is not changed again.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "SECRET_PAIRS",
    "SECRET_WORDS",
    "clear_registered_secrets",
    "is_secret_name",
    "redact",
    "redact_headers",
    "redact_mapping",
    "redact_text",
    "redact_url",
    "register_secret",
    "registered_secrets",
    "scrub_registered",
]

REDACTED = "[REDACTED]"
"""What a removed secret is replaced with."""

SECRET_WORDS: frozenset[str] = frozenset(
    {
        "token",
        "tokens",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "passphrase",
        "authorization",
        "auth",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "session",
        "sessionid",
        "signature",
        "apikey",
    }
)
"""A name whose last word is one of these is secret."""

_SECRET_SUFFIXES: tuple[str, ...] = tuple(
    sorted(SECRET_WORDS - {"auth", "session", "sessionid"}, key=len, reverse=True)
)
"""A last word *ending* with one of these is secret too (``accesstoken``)."""

SECRET_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("private", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
        ("session", "id"),
        ("session", "key"),
        ("client", "secret"),
        ("appsecret", "proof"),
    }
)
"""A name whose last two words are one of these pairs is secret."""

MIN_REGISTERED_SECRET_LENGTH = 6
"""Shorter values are not registered: scrubbing them would mangle ordinary text."""

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# Keys structlog's ProcessorFormatter puts into the event dict for its own use.
_META_KEYS = frozenset({"_record", "_from_structlog"})


def is_secret_name(name: str) -> bool:
    """Whether a key, header, parameter or field called *name* holds a secret.

    The rule is described in the module docstring (rule 1).
    """
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    while words and words[-1].isdigit():
        words.pop()
    if not words:
        return False
    last = words[-1].rstrip("0123456789") or words[-1]
    if last in SECRET_WORDS or last.endswith(_SECRET_SUFFIXES):
        return True
    return len(words) >= 2 and (words[-2], last) in SECRET_PAIRS


# --------------------------------------------------------------------------- registry

_registry_lock = threading.Lock()
_registered: set[str] = set()
_registered_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> bool:
    """Scrub *value* verbatim from everything logged or redacted from now on.

    Call it with every secret the configuration resolves (tokens, passwords). Values
    shorter than :data:`MIN_REGISTERED_SECRET_LENGTH` characters are not registered;
    returns whether *value* was.
    """
    global _registered_pattern
    if not isinstance(value, str) or len(value) < MIN_REGISTERED_SECRET_LENGTH:
        return False
    forms = {value, quote(value, safe=""), quote_plus(value, safe=""), json.dumps(value)[1:-1]}
    with _registry_lock:
        _registered.update(f for f in forms if len(f) >= MIN_REGISTERED_SECRET_LENGTH)
        _registered_pattern = None
    return True


def clear_registered_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _registered_pattern
    with _registry_lock:
        _registered.clear()
        _registered_pattern = None


def registered_secrets() -> frozenset[str]:
    """Every registered secret form (verbatim, percent-encoded, JSON-escaped)."""
    with _registry_lock:
        return frozenset(_registered)


def _registered_regex() -> re.Pattern[str] | None:
    global _registered_pattern
    with _registry_lock:
        if _registered_pattern is None and _registered:
            alternatives = sorted(_registered, key=len, reverse=True)
            _registered_pattern = re.compile("|".join(re.escape(a) for a in alternatives))
        return _registered_pattern


# --------------------------------------------------------------------------- URLs

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`]+")


def _redact_params(params: str) -> str:
    """Redact secret-named ``name=value`` pairs of a query string or fragment."""
    if "=" not in params:
        return params
    parts = params.split("&")
    for i, part in enumerate(parts):
        name, sep, value = part.partition("=")
        if sep and value and value != REDACTED and is_secret_name(unquote_plus(name)):
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


def redact_url(url: str) -> str:
    """Return *url* with its credentials replaced by ``[REDACTED]``.

    Removes the password of ``user:password@``, the values of query and fragment
    parameters with secret names (``access_token``, ``X-Amz-Signature``, ...) and any
    registered secret. Everything else is kept byte for byte (no re-encoding), so the
    result still identifies the resource.
    """
    url = scrub_registered(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_params(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password and password != REDACTED:
            netloc = f"{user}:{REDACTED}@{hostport}"
    query = _redact_params(parts.query)
    fragment = _redact_params(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of *headers* safe to write or log.

    Headers with secret names (``Authorization``, ``Cookie``, ``Set-Cookie``,
    ``X-Auth-Token``, ``X-Api-Key``, ...) get the value ``[REDACTED]``; every other value
    is scrubbed like text (a ``Location`` or ``Referer`` URL loses its token). Names and
    their order are kept.
    """
    return {
        name: (REDACTED if value and is_secret_name(name) else redact_text(value))
        for name, value in headers.items()
    }


# --------------------------------------------------------------------------- text

_NOT_REDACTED = r"(?!\[REDACTED\])"
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)" + _NOT_REDACTED + r"([A-Za-z0-9\-._~+/]{8,}=*)")
_BASIC = re.compile(r"(?i)\b(basic)(\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
_HEADER_LINE = re.compile(r"(?m)^([ \t]*)([A-Za-z0-9][A-Za-z0-9_\-]*)([ \t]*:[ \t]*)(\S[^\r\n]*)")
_QUOTED_PAIR = re.compile(
    r"""(?P<q1>["'])(?P<name>[A-Za-z0-9_.\-]+)(?P=q1)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<q2>["'])""" + _NOT_REDACTED + r"""(?P<value>(?:\\.|(?!(?P=q2)).)+)(?P=q2)"""
)
_PLAIN_PAIR = re.compile(
    r"""(?<![A-Za-z0-9_.\-"'])(?P<name>[A-Za-z0-9_.\-]+)(?P<sep>=)"""
    r"""(?:(?P<q>["'])""" + _NOT_REDACTED + r"""(?P<qvalue>(?:\\.|(?!(?P=q)).)+)(?P=q)"""
    r"""|""" + _NOT_REDACTED + r"""(?P<value>[^\s&;,"'<>()\[\]{}#]+))"""
)


def scrub_registered(text: str) -> str:
    """Replace registered secrets only; leaves secret-looking *patterns* alone.

    For archived content (an item's text may legitimately say "password=..."), where only a
    value we know to be one of our secrets must go.
    """
    pattern = _registered_regex()
    return pattern.sub(REDACTED, text) if pattern is not None else text


def _basic_sub(match: re.Match[str]) -> str:
    credentials = match.group(3)
    try:
        decoded = base64.b64decode(credentials + "=" * (-len(credentials) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return match.group(0)
    if ":" not in text or not text.isprintable():
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def _header_sub(match: re.Match[str]) -> str:
    indent, name, sep, value = match.groups()
    if not is_secret_name(name) or value.startswith(REDACTED):
        return match.group(0)
    return f"{indent}{name}{sep}{REDACTED}"


def _quoted_sub(match: re.Match[str]) -> str:
    if not is_secret_name(match["name"]):
        return match.group(0)
    q1, q2 = match["q1"], match["q2"]
    return f"{q1}{match['name']}{q1}{match['sep']}{q2}{REDACTED}{q2}"


_AUTH_SCHEMES = frozenset({"bearer", "basic", "oauth", "token", "digest"})


def _plain_sub(match: re.Match[str]) -> str:
    if not is_secret_name(match["name"]):
        return match.group(0)
    value = match["value"]
    if value is not None and value.lower() in _AUTH_SCHEMES:
        rest = match.string[match.end() :]
        if rest.lstrip(" \t").startswith(REDACTED):  # "Bearer [REDACTED]": keep the scheme
            return match.group(0)
    quote_char = match["q"] or ""
    return f"{match['name']}={quote_char}{REDACTED}{quote_char}"


def redact_text(text: str) -> str:
    """Return *text* with every credential the rules recognise replaced (module rule 3)."""
    text = scrub_registered(text)
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if "basic" in lowered:
        text = _BASIC.sub(_basic_sub, text)
    if ":" in text:
        text = _HEADER_LINE.sub(_header_sub, text)
    if "'" in text or '"' in text:
        text = _QUOTED_PAIR.sub(_quoted_sub, text)
    if "=" in text:
        text = _PLAIN_PAIR.sub(_plain_sub, text)
    return text


# --------------------------------------------------------------------------- values


def redact_mapping(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in mapping.items():
        if isinstance(key, str) and key in _META_KEYS:
            out[key] = value
        elif (
            isinstance(key, str)
            and is_secret_name(key)
            and value is not None
            and value != ""
            and not isinstance(value, bool)
        ):
            out[key] = REDACTED
        else:
            out[key] = redact(value)
    return out


def redact(value: Any) -> Any:
    """Return a copy of *value* with secrets removed (module rules 2 to 4).

    Strings are scrubbed; mappings, lists, tuples and sets are copied with their items
    redacted (values of secret-named keys replaced); numbers, booleans and ``None`` are
    returned as they are; any other object is returned unchanged unless its ``repr``
    contains a secret, in which case the scrubbed ``repr`` is returned.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(redact(v) for v in value)
    if isinstance(value, set | frozenset):
        return type(value)(redact(v) for v in value)
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1")
        scrubbed = redact_text(text)
        return value if scrubbed == text else scrubbed.encode("latin-1")
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break logging
        return f"<unrepresentable {type(value).__name__}>"
    scrubbed = redact_text(text)
    return value if scrubbed == text else scrubbed
