"""Load and validate retention schedules: every ``*.toml`` of a directory into :class:`Series`.

The shipped schedules are the ``schedules`` package's TOML files
(``schedules/wisconsin-municipal.toml``); ``[retention] schedules_dir`` replaces them with a
City's own directory. A schedule file holds an optional ``[schedule]`` table (title,
jurisdiction, description) and one ``[[series]]`` table per records series; the keys are
documented at the top of the shipped file and in README.md ("Retention schedules").

Every problem is reported at once as a ``ConfigError``, one line each, as
``<file>:<line>: <key path>: <what is wrong and what to write instead>``, like the
configuration file's errors. The series themselves are :class:`archiver.retention.Series`
(re-exported here): the retention rules stay pure and never import the loader.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, cast, get_args

from archiver.errors import ConfigError, UnsafeKeyError
from archiver.layout import check_segment
from archiver.retention import DispositionAction, NoticeRule, Period, Series, Trigger
from archiver.tomlpos import KeyPath, key_lines, locate

__all__ = ["Schedules", "Series", "load_schedule_dirs", "load_schedules", "shipped_schedules_dir"]

_TRIGGERS: tuple[str, ...] = get_args(Trigger)
_DISPOSITIONS: tuple[str, ...] = get_args(DispositionAction)
_CUTOFFS = ("calendar", "fiscal")
_TOP_KEYS = ("schedule", "series")
_SCHEDULE_KEYS = ("title", "jurisdiction", "description")
_SERIES_KEYS = (
    "code",
    "title",
    "description",
    "period",
    "trigger",
    "cutoff",
    "event",
    "disposition",
    "notice",
    "authority",
    "example",
    "confirm",
    "default",
)
_PERIOD_KEYS = ("years", "months", "days")
_NOTICE_KEYS = ("required", "days", "to")
_DEFAULT_NOTICE = NoticeRule(required=False)


@dataclass(frozen=True, eq=False)
class Schedules(Mapping[str, Series]):
    """The loaded series by code (in file and definition order), and the default's code."""

    series: Mapping[str, Series]
    default: str
    files: tuple[Path, ...]

    def __getitem__(self, code: str) -> Series:
        return self.series[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    @property
    def default_series(self) -> Series:
        return self.series[self.default]

    @property
    def examples(self) -> tuple[Series, ...]:
        """The illustration-only series, each to be confirmed by the records officer."""
        return tuple(s for s in self.series.values() if s.example)


def shipped_schedules_dir() -> Path:
    """The directory of the schedules installed with the archiver (package ``schedules``)."""
    root = files("schedules")
    if not isinstance(root, Path):
        raise ConfigError(
            f"the shipped retention schedules are not on the file system ({root}); set "
            "[retention] schedules_dir to a directory of schedule files"
        )
    return root


def load_schedules(directory: Path | None = None) -> Schedules:
    """Load and validate every ``*.toml`` in ``directory`` (default: the shipped schedules)."""
    return load_schedule_dirs([shipped_schedules_dir() if directory is None else directory])


def load_schedule_dirs(directories: Sequence[Path]) -> Schedules:
    """Load and validate every ``*.toml`` of several directories as one set of schedules:
    codes unique across all files, exactly one default among them."""
    paths: list[Path] = []
    for directory in directories:
        if not directory.is_dir():
            raise ConfigError(
                f"retention schedules directory {directory} does not exist or is not a "
                "directory; fix [retention] schedules_dir, or remove it to use the shipped "
                "Wisconsin schedule"
            )
        found = sorted(p for p in directory.glob("*.toml") if p.is_file())
        if not found:
            raise ConfigError(
                f"retention schedules directory {directory} holds no *.toml schedule files; "
                "add one (see the shipped schedules/wisconsin-municipal.toml)"
            )
        paths.extend(found)
    loader = _Loader()
    for path in paths:
        loader.load_file(path)
    return loader.finish(tuple(paths))


# --- validation -----------------------------------------------------------------------------


def _key_text(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choices(values: Sequence[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


class _File:
    """One schedule file: its parsed tables and where each key is, collecting problems."""

    def __init__(self, path: Path, text: str, problems: list[tuple[Path, int, str]]) -> None:
        self.path = path
        self.lines = key_lines(text)
        self.problems = problems

    def line(self, key: KeyPath) -> int:
        return locate(self.lines, key)

    def problem(self, key: KeyPath, message: str, *, near: KeyPath | None = None) -> None:
        """Record a problem with ``key``, at its line (or at ``near``'s, the key that
        called for a missing one)."""
        line = self.line(key if near is None or key in self.lines else near)
        self.problems.append((self.path, line, f"{_key_text(key)}: {message}"))

    def known_keys(self, table: Mapping[str, Any], key: KeyPath, allowed: Sequence[str]) -> None:
        for name in table:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "expected one of: "
                if not close:
                    hint += ", ".join(allowed)
                self.problem((*key, name), f"unknown key; {hint}")

    def table(self, parent: Mapping[str, Any], key: KeyPath) -> Mapping[str, Any] | None:
        value = parent.get(str(key[-1]))
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"expected a table (got {_got(value)})")
            return None
        return cast(Mapping[str, Any], value)

    def string(
        self, parent: Mapping[str, Any], key: KeyPath, what: str, *, required: bool
    ) -> str | None:
        value = parent.get(str(key[-1]))
        if value is None:
            if required:
                self.problem(key, f"required key is missing: {what}")
            return None
        if not isinstance(value, str):
            self.problem(key, f"expected a string: {what} (got {_got(value)})")
            return None
        if not value.strip():
            self.problem(key, f"must not be empty: {what}")
            return None
        return value.strip()

    def choice(
        self, parent: Mapping[str, Any], key: KeyPath, choices: Sequence[str], *, required: bool
    ) -> str | None:
        value = parent.get(str(key[-1]))
        if value is None:
            if required:
                self.problem(key, f"required key is missing: one of {_choices(choices)}")
            return None
        if value not in choices:
            self.problem(key, f"expected one of {_choices(choices)} (got {_got(value)})")
            return None
        return cast(str, value)

    def boolean(self, parent: Mapping[str, Any], key: KeyPath, *, default: bool | None) -> bool:
        value = parent.get(str(key[-1]))
        if value is None:
            if default is None:
                self.problem(key, "required key is missing: true or false")
                return False
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false (got {_got(value)})")
            return False
        return value

    def count(self, parent: Mapping[str, Any], key: KeyPath, default: int) -> int:
        value = parent.get(str(key[-1]), default)
        if type(value) is not int or value < 0:
            self.problem(key, f"expected a whole number, 0 or more (got {_got(value)})")
            return default
        return value

    def segment(self, value: str, key: KeyPath, what: str) -> str | None:
        try:
            return check_segment(value, what)
        except UnsafeKeyError:
            self.problem(
                key,
                f"{value!r} is not a valid {what}: use letters, digits, '.', '_' or '-', "
                "starting with a letter or digit (at most 128 characters); it becomes part "
                "of storage keys",
            )
            return None


class _Loader:
    """Reads schedule files one by one, then checks what spans them (codes, the default)."""

    def __init__(self) -> None:
        self.problems: list[tuple[Path, int, str]] = []
        self.series: dict[str, Series] = {}
        self.defined_at: dict[str, str] = {}
        self.defaults: list[tuple[Series, _File, KeyPath]] = []

    def load_file(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read retention schedule {path}: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            self.problems.append((path, line, "the file is not valid UTF-8 text"))
            return
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = _line_in_message(str(exc), text)
            self.problems.append((path, line, f"TOML syntax error: {exc}"))
            return
        f = _File(path, text, self.problems)
        f.known_keys(data, (), _TOP_KEYS)
        schedule = f.table(data, ("schedule",))
        if schedule is not None:
            f.known_keys(schedule, ("schedule",), _SCHEDULE_KEYS)
        tables = data.get("series")
        if (
            not isinstance(tables, list)
            or not tables
            or not all(isinstance(t, dict) for t in tables)
        ):
            f.problem(
                ("series",),
                "expected one or more [[series]] tables, each defining a records series",
            )
            return
        for index, table in enumerate(tables):
            self._series(f, index, table)

    def _series(self, f: _File, index: int, table: Mapping[str, Any]) -> None:
        at: KeyPath = ("series", index)
        before = len(self.problems)
        f.known_keys(table, at, _SERIES_KEYS)
        code = f.string(table, (*at, "code"), 'the series code, e.g. "social-media"', required=True)
        if code is not None:
            code = f.segment(code, (*at, "code"), "series code")
        title = f.string(table, (*at, "title"), "the series' title", required=True)
        description = table.get("description", "")
        if not isinstance(description, str):
            f.problem((*at, "description"), f"expected a string (got {_got(description)})")
        trigger = f.choice(table, (*at, "trigger"), _TRIGGERS, required=True)
        disposition = f.choice(table, (*at, "disposition"), _DISPOSITIONS, required=True)
        authority = f.string(
            table, (*at, "authority"), "the legal authority for the period", required=True
        )
        period = self._period(f, table, at, disposition)
        cutoff = self._only_for(f, table, at, trigger, "cutoff")
        if cutoff is not None and cutoff not in _CUTOFFS:
            f.problem((*at, "cutoff"), f"expected one of {_choices(_CUTOFFS)} (got {_got(cutoff)})")
        event = self._only_for(f, table, at, trigger, "event")
        if event is not None:
            if not isinstance(event, str):
                f.problem((*at, "event"), f"expected a string (got {_got(event)})")
            else:
                f.segment(event, (*at, "event"), "event kind")
        notice = self._notice(f, table, at, disposition)
        example = f.boolean(table, (*at, "example"), default=False)
        confirm = f.string(
            table,
            (*at, "confirm"),
            "what the City's records officer must confirm before using this example series",
            required=False,
        )
        if example and "confirm" not in table:
            f.problem(
                (*at, "confirm"),
                "required key is missing: what the City's records officer must confirm before "
                "using this example series",
                near=(*at, "example"),
            )
        if confirm is not None and not example:
            f.problem(
                (*at, "confirm"),
                "only example series (example = true) carry a confirm text; remove it",
            )
        default = f.boolean(table, (*at, "default"), default=False)
        if len(self.problems) > before:
            return
        source = f"{f.path}:{f.line(at)}"
        series = Series(
            code=cast(str, code),
            title=cast(str, title),
            description=cast(str, description).strip(),
            period=period,
            trigger=cast(Trigger, trigger),
            cutoff=cutoff,
            event=event,
            disposition=cast(DispositionAction, disposition),
            notice=notice,
            authority=cast(str, authority),
            example=example,
            confirm=confirm,
            default=default,
            source=source,
        )
        first = self.defined_at.get(series.code)
        if first is not None:
            f.problem(
                (*at, "code"),
                f"code {series.code!r} is already defined at {first}; series codes must be "
                "unique across all schedule files",
            )
            return
        self.series[series.code] = series
        self.defined_at[series.code] = source
        if default:
            self.defaults.append((series, f, (*at, "default")))

    def _period(
        self, f: _File, table: Mapping[str, Any], at: KeyPath, disposition: str | None
    ) -> Period:
        key = (*at, "period")
        if "period" not in table:
            if disposition != "permanent":
                f.problem(key, "required key is missing: e.g. period = { years = 7 }")
            return Period()
        values = f.table(table, key)
        if values is None:
            return Period()
        f.known_keys(values, key, _PERIOD_KEYS)
        period = Period(*(f.count(values, (*key, unit), 0) for unit in _PERIOD_KEYS))
        if period.is_zero and disposition == "destroy":
            f.problem(
                key,
                "a series that destroys records needs a period longer than 0: set years, "
                "months or days",
            )
        return period

    def _only_for(
        self, f: _File, table: Mapping[str, Any], at: KeyPath, trigger: str | None, name: str
    ) -> Any:
        """The value of ``cutoff`` or ``event``, which belong to the trigger of that name."""
        value = table.get(name)
        if trigger == name and value is None:
            what = (
                '"calendar" or "fiscal" (the year whose end starts the period)'
                if name == "cutoff"
                else 'the event kind that starts the period, e.g. "account-closed"'
            )
            f.problem(
                (*at, name), f'required when trigger = "{name}": {what}', near=(*at, "trigger")
            )
        elif trigger is not None and trigger != name and value is not None:
            f.problem((*at, name), f'only applies when trigger = "{name}"; remove it')
            return None
        return value

    def _notice(
        self, f: _File, table: Mapping[str, Any], at: KeyPath, disposition: str | None
    ) -> NoticeRule:
        key = (*at, "notice")
        if "notice" not in table:
            if disposition == "destroy":
                f.problem(
                    key,
                    "required for a series that destroys records: e.g. notice = { required = "
                    'true, days = 60, to = "Wisconsin Historical Society" } (or required = '
                    "false where notice is waived)",
                    near=(*at, "disposition"),
                )
            return _DEFAULT_NOTICE
        values = f.table(table, key)
        if values is None:
            return _DEFAULT_NOTICE
        f.known_keys(values, key, _NOTICE_KEYS)
        required = f.boolean(values, (*key, "required"), default=None)
        days = f.count(values, (*key, "days"), _DEFAULT_NOTICE.days)
        to = f.string(values, (*key, "to"), "who receives the notice", required=False)
        return NoticeRule(required=required, days=days, to=to or _DEFAULT_NOTICE.to)

    def finish(self, paths: tuple[Path, ...]) -> Schedules:
        if not self.problems:
            if not self.defaults:
                self.problems.append(
                    (
                        paths[0],
                        1,
                        "no series has default = true; mark exactly one series (the records "
                        "not otherwise scheduled) as the default",
                    )
                )
            for series, f, key in self.defaults[1:]:
                first, first_file, first_key = self.defaults[0]
                f.problem(
                    key,
                    f"series {series.code!r} is marked default = true, and so is {first.code!r} "
                    f"({first_file.path}:{first_file.line(first_key)}); exactly one series may "
                    "be the default",
                )
        if self.problems:
            order = {path: i for i, path in enumerate(paths)}
            self.problems.sort(key=lambda p: (order.get(p[0], len(order)), p[1]))
            raise ConfigError(
                "\n".join(f"{path}:{line}: {message}" for path, line, message in self.problems)
            )
        return Schedules(series=dict(self.series), default=self.defaults[0][0].code, files=paths)


_TOML_LINE = re.compile(r"at line (\d+)")


def _line_in_message(message: str, text: str) -> int:
    found = _TOML_LINE.search(message)
    return int(found.group(1)) if found else text.count("\n") + 1
