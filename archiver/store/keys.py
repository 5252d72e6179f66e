"""Validation of store keys, shared by every backend.

A key is a ``/``-separated relative path such as ``warc/<series>/<account>/<period>/<id>.warc.gz``.
The same rules hold on every backend, so an archive can move between a local directory and S3
without a key changing meaning. Keys starting with ``.`` are the backends' reserved namespace
(the local backend keeps its metadata and temporary files there).
"""

from __future__ import annotations

import unicodedata

from archiver.errors import UnsafeKeyError

#: S3's limit on a key, in UTF-8 bytes; applied everywhere so keys stay portable.
MAX_KEY_BYTES = 1024
#: Most filesystems' limit on one path component (NAME_MAX), in bytes.
MAX_SEGMENT_BYTES = 255


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is safe to store under, else raise ``UnsafeKeyError``.

    Refused: empty keys, absolute keys, ``.`` or ``..`` segments, empty segments (``a//b``,
    ``a/``), backslashes, control characters (including NUL), keys over 1024 UTF-8 bytes or
    with a segment over 255 bytes, and keys starting with ``.`` (reserved for the backend).
    """
    if not isinstance(key, str):
        raise UnsafeKeyError(f"a storage key must be a string, not {type(key).__name__}")
    if not key:
        raise UnsafeKeyError("a storage key cannot be empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeKeyError(f"storage key {key!r} is not valid Unicode text") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise UnsafeKeyError(
            f"storage key {key[:60]!r}... is {len(encoded)} bytes long; "
            f"the limit is {MAX_KEY_BYTES} bytes"
        )
    if key.startswith("/"):
        raise UnsafeKeyError(
            f"storage key {key!r} is absolute; keys are relative paths like 'warc/a/b/c'"
        )
    if "\\" in key:
        raise UnsafeKeyError(f"storage key {key!r} contains a backslash; separate parts with '/'")
    for char in key:
        if unicodedata.category(char) == "Cc":
            raise UnsafeKeyError(
                f"storage key {key!r} contains the control character U+{ord(char):04X}"
            )
    for segment in key.split("/"):
        if not segment:
            raise UnsafeKeyError(
                f"storage key {key!r} has an empty part ('//' or a '/' at the end)"
            )
        if segment in {".", ".."}:
            raise UnsafeKeyError(
                f"storage key {key!r} contains a {segment!r} part; keys cannot point "
                "outside themselves"
            )
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise UnsafeKeyError(
                f"storage key {key!r} has a part longer than {MAX_SEGMENT_BYTES} bytes"
            )
    if key.startswith("."):
        raise UnsafeKeyError(
            f"storage key {key!r} starts with '.', which is reserved for the store's own "
            "metadata and temporary files"
        )
    return key
