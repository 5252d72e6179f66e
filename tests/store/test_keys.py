"""Store keys: what every backend accepts and refuses, and why it says so."""

from __future__ import annotations

import pytest

from archiver.errors import StoreError, UnsafeKeyError
from archiver.store.keys import validate_key


@pytest.mark.parametrize(
    "key",
    [
        "warc/general/city-hall/2024-03/01HQZX3Y4W5V6T7S8R9P0N1M2K.warc.gz",
        "parquet/general/city-hall/2024-03/items.parquet",
        "layout-version",
        "control/audit/head-2024-03-01T00:00:00Z.json",
        "a/.hidden-below-the-top-is-fine",
        "café/ünïcode",
        "a" * 255,
        "/".join(["abcd"] * 204),  # 1019 bytes: under the limit
    ],
)
def test_safe_keys_are_returned_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "cannot be empty"),
        ("/etc/passwd", "absolute"),
        ("../../etc/passwd", "'..' part"),
        ("a/../../b", "'..' part"),
        ("a/./b", "'.' part"),
        (".", "'.' part"),
        ("a//b", "empty part"),
        ("a/", "empty part"),
        ("a\\b", "backslash"),
        ("..\\..\\windows", "backslash"),
        ("a\x00b", "control character U\\+0000"),
        ("a\nb", "control character U\\+000A"),
        ("a\x7fb", "control character U\\+007F"),
        ("a\x85b", "control character U\\+0085"),
        (".meta/x", "reserved"),
        (".tmp/put-123", "reserved"),
        (".lock", "reserved"),
        (".hidden", "reserved"),
        ("a" * 1025, "1025 bytes long"),
        ("é" * 513, "1026 bytes long"),
        ("x/" + "b" * 256, "longer than 255 bytes"),
        ("a\udc80b", "not valid Unicode"),
    ],
)
def test_unsafe_keys_are_refused_with_the_reason(key: str, why: str) -> None:
    with pytest.raises(UnsafeKeyError, match=why):
        validate_key(key)


def test_an_unsafe_key_is_a_store_error() -> None:
    """The CLI maps every store refusal to the store's exit code."""
    with pytest.raises(StoreError):
        validate_key("../x")


def test_a_key_must_be_a_string() -> None:
    with pytest.raises(UnsafeKeyError, match="must be a string"):
        validate_key(b"warc/x")  # type: ignore[arg-type]
