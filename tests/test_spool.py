"""The spool: closed WARCs reach the store intact, and a crash loses nothing committed."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, update

from archiver.catalog import Catalog
from archiver.catalog.models import StoredFile, WarcRecord
from archiver.catalog.records import register_records
from archiver.errors import IntegrityError
from archiver.layout import ObjectKind, Partition
from archiver.retrieve import read_record
from archiver.spool import Spool
from archiver.store import LocalStore
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import (
    RecordPointer,
    conversion_record,
    http_head,
    request_record,
    response_record,
)

PARTITION = Partition("general", "mke-facebook", "2026-11")
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")
WARCIO = Path(sys.executable).with_name("warcio")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def spool(tmp_path: Path, store: LocalStore, catalog: Catalog) -> Spool:
    s = Spool(tmp_path / "spool", store, catalog, max_bytes=10**9)
    s.prepare()
    return s


def _exchange(w: WarcWriter, n: int) -> list[RecordPointer]:
    """One API page and the item version taken from it, as a capture writes them."""
    url = f"https://graph.facebook.com/v19.0/12345/feed?after=cursor{n}"
    body = json.dumps(
        {"data": [{"id": f"12345_{n}", "message": f"Snow plow update {n} ❄"}]}
    ).encode()
    req = w.append(
        request_record(
            url,
            http_head(
                f"GET /v19.0/12345/feed?after=cursor{n} HTTP/1.1", [("Host", "graph.facebook.com")]
            ),
        )
    )
    resp = w.append(
        response_record(
            url,
            http_head("HTTP/1.1 200 OK", [("Content-Type", "application/json")]),
            body,
            concurrent_to=req.record_id,
        )
    )
    item = w.append(
        conversion_record(
            f"https://www.facebook.com/12345/posts/{n}",
            json.dumps({"version": 1, "id": f"12345_{n}"}).encode(),
            refers_to=resp.record_id,
        )
    )
    return [req, resp, item]


def _commit(catalog: Catalog, pointers: list[RecordPointer]) -> None:
    with catalog.session() as s:
        register_records(s, pointers)


def test_a_closed_warc_is_stored_registered_and_each_record_reads_back_by_pointer(
    catalog: Catalog, store: LocalStore, spool: Spool
) -> None:
    w = WarcWriter(spool.directory, PARTITION, INFO)
    pointers = _exchange(w, 1) + _exchange(w, 2)
    w.sync()
    _commit(catalog, pointers)
    closed = w.close()

    row = spool.store_closed(closed)

    assert row.key == f"warc/general/mke-facebook/2026-11/{closed.file_id}.warc.gz"
    stored = store.root / row.key
    assert (
        hashlib.sha256(stored.read_bytes()).hexdigest()
        == closed.sha256
        == store.head(row.key).sha256
    )
    sidecar = json.loads(store.get(row.key + ".sha256.json"))
    assert (sidecar["sha256"], sidecar["size"], sidecar["records"]) == (
        closed.sha256,
        closed.size,
        7,
    )
    assert list(spool.directory.iterdir()) == []  # removed from the spool only once registered
    for ptr in pointers:
        got = read_record(catalog, store, ptr.record_id)
        assert got.headers["WARC-Block-Digest"] == ptr.block_digest
        assert got.headers["WARC-Type"] == ptr.warc_type
    check = subprocess.run([WARCIO, "check", "-v", stored], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("digest pass") >= 6


def test_storing_again_after_a_crash_between_put_and_commit_succeeds_once(
    catalog: Catalog, store: LocalStore, spool: Spool
) -> None:
    w = WarcWriter(spool.directory, PARTITION, INFO)
    _exchange(w, 1)
    closed = w.close()
    store.put(PARTITION.key(ObjectKind.WARC, closed.file_id), closed.path, closed.sha256)
    row = spool.store_closed(closed)
    with catalog.session() as s:
        assert s.scalars(select(StoredFile.id)).all() == [row.id]


def test_a_stored_copy_with_other_bytes_is_an_integrity_error_and_the_spool_copy_stays(
    catalog: Catalog, store: LocalStore, spool: Spool, tmp_path: Path
) -> None:
    w = WarcWriter(spool.directory, PARTITION, INFO)
    _exchange(w, 1)
    closed = w.close()
    impostor = tmp_path / "impostor"
    impostor.write_bytes(b"not the WARC")
    store.put(
        PARTITION.key(ObjectKind.WARC, closed.file_id),
        impostor,
        hashlib.sha256(b"not the WARC").hexdigest(),
    )
    with pytest.raises(IntegrityError, match="spool copy was kept"):
        spool.store_closed(closed)
    assert closed.path.exists()


@pytest.mark.parametrize("where", ["compressed", "forged"])
def test_a_record_damaged_in_the_store_is_caught_on_read(
    catalog: Catalog, store: LocalStore, spool: Spool, where: str
) -> None:
    w = WarcWriter(spool.directory, PARTITION, INFO)
    pointers = _exchange(w, 1)
    w.sync()
    _commit(catalog, pointers)
    row = spool.store_closed(w.close())
    path = store.root / row.key
    data = bytearray(path.read_bytes())
    item = pointers[2]
    if where == "compressed":
        data[item.offset + item.length // 2] ^= 0x01  # bit rot inside the gzip member
    else:
        # A forger re-compresses an edited body and fixes the catalog's length to match:
        # the gzip member is valid, only the recorded digest can tell.
        member = gzip.decompress(bytes(data[item.offset : item.offset + item.length]))
        forged = gzip.compress(member.replace(b'"version": 1', b'"version": 7'))
        data[item.offset : item.offset + item.length] = forged
        with catalog.session() as s:
            s.execute(
                update(WarcRecord)
                .where(WarcRecord.record_id == item.record_id)
                .values(length=len(forged))
            )
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        read_record(catalog, store, item.record_id)


def _crash_mid_write(
    spool_dir: Path, catalog: Catalog, rng: random.Random
) -> tuple[list[RecordPointer], list[RecordPointer], int]:
    """Commit some pages, write more without committing, then die and tear the tail."""
    w = WarcWriter(spool_dir, PARTITION, INFO)
    committed: list[RecordPointer] = []
    for n in range(rng.randint(1, 3)):
        page = _exchange(w, n)
        w.sync()
        _commit(catalog, page)
        committed += page
    uncommitted = []
    for n in range(rng.randint(0, 3)):
        uncommitted += _exchange(w, 100 + n)
    w.abandon()  # kill -9: the process is gone, the file stays as it was on disk
    size = w.path.stat().st_size
    end_committed = committed[-1].offset + committed[-1].length
    # Only what was never synced can be torn: committed records were fsynced before the commit.
    tear = rng.randint(end_committed, size)
    with w.path.open("r+b") as f:
        f.truncate(tear)
    if rng.random() < 0.3:
        with w.path.open("ab") as f:
            f.write(rng.randbytes(rng.randint(1, 64)))  # a torn write can also leave garbage
    survivors = [p for p in uncommitted if p.offset + p.length <= tear]
    return committed, survivors, tear


@pytest.mark.parametrize("seed", range(12))
def test_a_spool_file_torn_at_a_random_byte_is_repaired_with_every_committed_record_intact(
    catalog: Catalog, store: LocalStore, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    committed, survivors, _ = _crash_mid_write(spool_dir, catalog, rng)

    report = Spool(spool_dir, store, catalog, max_bytes=10**9).recover()

    [recovered] = report.files
    assert recovered.problem is None and recovered.key is not None
    for ptr in committed:
        got = read_record(catalog, store, ptr.record_id)
        assert got.headers["WARC-Block-Digest"] == ptr.block_digest
    # Complete records written after the last commit are kept, and reported as orphans.
    assert sorted(recovered.orphans) == sorted(p.record_id for p in survivors)
    check = subprocess.run(
        [WARCIO, "check", store.root / recovered.key], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert [p.name for p in spool_dir.iterdir()] == []


def test_a_file_torn_inside_its_warcinfo_is_set_aside_not_deleted(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    w = WarcWriter(spool_dir, PARTITION, INFO)
    w.abandon()
    with w.path.open("r+b") as f:
        f.truncate(40)
    report = Spool(spool_dir, store, catalog, max_bytes=10**9).recover()
    assert report.files[0].records == 0 and report.files[0].key is None
    assert (spool_dir / "damaged" / w.path.name).exists()


def test_a_closed_file_waiting_in_the_spool_is_stored_at_start(
    catalog: Catalog, store: LocalStore, spool: Spool
) -> None:
    w = WarcWriter(spool.directory, PARTITION, INFO)
    pointers = _exchange(w, 1)
    w.sync()
    _commit(catalog, pointers)
    w.close()  # closed and verified, but the process died before the put
    report = spool.recover()
    assert [f.records for f in report.files] == [4]
    assert read_record(catalog, store, pointers[1].record_id).headers["WARC-Type"] == "response"


def test_the_spool_refuses_new_work_over_its_size_limit(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool", store, catalog, max_bytes=100)
    spool.prepare()
    w = WarcWriter(spool.directory, PARTITION, INFO)
    _exchange(w, 1)
    w.sync()
    assert spool.state().open_files == 1
    from archiver.errors import StoreError

    with pytest.raises(StoreError, match=r"\[spool\] max_bytes"):
        spool.check_space()


def test_a_file_another_run_closes_while_the_spool_is_measured_is_no_error(
    catalog: Catalog, store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers: one starts (measures the spool) as the other closes its file."""
    spool = Spool(tmp_path / "spool", store, catalog, max_bytes=10**9)
    spool.prepare()
    w = WarcWriter(spool.directory, PARTITION, INFO)
    _exchange(w, 1)
    w.sync()
    real_stat = Path.stat
    closed: list[object] = []

    def closes_first(self: Path, *args: object, **kwargs: object) -> object:
        if self.name.endswith(".warc.gz.open") and not closed:
            closed.append(w.close())  # renamed away between the listing and this stat
        return real_stat(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", closes_first)
    spool.check_space()  # FileNotFoundError before the fix

    assert closed and spool.state().waiting_files == 1


def _damage_middle(
    catalog: Catalog, spool_dir: Path, *, commit_all: bool
) -> tuple[Path, list[RecordPointer]]:
    w = WarcWriter(spool_dir, PARTITION, INFO)
    first = _exchange(w, 1)
    w.sync()
    _commit(catalog, first)
    later = _exchange(w, 2)
    w.sync()
    if commit_all:
        _commit(catalog, later)
    w.abandon()
    data = bytearray(w.path.read_bytes())
    data[later[0].offset + later[0].length // 2] ^= 0xFF  # damage inside, valid records after
    w.path.write_bytes(bytes(data))
    return w.path, first + later


def test_damage_before_committed_records_sets_the_whole_file_aside_uncut(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    path, _ = _damage_middle(catalog, spool_dir, commit_all=True)
    size = path.stat().st_size
    report = Spool(spool_dir, store, catalog, max_bytes=10**9).recover()
    assert report.files[0].key is None and "set aside" in (report.files[0].problem or "")
    kept = spool_dir / "damaged" / path.name
    assert kept.stat().st_size == size  # nothing cut: committed records may still be rescued


def test_damage_before_only_uncommitted_records_is_cut_after_keeping_a_copy(
    catalog: Catalog, store: LocalStore, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    path, pointers = _damage_middle(catalog, spool_dir, commit_all=False)
    original = path.read_bytes()
    report = Spool(spool_dir, store, catalog, max_bytes=10**9).recover()
    assert report.files[0].key is not None
    assert (spool_dir / "damaged" / f"{path.name}.before-repair").read_bytes() == original
    for ptr in pointers[:3]:
        read_record(catalog, store, ptr.record_id)


def test_warcio_index_of_the_stored_file_agrees_with_the_catalog_pointers(
    catalog: Catalog, store: LocalStore, spool: Spool
) -> None:
    w = WarcWriter(spool.directory, PARTITION, INFO)
    for n in range(3):
        page = _exchange(w, n)
        w.sync()
        _commit(catalog, page)
    row = spool.store_closed(w.close())
    index = subprocess.run(
        [WARCIO, "index", "-f", "warc-record-id,offset,length,warc-type", store.root / row.key],
        capture_output=True,
        text=True,
        check=True,
    )
    by_warcio = {}
    for line in index.stdout.splitlines():
        entry = json.loads(line)
        by_warcio[entry["warc-record-id"]] = (
            int(entry["offset"]),
            int(entry["length"]),
            entry["warc-type"],
        )
    with catalog.session() as s:
        by_catalog = {
            r.record_id: (r.offset, r.length, r.warc_type)
            for r in s.scalars(select(WarcRecord).where(WarcRecord.file_id == row.id))
        }
    assert len(by_catalog) == 9
    # Every committed pointer is exactly where warcio finds the record; warcio also sees warcinfo.
    assert {k: by_warcio[k] for k in by_catalog} == by_catalog
    assert [v[2] for k, v in by_warcio.items() if k not in by_catalog] == ["warcinfo"]
