"""Control facts: holds, events, notices, reassignments and certificates, kept in the store.

The catalog is an index the store can rebuild, so every retention fact a person records
(a hold placed or released, an account's closure, a notice sent to the historical society,
items moved to another series, a certificate of destruction) is also written to the store,
before the catalog commit that records it, as a write-once WARC file holding one
``metadata`` record with a JSON body::

    control/facts/<YYYY-MM>/<fact-id>.warc.gz        (+ the usual .sha256.json sidecar)

The fact id is a ULID taken when the fact is written (also the WARC's file id), so sorting
by it gives the order the facts were recorded in, the order ``archiver catalog rebuild``
replays them (:func:`read_facts`). These
files belong to no records series: their ``warcinfo`` names the pseudo-partition
``control/facts/<month>`` and disposition never selects them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from ulid import ULID

from archiver.catalog.models import StoredFile
from archiver.errors import IntegrityError
from archiver.layout import Partition, period_of, sidecar_key
from archiver.store.base import Store, put_bytes
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import metadata_record

PREFIX = "control/facts/"
#: Every kind of fact; a reader refuses one it does not know rather than drop it silently.
KINDS = frozenset(
    {
        "hold.created",
        "hold.released",
        "hold.closed",
        "assignment.changed",
        "event.recorded",
        "notice.recorded",
        "disposition.certificate",
    }
)


@dataclass(frozen=True, slots=True)
class Fact:
    """One recorded fact: what happened, who recorded it, when, and its details."""

    kind: str
    id: str
    at: datetime
    actor: str
    body: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""

    def as_json(self) -> bytes:
        doc = {
            "fact": self.kind,
            "id": self.id,
            "at": self.at.astimezone(UTC).isoformat(),
            "actor": self.actor,
            "body": dict(self.body),
        }
        return json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=1).encode()


def fact_key(fact_id: str, at: datetime) -> str:
    return f"{PREFIX}{period_of(at)}/{fact_id}.warc.gz"


def write_fact(
    store: Store,
    session: Session | None,
    kind: str,
    body: Mapping[str, Any],
    *,
    actor: str,
    info: WarcInfo,
    at: datetime | None = None,
    tmp_dir: Path | None = None,
) -> Fact:
    """Write one fact to the store (durably, verified) and register its file in ``session``.

    Call it before committing the catalog rows the fact describes: a crash in between
    leaves a fact the next rebuild applies, never a catalog fact the store lacks.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown control fact kind {kind!r}")
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    # The id (and the key's month) come from the wall clock, never from ``at``: ``at`` may be
    # a rehearsal's ARCHIVER_NOW shared by many facts, and replay needs the order of writing.
    fact_id = str(ULID())
    written = ULID.from_str(fact_id).datetime
    fact = Fact(kind, fact_id, moment, actor, dict(body), fact_key(fact_id, written))
    partition = Partition("control", "facts", period_of(written))
    with tempfile.TemporaryDirectory(prefix="fact-", dir=tmp_dir) as work:
        writer = WarcWriter(Path(work), partition, info, clock=lambda: moment, file_id=fact_id)
        writer.append(
            metadata_record(f"urn:archiver:fact:{kind}:{fact_id}", fact.as_json(), date=moment)
        )
        closed = writer.close()
        stored = store.put(fact.key, closed.path, closed.sha256)
        if stored.sha256 != closed.sha256 or stored.size != closed.size:
            raise IntegrityError(
                f"the store holds {fact.key} with sha256 {stored.sha256}, "
                f"not the {closed.sha256} written; the fact was not recorded"
            )
        sidecar = {
            "file_id": closed.file_id,
            "key": fact.key,
            "partition": partition.name,
            "sha256": closed.sha256,
            "size": closed.size,
            "records": closed.record_count,
        }
        put_bytes(
            store,
            sidecar_key(fact.key),
            json.dumps(sidecar, sort_keys=True, indent=1).encode(),
            tmp_dir=Path(work),
        )
    if session is not None:
        session.add(
            StoredFile(
                id=closed.file_id,
                key=fact.key,
                kind="control",
                partition=None,
                sha256=closed.sha256,
                size=closed.size,
                records=closed.record_count,
                created_at=moment,
                stored_at=datetime.now(UTC),
                retain_until=stored.retain_until,
                legal_hold=stored.legal_hold,
                state="stored",
            )
        )
    return fact


def parse_fact(data: bytes, key: str) -> Fact:
    """The fact in a control file's ``metadata`` record body."""
    try:
        doc = json.loads(data)
        fact = Fact(
            kind=str(doc["fact"]),
            id=str(doc["id"]),
            at=datetime.fromisoformat(doc["at"]).astimezone(UTC),
            actor=str(doc["actor"]),
            body=dict(doc["body"]),
            key=key,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"control fact {key} is not a fact document: {exc}") from None
    if fact.kind not in KINDS:
        raise IntegrityError(
            f"control fact {key} is of unknown kind {fact.kind!r}; upgrade the archiver"
        )
    return fact


def read_facts(store: Store) -> Iterator[Fact]:
    """Every fact in the store, oldest first (the order they must be replayed in)."""
    # Imported here: warcio's reader is only needed by rebuild.
    import io

    from warcio.archiveiterator import ArchiveIterator

    keys = [i.key for i in store.list(PREFIX) if i.key.endswith(".warc.gz")]
    # By fact id (a ULID of when it was written), whatever month directory it is in.
    for key in sorted(keys, key=lambda k: k.rsplit("/", 1)[-1]):
        info = store.head(key)
        data = store.get(info.key)
        for record in ArchiveIterator(io.BytesIO(data)):
            if record.rec_type == "metadata":
                yield parse_fact(record.content_stream().read(), info.key)
