"""The bodies of control facts (:mod:`archiver.control`), checked and typed for replay.

Each kind's body is fixed (docs: the issue 7 design, "Control fact bodies"); dates are ISO
8601 strings in UTC or null. A body that lacks a field or holds a value of the wrong type is
refused with :class:`BodyError`, which the rebuild reports as a damaged file: replaying half
a fact could, say, create a hold with no scope, which would cover every item.

Fields a body may carry beyond its kind's fixed ones are read where they help (a destroyed
item's ``kind``, ``partition`` or ``state`` in a certificate) and ignored otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.control import Fact


class BodyError(ValueError):
    """A fact's body is not what its kind says it holds."""


@dataclass(frozen=True, slots=True)
class HoldCreated:
    hold: int
    case: str
    kind: str
    reason: str
    accounts: tuple[str, ...]
    created_from: datetime | None
    created_to: datetime | None
    query: str | None


@dataclass(frozen=True, slots=True)
class HoldReleased:
    hold: int
    reason: str


@dataclass(frozen=True, slots=True)
class HoldClosed:
    hold: int
    granted_on: datetime | None
    denied_on: datetime | None


@dataclass(frozen=True, slots=True)
class EventRecorded:
    event: int
    kind: str
    account: str | None
    occurred_at: datetime
    note: str | None


@dataclass(frozen=True, slots=True)
class NoticeRecorded:
    notice: int
    series: str
    kind: str
    on: datetime
    reference: str
    note: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """One item moved to another series."""

    account: str
    item: str
    to: str
    rule: str


@dataclass(frozen=True, slots=True)
class AssignmentChanged:
    cause: str
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class Destroyed:
    """One item a certificate lists as destroyed: what its stub keeps."""

    account: str
    item: str
    series: str
    created_at: datetime | None
    first_captured_at: datetime
    content_sha256: str | None
    kind: str | None = None
    partition: str | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class CertificateIssued:
    certificate: str
    run: str
    report: str
    json_key: str
    html_key: str
    sha256: str
    disposed_at: datetime
    items: tuple[Destroyed, ...]


Body = (
    HoldCreated
    | HoldReleased
    | HoldClosed
    | EventRecorded
    | NoticeRecorded
    | AssignmentChanged
    | CertificateIssued
)


def parse(fact: Fact) -> Body:
    """The typed body of ``fact``; :class:`BodyError` names what is wrong."""
    b = _Fields(fact.body, f"its {fact.kind} fact")
    if fact.kind == "hold.created":
        return HoldCreated(
            hold=b.integer("hold"),
            case=b.text("case"),
            kind=b.choice("kind", ("legal", "prr")),
            reason=b.string("reason"),
            accounts=tuple(b.texts("accounts")),
            created_from=b.time("created_from", optional=True),
            created_to=b.time("created_to", optional=True),
            query=b.opt_text("query"),
        )
    if fact.kind == "hold.released":
        return HoldReleased(hold=b.integer("hold"), reason=b.string("reason"))
    if fact.kind == "hold.closed":
        closed = HoldClosed(
            hold=b.integer("hold"),
            granted_on=b.time("granted_on", optional=True),
            denied_on=b.time("denied_on", optional=True),
        )
        if closed.granted_on is None and closed.denied_on is None:
            raise BodyError(f"{b.where} gives neither granted_on nor denied_on")
        return closed
    if fact.kind == "event.recorded":
        return EventRecorded(
            event=b.integer("event"),
            kind=b.text("kind"),
            account=b.opt_text("account"),
            occurred_at=b.req_time("occurred_at"),
            note=b.opt_text("note"),
        )
    if fact.kind == "notice.recorded":
        return NoticeRecorded(
            notice=b.integer("notice"),
            series=b.text("series"),
            kind=b.choice("kind", ("sent", "waiver")),
            on=b.req_time("on"),
            reference=b.text("reference"),
            note=b.opt_text("note"),
        )
    if fact.kind == "assignment.changed":
        changes = []
        for n, raw in enumerate(b.array("changes")):
            c = _Fields(raw, f"{b.where}, change {n + 1},")
            changes.append(Change(c.text("account"), c.key("item"), c.text("to"), c.text("rule")))
        return AssignmentChanged(cause=b.text("cause"), changes=tuple(changes))
    if fact.kind == "disposition.certificate":
        items = []
        for n, raw in enumerate(b.array("items")):
            i = _Fields(raw, f"{b.where}, item {n + 1},")
            items.append(
                Destroyed(
                    account=i.text("account"),
                    item=i.key("item"),
                    series=i.text("series"),
                    created_at=i.time("created_at", optional=True),
                    first_captured_at=i.req_time("first_captured_at"),
                    content_sha256=i.opt_text("content_sha256"),
                    kind=i.opt_text("kind"),
                    partition=i.opt_text("partition"),
                    state=i.opt_text("state"),
                )
            )
        return CertificateIssued(
            certificate=b.text("certificate"),
            run=b.text("run"),
            report=b.text("report"),
            json_key=b.text("json_key"),
            html_key=b.text("html_key"),
            sha256=b.text("sha256"),
            disposed_at=b.req_time("disposed_at"),
            items=tuple(items),
        )
    # parse_fact already refused kinds outside control.KINDS; a new kind needs code here.
    raise BodyError(f"{b.where} cannot be replayed by this archiver")


class _Fields:
    """Typed access to one JSON object's fields, naming the field that is wrong."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise BodyError(f"{where} is not a JSON object")
        self.raw, self.where = raw, where

    def _get(self, name: str) -> Any:
        if name not in self.raw:
            raise BodyError(f"{self.where} lacks {name!r}")
        return self.raw[name]

    def _wrong(self, name: str, what: str) -> BodyError:
        return BodyError(f"{self.where} has {name!r} = {self.raw.get(name)!r}, not {what}")

    def integer(self, name: str) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(name, "an integer")
        return value

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not value:
            raise self._wrong(name, "a non-empty string")
        return value

    def string(self, name: str) -> str:
        """Free text, which may be empty."""
        value = self._get(name)
        if not isinstance(value, str):
            raise self._wrong(name, "a string")
        return value

    def key(self, name: str) -> str:
        """A platform id: a string, or a number some platforms use."""
        value = self._get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value}"
        return self.text(name)

    def opt_text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is not None and not isinstance(value, str):
            raise self._wrong(name, "a string or null")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name)
        if value not in allowed:
            raise self._wrong(name, " or ".join(allowed))
        return value

    def array(self, name: str) -> list[Any]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._wrong(name, "a list")
        return value

    def texts(self, name: str) -> list[str]:
        value = self.array(name)
        if not all(isinstance(v, str) for v in value):
            raise self._wrong(name, "a list of strings")
        return value

    def req_time(self, name: str) -> datetime:
        value = self.time(name, optional=False)
        assert value is not None
        return value

    def time(self, name: str, *, optional: bool) -> datetime | None:
        value = self.raw.get(name) if optional else self._get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self._wrong(name, "an ISO 8601 time")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self._wrong(name, "an ISO 8601 time") from None
        # The bodies hold UTC; a time without an offset is read as UTC, never as local.
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
