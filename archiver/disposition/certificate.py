"""Certificates of destruction: what a disposition run destroyed, as JSON and a readable page.

A certificate is the lasting evidence that records were destroyed lawfully: which series
and under what authority, how many items created when, which stored files and records
(with their SHA-256 digests) went, who executed and who approved it, which notice to the
historical society allowed it, and the head of the audit chain when it was written. It
also says what did *not* go yet: raw exchanges still evidencing kept items (and when they
will follow), objects waiting for a COMPLIANCE lock, items excluded at execution.

It is written twice, from the same :class:`CertificateData`:

- ``control/certificates/<id>.json``: canonical JSON (sorted keys, UTF-8), the document
  of record; its SHA-256 is in the catalog and in the ``disposition.certificate`` control
  fact, so a rebuilt catalog knows it too;
- ``control/certificates/<id>.html``: a self-contained page (no external assets, every
  value escaped) a records officer, an auditor or a judge can read in any browser.

Both are write-once and retained for :data:`RETAIN_YEARS` years (locked on S3): the
certificate outlives the records it describes.
"""

from __future__ import annotations

import hashlib
import html
import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from archiver import __version__, clock
from archiver.catalog.models import Certificate
from archiver.control import write_fact
from archiver.errors import IntegrityError, ObjectNotFoundError
from archiver.store.base import Store
from archiver.warc import WarcInfo

FORMAT = "city-archiver certificate of destruction v1"
PREFIX = "control/certificates/"
#: How long the certificate objects are locked for: "permanently", for any practical purpose.
RETAIN_YEARS = 100
#: Lists longer than this are folded into a <details> element on the page.
LONG = 12


@dataclass
class CertificateData:
    """Everything a certificate states (filled by the disposition run). Dates: ISO strings."""

    certificate_id: str
    run_id: str
    report_id: str
    executed_by: str
    executed_at: str
    approvers: list[str]
    notices: dict[str, list[str]]  # series code → notice references that allowed it
    audit_head: tuple[int, str]  # (seq, hash) of the audit chain when the run finished
    series: list[dict[str, Any]]
    # {code, title, authority, count, earliest_created, latest_created}
    items: list[dict[str, Any]]
    # {item_id, account, platform_item_id, kind, series, created_at, first_captured_at,
    #  content_sha256, versions}
    files_deleted: list[dict[str, Any]]  # {file_id, key, sha256, size, records}
    files_compacted: list[dict[str, Any]]
    # {old_file_id, old_key, old_sha256, new_file_id, new_key, new_sha256,
    #  dropped: [{record_id, warc_type, block_digest}]}
    parquet_deleted: list[dict[str, Any]] = field(default_factory=list)
    parquet_compacted: list[dict[str, Any]] = field(default_factory=list)
    records_destroyed: list[dict[str, Any]] = field(default_factory=list)
    # {record_id, warc_type, block_digest, file_id}
    exchanges_kept: list[dict[str, Any]] = field(default_factory=list)
    # {record_id, file_id, evidences_items_kept: [int], follows_on: iso|null, why}
    pending: list[dict[str, Any]] = field(default_factory=list)  # {file_id, key, retain_until, why}
    excluded: list[dict[str, Any]] = field(default_factory=list)  # {item_id, reason}


def json_key(certificate_id: str) -> str:
    return f"{PREFIX}{certificate_id}.json"


def html_key(certificate_id: str) -> str:
    return f"{PREFIX}{certificate_id}.html"


# --- JSON ------------------------------------------------------------------------------------


def certificate_document(
    data: CertificateData, *, operator: str | None = None, software: str | None = None
) -> dict[str, Any]:
    """The certificate as a JSON-ready dict (``format``, ``software``, ``operator`` added)."""
    doc = asdict(data)
    seq, head = data.audit_head
    doc["audit_head"] = {"seq": int(seq), "hash": head}
    doc["format"] = FORMAT
    doc["software"] = software or f"city-archiver/{__version__}"
    doc["operator"] = operator
    return doc


def certificate_json(
    data: CertificateData, *, operator: str | None = None, software: str | None = None
) -> bytes:
    """Canonical JSON: sorted keys, UTF-8, a fixed layout, so the same data gives the same
    bytes (and the same SHA-256) when a resumed run writes it again."""
    doc = certificate_document(data, operator=operator, software=software)
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=1) + "\n").encode()


def parse_certificate(raw: bytes) -> CertificateData:
    """The :class:`CertificateData` of a certificate's JSON (refusing another format)."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"the certificate is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else None
        raise IntegrityError(f"not a certificate of destruction ({FORMAT!r}): format {got!r}")
    head = doc["audit_head"]
    values = {
        name: doc[name]
        for name in CertificateData.__dataclass_fields__
        if name in doc and name != "audit_head"
    }
    return CertificateData(**values, audit_head=(int(head["seq"]), str(head["hash"])))


# --- HTML ------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """Any value as escaped HTML text ("—" for nothing)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(_e(v) for v in value) if value else "—"
    return html.escape(str(value), quote=True)


def _code(value: Any) -> str:
    return f"<code>{_e(value)}</code>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table whose cells are already-escaped HTML fragments."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, count: int, body: str, *, empty: str) -> str:
    """A section; a long list folds into <details> so the page stays readable in print."""
    if count == 0:
        return f"<section><h2>{_e(title)}</h2><p class=none>{_e(empty)}</p></section>"
    if count > LONG:
        body = f"<details><summary>Show all {count}</summary>{body}</details>"
    return f"<section><h2>{_e(title)} ({count})</h2>{body}</section>"


STYLE = """
body{font:15px/1.45 Georgia,'Times New Roman',serif;max-width:70rem;margin:2rem auto;
padding:0 1rem;color:#111}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{font-size:1.2rem;border-bottom:1px solid #999;
margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #bbb;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#eee}code{font-family:Menlo,Consolas,monospace;font-size:.82rem;
word-break:break-all}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.facts dt{font-weight:bold}.none{color:#555;font-style:italic}
footer{margin-top:2rem;font-size:.85rem;color:#333;border-top:1px solid #999}
@media print{details{display:block}details>summary{display:none}}
"""


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    return (
        "<dl class=facts>"
        + "".join(f"<dt>{_e(label)}</dt><dd>{value}</dd>" for label, value in pairs)
        + "</dl>"
    )


def render_html(
    data: CertificateData,
    *,
    operator: str | None = None,
    json_sha256: str | None = None,
) -> str:
    """The readable certificate: one self-contained HTML page, every value escaped."""
    seq, head = data.audit_head
    total_records = len(data.records_destroyed)
    notices = [
        f"{_e(code)}: {_e(refs)}" for code, refs in sorted(data.notices.items()) if refs
    ] or ["none required"]
    header = _facts(
        [
            ("Records custodian", _e(operator)),
            ("Certificate", _code(data.certificate_id)),
            ("Disposition report", _code(data.report_id)),
            ("Disposition run", _code(data.run_id)),
            ("Executed by", _e(data.executed_by)),
            ("Executed at (UTC)", _e(data.executed_at)),
            ("Approved by", _e(data.approvers) if data.approvers else "no approval required"),
            ("Notice to the historical society", "<br>".join(notices)),
            ("Items destroyed", _e(len(data.items))),
            ("Stored files deleted", _e(len(data.files_deleted) + len(data.parquet_deleted))),
            (
                "Stored files rewritten without them",
                _e(len(data.files_compacted) + len(data.parquet_compacted)),
            ),
            ("WARC records destroyed", _e(total_records)),
            ("Audit chain head", f"entry {_e(seq)}, hash {_code(head)}"),
        ]
    )
    series = _table(
        ["Series", "Title", "Legal authority", "Items", "Created from", "Created to", "Notice"],
        (
            [
                _code(s.get("code")),
                _e(s.get("title")),
                _e(s.get("authority")),
                _e(s.get("count")),
                _e(s.get("earliest_created")),
                _e(s.get("latest_created")),
                _e(data.notices.get(str(s.get("code")), [])),
            ]
            for s in data.series
        ),
    )
    item_headers = ["Item", "Account", "Platform id", "Kind", "Series", "Created"]
    items = _table(
        [*item_headers, "First captured", "SHA-256"],
        (
            [
                _e(i.get("item_id")),
                _e(i.get("account")),
                _code(i.get("platform_item_id")),
                _e(i.get("kind")),
                _e(i.get("series")),
                _e(i.get("created_at")),
                _e(i.get("first_captured_at")),
                _code(i.get("content_sha256")),
            ]
            for i in data.items
        ),
    )

    def files(rows: Sequence[Mapping[str, Any]]) -> str:
        return _table(
            ["File", "Key", "SHA-256", "Bytes", "Records"],
            (
                [
                    _code(f.get("file_id")),
                    _code(f.get("key")),
                    _code(f.get("sha256")),
                    _e(f.get("size")),
                    _e(f.get("records")),
                ]
                for f in rows
            ),
        )

    def compacted(rows: Sequence[Mapping[str, Any]]) -> str:
        return _table(
            ["Old file (deleted)", "New file (kept records)", "Records dropped"],
            (
                [
                    f"{_code(c.get('old_key'))}<br>id {_code(c.get('old_file_id'))}"
                    f"<br>sha256 {_code(c.get('old_sha256'))}",
                    (
                        f"{_code(c.get('new_key'))}<br>id {_code(c.get('new_file_id'))}"
                        f"<br>sha256 {_code(c.get('new_sha256'))}"
                        if c.get("new_file_id")
                        else "none: every record went"
                    ),
                    "<br>".join(
                        f"{_code(d.get('record_id'))} {_e(d.get('warc_type'))} "
                        f"{_code(d.get('block_digest'))}"
                        for d in c.get("dropped") or []
                    )
                    or "—",
                ]
                for c in rows
            ),
        )

    records = _table(
        ["Record", "Type", "Block digest", "File"],
        (
            [
                _code(r.get("record_id")),
                _e(r.get("warc_type")),
                _code(r.get("block_digest")),
                _code(r.get("file_id")),
            ]
            for r in data.records_destroyed
        ),
    )
    kept = _table(
        ["Record", "File", "Still evidences items", "Follows on", "Why"],
        (
            [
                _code(x.get("record_id")),
                _code(x.get("file_id")),
                _e(x.get("evidences_items_kept")),
                _e(x.get("follows_on") or "when those items' retention ends"),
                _e(x.get("why")),
            ]
            for x in data.exchanges_kept
        ),
    )
    pending = _table(
        ["File", "Key", "Locked until", "Why"],
        (
            [
                _code(p.get("file_id")),
                _code(p.get("key")),
                _e(p.get("retain_until")),
                _e(p.get("why")),
            ]
            for p in data.pending
        ),
    )
    excluded = _table(
        ["Item", "Why it was not destroyed"],
        ([_e(x.get("item_id")), _e(x.get("reason"))] for x in data.excluded),
    )
    sections = [
        _section("Records series", len(data.series), series, empty="No series."),
        _section("Items destroyed", len(data.items), items, empty="No items were destroyed."),
        _section(
            "Stored files deleted",
            len(data.files_deleted),
            files(data.files_deleted),
            empty="No WARC file was deleted whole.",
        ),
        _section(
            "Stored files rewritten without the destroyed records",
            len(data.files_compacted),
            compacted(data.files_compacted),
            empty="No WARC file was rewritten.",
        ),
        _section(
            "Parquet files deleted",
            len(data.parquet_deleted),
            files(data.parquet_deleted),
            empty="No Parquet file was deleted whole.",
        ),
        _section(
            "Parquet files rewritten without the destroyed rows",
            len(data.parquet_compacted),
            compacted(data.parquet_compacted),
            empty="No Parquet file was rewritten.",
        ),
        _section("WARC records destroyed", total_records, records, empty="No WARC record listed."),
        _section(
            "Raw exchanges kept because they still evidence kept items",
            len(data.exchanges_kept),
            kept,
            empty="None: no raw exchange of these items was kept.",
        ),
        _section(
            "Objects waiting for their storage lock to end (pending)",
            len(data.pending),
            pending,
            empty="None: every object to delete was deleted.",
        ),
        _section(
            "Items excluded at execution",
            len(data.excluded),
            excluded,
            empty="None: every item of the report was destroyed.",
        ),
    ]
    verify = (
        f"The machine-readable certificate {_code(json_key(data.certificate_id))} has SHA-256 "
        f"{_code(json_sha256)}; the audit log's entry {_e(seq)} has hash {_code(head)}."
        if json_sha256
        else f"The audit log's entry {_e(seq)} has hash {_code(head)}."
    )
    title = f"Certificate of destruction {_e(data.certificate_id)}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Certificate of destruction</h1><p>{_e(operator)}</p></header>"
        f"<p>The records listed below were destroyed from the archive of {_e(operator)} "
        "under the records retention schedules and legal authorities named, after their "
        "retention periods ended and no hold covered them.</p>"
        f"{header}{''.join(sections)}"
        f"<footer><p>{verify}</p><p>{_e(FORMAT)}</p></footer>"
        "</body></html>\n"
    )


# --- storing -----------------------------------------------------------------------------


def _put_permanent(
    store: Store, key: str, data: bytes, until: datetime, tmp_dir: Path | None
) -> None:
    """Store ``data`` write-once under ``key``, locked until ``until``.

    A resumed run may find the object already stored by the attempt that crashed: the same
    bytes are accepted, different ones are an integrity error (nothing is overwritten).
    """
    digest = hashlib.sha256(data).hexdigest()
    try:
        found = store.head(key)
    except ObjectNotFoundError:
        found = None
    if found is not None:
        if found.sha256 != digest:
            raise IntegrityError(
                f"{key} is already stored with sha256 {found.sha256}, not the {digest} of this "
                "certificate; nothing was overwritten"
            )
        return
    with tempfile.NamedTemporaryFile(prefix=".certificate-", dir=tmp_dir, delete=False) as tmp:
        tmp.write(data)
        path = Path(tmp.name)
    try:
        stored = store.put(key, path, digest, retain_until=until)
    finally:
        path.unlink(missing_ok=True)
    if stored.sha256 != digest or stored.size != len(data):
        raise IntegrityError(f"the store holds {key} with sha256 {stored.sha256}, not {digest}")


def _far_future(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + RETAIN_YEARS)
    except ValueError:  # Feb 29
        return moment.replace(year=moment.year + RETAIN_YEARS, day=28)


def write_certificate(
    store: Store,
    session: Session,
    data: CertificateData,
    *,
    info: WarcInfo,
    tmp_dir: Path | None,
    actor: str,
) -> Certificate:
    """Store the certificate (JSON and HTML, locked for :data:`RETAIN_YEARS` years), write
    its ``disposition.certificate`` control fact and add its catalog row to ``session``.

    Idempotent for a resumed run: an existing row is returned as is, objects already stored
    with the same bytes are kept.
    """
    existing = session.get(Certificate, data.certificate_id)
    if existing is not None:
        return existing
    now = clock.now()
    raw = certificate_json(data, operator=info.operator, software=info.software)
    digest = hashlib.sha256(raw).hexdigest()
    page = render_html(data, operator=info.operator, json_sha256=digest).encode()
    until = _far_future(max(now, datetime.fromisoformat(data.executed_at).astimezone(UTC)))
    keys = json_key(data.certificate_id), html_key(data.certificate_id)
    _put_permanent(store, keys[0], raw, until, tmp_dir)
    _put_permanent(store, keys[1], page, until, tmp_dir)
    fact = write_fact(
        store,
        session,
        "disposition.certificate",
        {
            "certificate": data.certificate_id,
            "run": data.run_id,
            "report": data.report_id,
            "json_key": keys[0],
            "html_key": keys[1],
            "sha256": digest,
            "disposed_at": data.executed_at,
            "items": [
                {
                    "account": i.get("account"),
                    "item": i.get("platform_item_id"),
                    "series": i.get("series"),
                    "created_at": i.get("created_at"),
                    "first_captured_at": i.get("first_captured_at"),
                    "content_sha256": i.get("content_sha256"),
                    # Not in the brief's minimum, read when present: a rebuilt stub keeps it.
                    "kind": i.get("kind"),
                }
                for i in data.items
            ],
        },
        actor=actor,
        info=info,
        at=now,
        tmp_dir=tmp_dir,
    )
    row = Certificate(
        id=data.certificate_id,
        run_id=data.run_id,
        created_at=now,
        json_key=keys[0],
        html_key=keys[1],
        sha256=digest,
        summary={
            "report": data.report_id,
            "executed_by": data.executed_by,
            "executed_at": data.executed_at,
            "approvers": list(data.approvers),
            "items": len(data.items),
            "series": sorted(str(s.get("code")) for s in data.series),
            "files_deleted": len(data.files_deleted),
            "files_compacted": len(data.files_compacted),
            "records_destroyed": len(data.records_destroyed),
            "exchanges_kept": len(data.exchanges_kept),
            "pending": len(data.pending),
            "excluded": len(data.excluded),
            "html_sha256": hashlib.sha256(page).hexdigest(),
            "retain_until": until.isoformat(),
            "fact": fact.key,
        },
    )
    session.add(row)
    session.flush()
    return row
