"""Compaction: a stored file rewritten without some records, the rest copied byte for byte.

WARC files are written the real way (``WarcWriter``, then into a real store with the sidecar
the spool writes), or captured by the real pipeline from the fake platforms
(``tests.corpus``). The compacted files are checked by tools we did not write (``warcio
check`` and ``warcio index``, DuckDB for Parquet) and by decompressing every byte.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from ulid import ULID
from warcio.archiveiterator import ArchiveIterator

from archiver import parquet
from archiver.catalog import Catalog, upgrade
from archiver.catalog.models import ItemVersion, StoredFile
from archiver.compact import CompactedWarc, compact_parquet, compact_warc
from archiver.errors import ArchiverError, IntegrityError
from archiver.layout import ObjectKind, Partition, sidecar_key
from archiver.spool import put_sidecar
from archiver.store import LocalStore
from archiver.store.base import Store
from archiver.store.s3 import S3Store
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_check import ExpectedRecord, WarcChecker
from archiver.warc_records import (
    RecordPointer,
    conversion_record,
    http_head,
    metadata_record,
    response_record,
    revisit_record,
)
from archiver.warc_recovery import scan_warc
from tests.corpus import PLOW_PHRASE, Corpus, capture_corpus
from tests.warctools import assert_all_digests_pass, warcio

pytest_plugins = ["tests.store.s3server"]

PARTITION = Partition("social-media", "mke-bluesky", "2026-01")
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")
#: Who compacts: another node, another operator, so the new warcinfo's fields are told apart.
COMPACTOR = WarcInfo("city-archiver/test-2", {"warcio": "1.8.1"}, "Records Officer", "node-2")
NOW = datetime(2033, 2, 1, 9, 30, tzinfo=UTC)
SECRET_PHRASE = "pothole on Ruby Lane near the school 7f3a"
MIB = 1 << 20
# moto accepts any credentials (tests.store.s3server, which is a plugin, not imported)
REGION, ACCESS_KEY, SECRET_KEY = "us-east-1", "AKIACOMPACTTEST00001", "compact-test-secret"


# -- building stored WARC files -----------------------------------------------------------


def store_closed(store: Store, writer: WarcWriter, **put: Any) -> str:
    """Close the writer and put its file into the store with its sidecar, as the spool does."""
    closed = writer.close()
    key = closed.partition.key(ObjectKind.WARC, closed.file_id)
    store.put(key, closed.path, closed.sha256, **put)
    put_sidecar(store, key, closed, tmp_dir=closed.path.parent)
    return key


def item(w: WarcWriter, n: int, text: str) -> tuple[RecordPointer, RecordPointer]:
    """One API response and the item version taken from it, as a capture writes them."""
    body = json.dumps({"id": f"post-{n}", "text": text}).encode()
    head = http_head("HTTP/1.1 200 OK", [("Content-Type", "application/json")])
    resp = w.append(response_record(f"https://api.example/post/{n}", head, body))
    doc = json.dumps({"item": f"post-{n}", "text": text, "version": 1}).encode()
    conv = w.append(
        conversion_record(f"https://example.social/post/{n}", doc, refers_to=resp.record_id)
    )
    return resp, conv


@dataclass
class Built:
    key: str
    records: list[RecordPointer]  # every record after the warcinfo, in file order

    def ids(self, *indexes: int) -> list[str]:
        return [self.records[i].record_id for i in indexes]


def build(tmp_path: Path, store: Store, fill: Callable[[WarcWriter], None], **put: Any) -> Built:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    writer = WarcWriter(spool, PARTITION, INFO)
    fill(writer)
    key = store_closed(store, writer, **put)
    return Built(key, pointers_of(store, key)[1:])


def pointers_of(store: Store, key: str) -> list[RecordPointer]:
    """Every record of a stored WARC, read back by the recovery scanner (warcinfo first)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "copy.warc.gz"
        with path.open("wb") as f:
            for chunk in store.open(key):
                f.write(chunk)
        scan = scan_warc(path)
        assert scan.complete, scan.problem
        return list(scan.records)


def five_items(w: WarcWriter) -> None:
    """Five items (response + conversion each); item 2 holds the secret phrase; a metadata."""
    for n in range(5):
        item(w, n, SECRET_PHRASE if n == 2 else f"Snow update number {n} for the north side")
    w.append(metadata_record("https://example.social/post/4", b'{"state": "hidden"}'))


def fields_of(path: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The first record's WARC headers and its warc-fields."""
    with path.open("rb") as f:
        record = next(iter(ArchiveIterator(f)))
        headers = dict(record.rec_headers.headers)
        block = record.content_stream().read().decode()
    fields = [tuple(line.split(": ", 1)) for line in block.splitlines() if line]
    return headers, [(k, v) for k, v in fields]


def objects(store: LocalStore) -> list[tuple[str, str]]:
    return [(o.key, o.sha256) for o in store.list()]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def compact(store: Store, key: str, drop: list[str], work: Path, **kw: Any) -> CompactedWarc:
    return compact_warc(
        store, key, drop, work_dir=work, info=COMPACTOR, partition=PARTITION, now=NOW, **kw
    )


# -- WARC: what is kept, what goes --------------------------------------------------------


def test_kept_records_are_their_original_gzip_members_byte_for_byte_at_new_offsets(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    old = build(tmp_path, store, five_items)
    before = store.head(old.key)
    gone = old.ids(4, 5)  # item 2: its response and its conversion
    known = {p.record_id: (p.offset, p.length) for p in old.records}

    result = compact(store, old.key, [*gone, "<urn:uuid:not-in-this-file>"], work, known=known)

    kept = [p for p in old.records if p.record_id not in gone]
    assert list(result.kept) == [p.record_id for p in kept]
    assert result.dropped == [
        (p.record_id, p.block_digest) for p in old.records if p.record_id in gone
    ]
    assert result.missing == ["<urn:uuid:not-in-this-file>"]
    assert result.records == len(kept) + 1 and not result.emptied and not result.resumed
    assert result.new_key == PARTITION.key(ObjectKind.WARC, str(result.new_file_id))
    assert result.old_file_id == old.key.rsplit("/", 1)[-1].removesuffix(".warc.gz")
    new_key = str(result.new_key)
    # Each kept member is the old one, byte for byte, and the file is nothing but the new
    # warcinfo followed by those members, end to end.
    at = min(offset for offset, _ in result.kept.values())
    for p in kept:
        offset, length = result.kept[p.record_id]
        assert (offset, length) != (p.offset, p.length)
        assert offset == at and length == p.length
        assert store.get(new_key, offset, length) == store.get(old.key, p.offset, p.length)
        at += length
    assert at == result.size
    # The records read back have the same ids and digests, at the offsets the result gives.
    new = pointers_of(store, new_key)
    assert new[0].warc_type == "warcinfo"
    assert [(p.record_id, p.block_digest, p.payload_digest) for p in new[1:]] == [
        (p.record_id, p.block_digest, p.payload_digest) for p in kept
    ]
    assert {p.record_id: (p.offset, p.length) for p in new[1:]} == result.kept
    # Stored and described like any stored WARC: head, sidecar object; the old file is intact.
    head = store.head(new_key)
    data = (store.root / new_key).read_bytes()
    assert (head.size, head.sha256) == (result.size, result.sha256)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (result.size, result.sha256)
    sidecar = json.loads(store.get(sidecar_key(new_key)))
    assert sidecar == {
        "file_id": result.new_file_id,
        "key": new_key,
        "partition": PARTITION.name,
        "sha256": result.sha256,
        "size": result.size,
        "records": result.records,
    }
    assert store.head(old.key) == before
    assert not list(work.iterdir()), "nothing is left in the work directory"


def test_the_new_warcinfo_says_what_was_compacted_and_keeps_the_old_files_date(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    old = build(tmp_path, store, five_items)
    old_info = pointers_of(store, old.key)[0]

    result = compact(store, old.key, old.ids(0), work)

    headers, fields = fields_of(store.root / str(result.new_key))
    values = dict(fields)
    assert headers["WARC-Type"] == "warcinfo"
    assert headers["WARC-Filename"] == f"{result.new_file_id}.warc.gz"
    # The catalog rebuild orders a partition's files by their warcinfo date.
    assert headers["WARC-Date"] == old_info.date.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert result.first_record_at == old_info.date
    assert values["compacted-from"] == result.old_file_id
    assert values["compacted-from-key"] == old.key
    assert values["compacted-from-sha256"] == result.old_sha256 == store.head(old.key).sha256
    assert values["compacted-from-warcinfo"] == old_info.record_id
    assert values["compacted-at"] == "2033-02-01T09:30:00.000000Z"
    assert values["compaction"].startswith("disposition:")
    assert (values["operator"], values["hostname"]) == ("Records Officer", "node-2")
    assert values["file-id"] == result.new_file_id
    assert values["isPartOf"] == PARTITION.name
    assert values["original-file-id"] == result.old_file_id
    assert (values["original-operator"], values["original-hostname"]) == (
        "City of Milwaukee",
        "node-1",
    )


def test_the_compacted_file_passes_our_fixity_check_without_orphans_or_odd_gzip_headers(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    old = build(tmp_path, store, five_items)
    result = compact(store, old.key, old.ids(0, 1), work)

    data = (store.root / str(result.new_key)).read_bytes()
    new = pointers_of(store, str(result.new_key))
    checker = WarcChecker(
        ExpectedRecord(
            p.record_id, p.offset, p.length, p.warc_type, p.block_digest, p.payload_digest
        )
        for p in new[1:]
    )
    checker.feed(data)
    check = checker.finish()
    assert check.ok and check.records == result.records
    assert check.orphans == () and check.odd_gzip_headers == ()


# -- WARC: a real capture ------------------------------------------------------------------


@dataclass
class Captured:
    corpus: Corpus
    catalog: Catalog
    store: LocalStore
    root: Path

    def versions(self, item_id: int) -> list[tuple[str, str]]:
        """(file key, record id) of each version of an item."""
        with self.catalog.reader() as s:
            rows = s.execute(
                select(StoredFile.key, ItemVersion.warc_record_id)
                .join(StoredFile, StoredFile.id == ItemVersion.warc_file_id)
                .where(ItemVersion.item_id == item_id)
            ).all()
        return [(r[0], r[1]) for r in rows]

    def parquet_of(self, item_id: int) -> tuple[str, Partition]:
        """The key and partition of the Parquet file holding an item's (first) version."""
        with self.catalog.reader() as s:
            row = s.execute(
                select(StoredFile.key, StoredFile.partition)
                .join(ItemVersion, ItemVersion.parquet_file_id == StoredFile.id)
                .where(ItemVersion.item_id == item_id)
            ).first()
        assert row is not None
        return str(row[0]), Partition.parse(row[1])


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    """The shared corpus, captured once, its Parquet rolled; compactions add new files."""
    root = tmp_path_factory.mktemp("captured")
    catalog = Catalog.open(f"sqlite:///{root / 'catalog.sqlite3'}")
    upgrade(catalog)
    store = LocalStore(root / "store")
    corpus = capture_corpus(catalog, store, root / "corpus")
    parquet.roll(catalog, store, root / "spool", min_rows=1, max_age=timedelta(0), force=True)
    yield Captured(corpus, catalog, store, root)
    catalog.dispose()


@dataclass
class PlowCompaction:
    old_key: str
    dropped: list[str]
    result: CompactedWarc
    old_path: Path
    new_path: Path


@pytest.fixture(scope="module")
def plow_compaction(captured: Captured) -> PlowCompaction:
    """The plow reply's item file, compacted without the plow reply's version record."""
    versions = captured.versions(captured.corpus.plow_reply.id)
    key, record_id = versions[0]
    assert [k for k, _ in versions] == [key]
    partition = Partition.parse(key.split("/", 1)[1].rsplit("/", 1)[0])
    result = compact_warc(
        captured.store,
        key,
        [record_id],
        work_dir=captured.root / "work",
        info=COMPACTOR,
        partition=partition,
        now=NOW,
    )
    return PlowCompaction(
        key,
        [record_id],
        result,
        captured.store.root / key,
        captured.store.root / str(result.new_key),
    )


def test_warcio_check_and_index_pass_on_a_compacted_capture_file(
    plow_compaction: PlowCompaction,
) -> None:
    result, path = plow_compaction.result, plow_compaction.new_path
    assert assert_all_digests_pass([path]) == result.records
    index = warcio("index", "-f", "offset,length,warc-record-id,warc-type", path)
    assert index.returncode == 0, index.stderr
    entries = [json.loads(line) for line in index.stdout.splitlines()]
    assert entries[0]["warc-type"] == "warcinfo" and entries[0]["offset"] == "0"
    assert {e["warc-record-id"]: (int(e["offset"]), int(e["length"])) for e in entries[1:]} == (
        result.kept
    )
    # The original was a real capture file with more than the dropped record in it.
    assert len(result.kept) >= 2 and [rid for rid, _ in result.dropped] == plow_compaction.dropped


def test_a_phrase_only_in_the_dropped_record_is_nowhere_in_the_decompressed_new_file(
    plow_compaction: PlowCompaction,
) -> None:
    before = gzip.decompress(plow_compaction.old_path.read_bytes()).decode("utf-8")
    after = gzip.decompress(plow_compaction.new_path.read_bytes()).decode("utf-8")
    assert PLOW_PHRASE in before
    assert PLOW_PHRASE not in after
    # Its neighbours in the same file are still there, whole.
    assert "Free coffee for plow drivers at the Café on Main Street." in after
    assert "Snow emergency declared" in after


def test_a_compacted_capture_file_is_one_the_catalog_rebuild_can_read(
    plow_compaction: PlowCompaction, captured: Captured
) -> None:
    result = plow_compaction.result
    scan = scan_warc(plow_compaction.new_path)
    assert scan.complete and scan.sha256 == result.sha256
    sidecar = json.loads(captured.store.get(sidecar_key(str(result.new_key))))
    assert sidecar["records"] == len(scan.records) == result.records


# -- WARC: large records, bounded memory -------------------------------------------------


def random_body(size: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    left = size
    while left:
        n = min(left, MIB)
        yield rng.randbytes(n)
        left -= n


def media(w: WarcWriter, size: int, seed: int) -> None:
    head = http_head("HTTP/1.1 200 OK", [("Content-Type", "image/jpeg")])
    w.append_response_stream(
        f"https://cdn.example/media/{seed}.jpg", head, random_body(size, seed), max_bytes=size
    )


def test_a_dropped_media_record_of_several_megabytes_leaves_no_byte_behind(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    size = 6 * MIB

    def fill(w: WarcWriter) -> None:
        item(w, 0, "Leaf collection routes for this week")
        media(w, size, seed=11)
        item(w, 1, "Map of the north side leaf collection route")

    old = build(tmp_path, store, fill)
    photo = old.records[2]
    assert photo.warc_type == "response" and photo.length > size

    result = compact(store, old.key, [photo.record_id], work)

    assert result.dropped == [(photo.record_id, photo.block_digest)]
    raw = (store.root / str(result.new_key)).read_bytes()
    assert result.size == len(raw) < 64 * 1024
    body = b"".join(random_body(size, seed=11))
    text = gzip.decompress(raw)
    for at in (0, size // 3, size // 2, size - 64):
        assert body[at : at + 64] not in text
    member = store.get(old.key, photo.offset, photo.length)
    assert member[photo.length // 2 : photo.length // 2 + 64] not in raw
    assert b"Map of the north side leaf collection route" in text


def test_memory_stays_bounded_while_a_64_mib_record_is_copied(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    size = 64 * MIB

    def fill(w: WarcWriter) -> None:
        item(w, 0, SECRET_PHRASE)
        media(w, size, seed=5)
        item(w, 1, "Truck unloading leaves at the compost site")

    old = build(tmp_path, store, fill)
    big = old.records[2]

    tracemalloc.start()
    try:
        result = compact(store, old.key, old.ids(0, 1), work)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB while copying a {size // MIB} MiB record"
    offset, length = result.kept[big.record_id]
    assert length == big.length

    def digest(key: str, at: int) -> str:
        h = hashlib.sha256()
        with (store.root / key).open("rb") as f:
            f.seek(at)
            left = length
            while left:
                chunk = f.read(min(left, MIB))
                h.update(chunk)
                left -= len(chunk)
        return h.hexdigest()

    assert digest(str(result.new_key), offset) == digest(old.key, big.offset)
    assert SECRET_PHRASE.encode() not in gzip.decompress(store.get(str(result.new_key), 0, offset))


# -- WARC: nothing left, damage, broken references -----------------------------------------


def test_a_file_whose_every_record_is_dropped_is_not_rewritten(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    old = build(tmp_path, store, five_items)
    before = objects(store)

    result = compact(store, old.key, [p.record_id for p in old.records], work)

    assert result.emptied and result.new_file_id is None and result.new_key is None
    assert (result.sha256, result.size, result.records, result.kept) == (None, 0, 0, {})
    assert result.dropped == [(p.record_id, p.block_digest) for p in old.records]
    assert objects(store) == before
    assert not list(work.iterdir())


def flip(store: LocalStore, key: str, at: int) -> None:
    """Change one byte of a stored object in place, as a failing disk would."""
    path = store.root / key
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def rewrite_member(path: Path, p: RecordPointer, old: bytes, new: bytes) -> None:
    """Re-compress one record with ``old`` replaced by ``new``: valid gzip, wrong digest."""
    data = path.read_bytes()
    text = gzip.decompress(data[p.offset : p.offset + p.length])
    assert old in text
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = c.compress(text.replace(old, new)) + c.flush()
    path.write_bytes(data[: p.offset] + member + data[p.offset + p.length :])


@pytest.mark.parametrize(
    "damage", ["flipped byte in a body", "flipped byte in a header", "digest", "gzip header"]
)
def test_a_damaged_file_is_refused_naming_the_record_and_nothing_is_stored(
    tmp_path: Path, store: LocalStore, work: Path, damage: str
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    writer = WarcWriter(spool, PARTITION, INFO)
    five_items(writer)
    closed = writer.close()
    records = scan_warc(closed.path).records
    victim = records[3]  # item 1's response, which the compaction keeps
    known = None
    if damage == "digest":
        rewrite_member(closed.path, victim, b"number 1", b"number 9")
    sha256 = hashlib.sha256(closed.path.read_bytes()).hexdigest()
    key = PARTITION.key(ObjectKind.WARC, closed.file_id)
    store.put(key, closed.path, sha256)
    if damage == "flipped byte in a body":
        flip(store, key, victim.offset + victim.length - 12)  # the header inflates first
    elif damage == "flipped byte in a header":
        # The record's own header cannot name it: the catalog's pointer does.
        flip(store, key, victim.offset + 24)
        known = {p.record_id: (p.offset, p.length) for p in records[1:]}
    elif damage == "gzip header":
        flip(store, key, victim.offset + 4)  # MTIME: no record changes, the file does
    before = objects(store)

    with pytest.raises(IntegrityError) as refused:
        compact(store, key, [records[5].record_id], work, known=known)

    message = str(refused.value)
    assert key in message and "nothing was stored" in message
    if damage == "gzip header":
        assert "sha256" in message
    else:
        assert f"record {victim.record_id} at offset {victim.offset}" in message
    assert objects(store) == before
    assert not list(work.iterdir())


def test_a_file_that_ends_inside_a_record_is_refused_as_truncated(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    writer = WarcWriter(spool, PARTITION, INFO)
    five_items(writer)
    closed = writer.close()
    last = scan_warc(closed.path).records[-1]
    data = closed.path.read_bytes()[: last.offset + last.length // 2]
    torn = tmp_path / "torn.warc.gz"
    torn.write_bytes(data)
    key = PARTITION.key(ObjectKind.WARC, closed.file_id)
    store.put(key, torn, hashlib.sha256(data).hexdigest())

    with pytest.raises(IntegrityError, match="truncated"):
        compact(store, key, [], work)


def test_the_catalogs_pointers_must_name_records_where_the_file_holds_them(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    old = build(tmp_path, store, five_items)
    p = old.records[1]
    before = objects(store)

    with pytest.raises(IntegrityError, match="the catalog says"):
        compact(store, old.key, old.ids(0), work, known={p.record_id: (p.offset + 1, p.length)})
    with pytest.raises(IntegrityError, match="no such record"):
        compact(store, old.key, old.ids(0), work, known={"<urn:uuid:elsewhere>": (0, 10)})
    assert objects(store) == before


def test_a_kept_revisit_whose_original_would_be_dropped_is_refused(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    def fill(w: WarcWriter) -> None:
        head = http_head("HTTP/1.1 200 OK", [("Content-Type", "image/png")])
        url = "https://cdn.example/a.png"
        original = w.append(response_record(url, head, b"\x89PNG pretend image bytes"))
        assert original.payload_digest is not None
        w.append(
            revisit_record(
                url,
                head,
                payload_digest=original.payload_digest,
                refers_to=original.record_id,
                refers_to_target_uri=url,
                refers_to_date=original.date,
            )
        )
        item(w, 7, "a reply that stays")

    old = build(tmp_path, store, fill)
    before = objects(store)

    with pytest.raises(ArchiverError, match="revisit") as refused:
        compact(store, old.key, old.ids(0), work)
    assert old.records[1].record_id in str(refused.value)
    assert objects(store) == before and not list(work.iterdir())

    # A conversion whose source response goes is allowed, and reported.
    result = compact(store, old.key, old.ids(2), work)
    assert result.dangling == [(old.records[3].record_id, old.records[2].record_id)]


def test_a_file_of_another_partition_is_refused(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    old = build(tmp_path, store, five_items)
    with pytest.raises(ArchiverError, match="stays in the partition"):
        compact_warc(
            store,
            old.key,
            old.ids(0),
            work_dir=work,
            info=COMPACTOR,
            partition=Partition("social-media", "mke-bluesky", "2026-02"),
        )


# -- WARC: resuming, retention, S3 ---------------------------------------------------------


def test_a_compaction_interrupted_after_storing_is_resumed_not_written_twice(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    old = build(tmp_path, store, five_items)
    new_id = str(ULID())
    first = compact(store, old.key, old.ids(4, 5), work, file_id=new_id)
    assert first.new_file_id == new_id
    # The crash came after the put, before the sidecar object was written.
    store.delete(sidecar_key(str(first.new_key)))
    stored = objects(store)

    again = compact(store, old.key, old.ids(4, 5), work, file_id=new_id)

    assert again.resumed
    assert (again.new_key, again.sha256, again.size, again.records) == (
        first.new_key,
        first.sha256,
        first.size,
        first.records,
    )
    assert (again.kept, again.dropped, again.missing) == (first.kept, first.dropped, first.missing)
    assert [k for k, _ in objects(store)] == sorted(
        [k for k, _ in stored] + [sidecar_key(str(first.new_key))]
    )
    assert store.list_versions(str(first.new_key))[0].sha256 == first.sha256

    with pytest.raises(IntegrityError, match="already stored but is not"):
        compact(store, old.key, old.ids(0, 1), work, file_id=new_id)


def test_the_new_object_keeps_the_old_ones_retention_and_legal_hold(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    old = build(tmp_path, store, five_items, retain_until=until)
    store.set_legal_hold(old.key, True)

    result = compact(store, old.key, old.ids(0, 1), work)

    head = store.head(str(result.new_key))
    assert (head.retain_until, head.legal_hold) == (until, True)
    assert (result.retain_until, result.legal_hold) == (until, True)

    later = until + timedelta(days=365)
    longer = compact(store, old.key, old.ids(0, 1), work, retain_until=later)
    assert store.head(str(longer.new_key)).retain_until == later


def test_compaction_on_s3_stores_a_verified_file_and_its_sidecar_under_the_old_lock(
    tmp_path: Path, moto_endpoint: str, lock_bucket: str
) -> None:
    store = S3Store(
        lock_bucket,
        prefix="archive",
        region=REGION,
        endpoint_url=moto_endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    old = build(tmp_path, store, five_items, retain_until=until)

    result = compact(store, old.key, old.ids(4, 5), tmp_path / "work")

    new_key = str(result.new_key)
    head = store.head(new_key)
    assert (head.sha256, head.size, head.retain_until) == (result.sha256, result.size, until)
    assert json.loads(store.get(sidecar_key(new_key)))["sha256"] == result.sha256
    path = tmp_path / "downloaded.warc.gz"
    path.write_bytes(store.get(new_key))
    assert assert_all_digests_pass([path]) == result.records
    assert SECRET_PHRASE.encode() not in gzip.decompress(path.read_bytes())
    assert store.head(old.key).sha256 == result.old_sha256


# -- Parquet -------------------------------------------------------------------------------


def read_duckdb(path: Path) -> list[tuple[str, str | None]]:
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT warc_record_id, text FROM read_parquet(?) ORDER BY warc_record_id",
            [str(path)],
        ).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


def test_a_parquet_file_is_rewritten_without_the_dropped_rows_as_duckdb_reads_it(
    captured: Captured,
) -> None:
    [(_, plow_record)] = captured.versions(captured.corpus.plow_reply.id)
    key, partition = captured.parquet_of(captured.corpus.plow_reply.id)
    old_rows = read_duckdb(captured.store.root / key)
    assert any(PLOW_PHRASE in (text or "") for _, text in old_rows)

    result = compact_parquet(
        captured.store,
        key,
        [plow_record, "<urn:uuid:not-a-row>"],
        work_dir=captured.root / "work",
        partition=partition,
        now=NOW,
    )

    path = captured.store.root / str(result.new_key)
    rows = read_duckdb(path)
    assert rows == [(rid, text) for rid, text in old_rows if rid != plow_record]
    assert not any(PLOW_PHRASE in (text or "") for _, text in rows)
    assert (result.rows, result.dropped, result.missing) == (
        len(old_rows) - 1,
        [plow_record],
        ["<urn:uuid:not-a-row>"],
    )
    assert sorted(result.kept) == [rid for rid, _ in rows]
    with duckdb.connect() as con:
        everything = con.execute(
            "SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet(?)", [str(path)]
        ).fetchall()
    assert PLOW_PHRASE not in repr(everything)
    schema = pq.read_schema(path)
    assert schema.equals(parquet.SCHEMA)
    assert (schema.metadata or {})[b"compacted-from"] == result.old_file_id.encode()
    head = captured.store.head(str(result.new_key))
    assert (head.sha256, head.size) == (result.sha256, result.size)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == result.sha256


def test_a_parquet_file_whose_every_row_is_dropped_is_not_rewritten(captured: Captured) -> None:
    key, partition = captured.parquet_of(captured.corpus.plow_reply.id)
    ids = [rid for rid, _ in read_duckdb(captured.store.root / key)]
    before = objects(captured.store)

    result = compact_parquet(
        captured.store, key, ids, work_dir=captured.root / "work", partition=partition
    )

    assert result.emptied and result.new_key is None and result.kept == []
    assert sorted(result.dropped) == sorted(ids) and result.missing == []
    assert objects(captured.store) == before


def parquet_rows(n: int, phrase: str) -> pa.Table:
    at = datetime(2026, 1, 12, 15, 0, tzinfo=UTC)
    rows = [
        {
            "account": "mke-bluesky",
            "series": PARTITION.series,
            "partition": PARTITION.name,
            "item_id": f"post-{i}",
            "kind": "comment",
            "parent_id": None,
            "thread_id": None,
            "permalink": None,
            "author": "resident.bsky.social",
            "created_at": at,
            "edited_at": None,
            "captured_at": at,
            "version_no": 1,
            "change": "new",
            "state": "visible",
            "text": phrase if i == 1 else f"comment {i}",
            "content_sha256": "0" * 64,
            "warc_file_id": "01JD4S2W7X0Y8H6K3M9N5P1Q2R",
            "warc_offset": 100 * i,
            "warc_length": 100,
            "warc_record_id": f"<urn:uuid:00000000-0000-0000-0000-00000000000{i}>",
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=parquet.SCHEMA)


def stored_rows(tmp_path: Path, store: LocalStore) -> str:
    """Three rows in a Parquet file written as the roll writes it; row 1 holds the phrase."""
    source = tmp_path / "rows.parquet"
    digest = parquet.write_file(parquet_rows(3, SECRET_PHRASE), source)
    key = PARTITION.key(ObjectKind.PARQUET, str(ULID()))
    store.put(key, source, digest)
    return key


ROW_1 = "<urn:uuid:00000000-0000-0000-0000-000000000001>"


def test_a_damaged_parquet_file_is_refused_and_nothing_is_stored(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    key = stored_rows(tmp_path, store)
    flip(store, key, store.head(key).size // 2)
    before = objects(store)

    with pytest.raises(IntegrityError, match="sha256") as refused:
        compact_parquet(store, key, [ROW_1], work_dir=work, partition=PARTITION)

    assert key in str(refused.value) and "nothing was stored" in str(refused.value)
    assert objects(store) == before


def test_a_parquet_rewrite_interrupted_after_storing_is_resumed_not_written_twice(
    tmp_path: Path, store: LocalStore, work: Path
) -> None:
    key = stored_rows(tmp_path, store)
    new_id = str(ULID())
    first = compact_parquet(store, key, [ROW_1], work_dir=work, partition=PARTITION, file_id=new_id)

    again = compact_parquet(store, key, [ROW_1], work_dir=work, partition=PARTITION, file_id=new_id)

    assert again.resumed and not first.resumed
    assert (again.new_key, again.sha256, again.kept) == (first.new_key, first.sha256, first.kept)
    assert first.kept == [
        "<urn:uuid:00000000-0000-0000-0000-000000000000>",
        "<urn:uuid:00000000-0000-0000-0000-000000000002>",
    ]
    # The compacted file and its public sidecar, written once.
    assert [k for k, _ in objects(store)] == sorted(
        [key, str(first.new_key), sidecar_key(str(first.new_key))]
    )
    side = json.loads(store.get(sidecar_key(str(first.new_key))))
    assert (side["file_id"], side["sha256"], side["records"]) == (new_id, first.sha256, 2)
    with pytest.raises(IntegrityError, match="already stored but is not"):
        compact_parquet(store, key, [], work_dir=work, partition=PARTITION, file_id=new_id)
