"""Find the line of a key in TOML source, so configuration errors can point at it.

``tomllib`` returns plain dicts without positions. :func:`key_lines` scans the source a
second time (it has already been parsed, so the scanner may be lenient) and records the
line on which every key path is defined; :func:`locate` maps an error location such as
``("accounts", 1, "series")`` to that line, or, for a key that is not in the file, to the
line that opens the nearest enclosing table.

Handled: ``[table]`` and ``[[array.of.tables]]`` headers (each ``[[x]]`` is the next index
of ``x``, and ``[x.sub]`` after it belongs to that element), dotted and quoted keys, inline
tables, and arrays (element ``i`` of an array is located at the line where it starts),
including multi-line arrays and multi-line strings.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A key path as pydantic reports it: table keys are strings, array indices integers.
KeyPath = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _Scanner:
    """A lenient single-pass reader of (already valid) TOML that records key positions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.array_counts: dict[KeyPath, int] = {}

    # -- low-level -----------------------------------------------------------------------

    def _peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def _advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self.pos < len(self.text):
                if self.text[self.pos] == "\n":
                    self.line += 1
                self.pos += 1

    def _skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces, tabs, comments and (when ``newlines``) line breaks."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._advance()
            elif ch == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def _skip_to_eol(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] != "\n":
            self.pos += 1

    def _record(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    # -- keys and strings ----------------------------------------------------------------

    def _string(self) -> str:
        """Read a string of any of the four kinds; return its (approximate) value."""
        quote = self._peek()
        if self.text.startswith(quote * 3, self.pos):
            self._advance(3)
            end = self.text.find(quote * 3, self.pos)
            if quote == '"':
                while end != -1 and _escaped(self.text, end):
                    end = self.text.find(quote * 3, end + 1)
            if end == -1:
                end = len(self.text)
            # A closing delimiter may be followed by up to two more quotes in the value.
            while self.text.startswith(quote * 4, end):
                end += 1
            value = self.text[self.pos : end]
            self._advance(end + 3 - self.pos)
            return value
        self._advance()
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == quote or ch == "\n":
                self._advance()
                break
            if ch == "\\" and quote == '"':
                nxt = self._peek(1)
                out.append(_ESCAPES.get(nxt, nxt))
                self._advance(2)
                continue
            out.append(ch)
            self._advance()
        return "".join(out)

    def _key(self) -> list[str]:
        """Read a possibly dotted, possibly quoted key."""
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            ch = self._peek()
            if ch in {'"', "'"}:
                parts.append(self._string())
            else:
                start = self.pos
                while self._peek() and self._peek() in _BARE:
                    self.pos += 1
                if self.pos == start:  # not a key at all; give up on this line
                    self._skip_to_eol()
                    return parts
                parts.append(self.text[start : self.pos])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return parts
            self._advance()

    # -- values --------------------------------------------------------------------------

    def _value(self, path: KeyPath) -> None:
        self._skip_blank(newlines=False)
        ch = self._peek()
        if ch in {'"', "'"}:
            self._string()
        elif ch == "{":
            self._inline_table(path)
        elif ch == "[":
            self._array(path)
        else:  # number, boolean, date/time: up to the next delimiter
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}\n#":
                self.pos += 1

    def _inline_table(self, path: KeyPath) -> None:
        self._advance()  # "{"
        while True:
            self._skip_blank(newlines=True)
            ch = self._peek()
            if ch in {"}", ""}:
                self._advance()
                return
            if ch == ",":
                self._advance()
                continue
            line = self.line
            keys = self._key()
            if not keys:
                return
            self._record_dotted(path, keys, line)
            self._skip_blank(newlines=False)
            if self._peek() == "=":
                self._advance()
            self._value((*path, *keys))

    def _array(self, path: KeyPath) -> None:
        self._advance()  # "["
        index = 0
        while True:
            self._skip_blank(newlines=True)
            ch = self._peek()
            if ch in {"]", ""}:
                self._advance()
                return
            if ch == ",":
                self._advance()
                index += 1
                continue
            self._record((*path, index), self.line)
            self._value((*path, index))

    def _record_dotted(self, table: KeyPath, keys: Sequence[str], line: int) -> None:
        for depth in range(1, len(keys) + 1):
            self._record((*table, *keys[:depth]), line)

    # -- tables --------------------------------------------------------------------------

    def _concrete(self, keys: Sequence[str]) -> KeyPath:
        """Resolve header keys to a path, entering the current element of table arrays."""
        path: KeyPath = ()
        for key in keys:
            path = (*path, key)
            count = self.array_counts.get(path)
            if count is not None:
                path = (*path, count - 1)
        return path

    def _header(self) -> KeyPath:
        line = self.line
        is_array = self.text.startswith("[[", self.pos)
        self._advance(2 if is_array else 1)
        keys = self._key()
        self._skip_blank(newlines=False)
        self._advance(2 if is_array else 1)
        if is_array:
            parent = self._concrete(keys[:-1])
            array: KeyPath = (*parent, keys[-1])
            count = self.array_counts.get(array, 0)
            self.array_counts[array] = count + 1
            self._record(array, line)
            table: KeyPath = (*array, count)
        else:
            table = self._concrete(keys)
        for depth in range(1, len(table) + 1):
            self._record(table[:depth], line)
        return table

    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            if self._peek() == "[":
                table = self._header()
                continue
            line = self.line
            keys = self._key()
            if not keys:
                continue
            self._record_dotted(table, keys, line)
            self._skip_blank(newlines=False)
            if self._peek() == "=":
                self._advance()
            self._value((*table, *keys))


def _escaped(text: str, index: int) -> bool:
    """Whether the character at ``index`` is preceded by an odd number of backslashes."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every key path defined in the TOML ``text`` to its (1-based) line number.

    Tables opened by a header map to the header's line; keys to the line of the key; array
    elements to the line where the element starts. The first definition wins.
    """
    return _Scanner(text).scan()


def locate(lines: dict[KeyPath, int], path: Sequence[str | int]) -> int:
    """The line for an error at ``path``: the key's own line if it is in the file,
    else the line of the nearest enclosing table or key that is (1 for the document root).
    """
    key = tuple(path)
    while key:
        line = lines.get(key)
        if line is not None:
            return line
        key = key[:-1]
    return 1
