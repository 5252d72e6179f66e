"""Benchmark `verify_mb_s` and `verify_vs_sha256`: `archiver verify --all` on a stored archive.

**Corpus** (built once by :func:`prepare`, cached under `<work>/verify-<size>/`): one
partition's WARC files written through the real writer (`WriterPool`, which closes each file
with its verifying re-read), their record rows committed as a capture commits them, and each
file taken into a `LocalStore` and the SQLite catalog by the real `Spool.store_closed`.
What the files hold is what a capture of a media-heavy account writes: pages of ~1.5 KB
Mastodon statuses (`benchmarks.corpus.posts`, 40 per API response, request and response
records), two ~200 KB images with every page (`corpus.image_bytes`, streamed in as a
media download is) and one large video (`corpus.video_stream`). Files rotate at
64 MiB (16 MiB QUICK), so there are several files for the command's workers.

**verify**: the real command, `archiver --config ... verify --all --json`, in a child
process; its JSON report gives the bytes checked and the seconds the checking took (from
the selection to the last result: the command's own start-up is not included, and is in the
notes). Every file is read once from the store; its whole-file SHA-256 is computed and every
WARC record's block and payload digests are recomputed while its gzip member is inflated.

**sha256**: the same files read from the store directory (1 MiB reads, the store's chunk),
hashed with one `hashlib.sha256` per file, on one thread: `sha256sum` of the store.

`verify_vs_sha256` = verify MB/s ÷ sha256 MB/s, medians of 3 runs each (interleaved) after
one warm-up of each, which also brings the files into the page cache for both.
MB = 10^6 stored (compressed) bytes.

    .venv/bin/python -m benchmarks.verify [--quick] [--json OUT] [--work DIR]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from benchmarks import corpus
from benchmarks.measurement import Measurement, run_main, smoke
from benchmarks.restore import upgrade_cached

MIB = 1 << 20
MB = 1_000_000
REPEAT = 3
#: Bump when what the corpus holds changes, so that a cached one is rebuilt.
CORPUS_VERSION = 1
_READ = 1 << 20
_URL = corpus.BASE_URL


def _sizes(quick: bool) -> dict[str, int]:
    """Posts, video bytes and the rotation size of each corpus."""
    if smoke():
        return {"posts": 400, "video": 4 * MIB, "rotate": 4 * MIB}
    if quick:
        return {"posts": 8_000, "video": 64 * MIB, "rotate": 16 * MIB}
    return {"posts": 40_000, "video": 512 * MIB, "rotate": 64 * MIB}


def _root(quick: bool, work: Path) -> Path:
    label = "smoke" if smoke() else "quick" if quick else "full"
    return (work / f"verify-{label}").resolve()


_CONFIG = """\
[archiver]
operator = "benchmark"

[catalog]
url = "sqlite:///{root}/catalog.sqlite3"

[store]
backend = "local"
path = "{root}/store"

[spool]
path = "{root}/spool"
max_bytes = "64 GiB"

[warc]
rotate_size = "{rotate}"
max_media_bytes = "8 GiB"

[logging]
level = "WARNING"
"""


def _marker(root: Path) -> Path:
    return root / "corpus.json"


def prepare(quick: bool, work: Path) -> None:
    """Build the stored archive under `<work>/verify-<size>/` unless it is there already."""
    root = _root(quick, work)
    sizes = _sizes(quick)
    want = {"version": CORPUS_VERSION, **sizes}
    marker = _marker(root)
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")) == want:
        upgrade_cached(root / "catalog.sqlite3")  # a migration added since it was built
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "config.toml").write_text(
        _CONFIG.format(root=root, rotate=sizes["rotate"]), encoding="utf-8"
    )
    _build(root, sizes)
    marker.write_text(json.dumps(want), encoding="utf-8")


def _build(root: Path, sizes: dict[str, int]) -> None:
    from archiver.catalog import Catalog, upgrade
    from archiver.catalog.records import register_records
    from archiver.config import load_config
    from archiver.layout import Partition
    from archiver.spool import Spool
    from archiver.store.local import LocalStore
    from archiver.warc import WarcInfo
    from archiver.warc_pool import WriterPool
    from archiver.warc_records import RecordPointer, http_head, request_record, response_record

    config = load_config(root / "config.toml")
    spool_dir = config.spool.path
    spool_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.open(config.catalog.url)
    upgrade(catalog)
    store = LocalStore(root / "store")
    spool = Spool(spool_dir, store, catalog, max_bytes=config.spool.max_bytes)
    info = WarcInfo("city-archiver benchmark", {}, "benchmark", "localhost")
    pool = WriterPool(spool_dir, info, max_size=sizes["rotate"], max_idle=1e9)
    partition = Partition("general", "bench-verify", "2020-01")
    json_head = http_head("HTTP/1.1 200 OK", [("Content-Type", "application/json")])

    def commit(pointers: list[RecordPointer]) -> None:
        pool.sync()  # the write order: records durable, then the rows that point to them
        with catalog.session() as s:
            register_records(s, pointers)
        for closed in pool.rotate_due():
            spool.store_closed(closed)

    def fetch(url: str, content_type: str, body: Any, length: int) -> list[RecordPointer]:
        req = request_record(
            url, f"GET {url} HTTP/1.1\r\nHost: social.example.gov\r\n\r\n".encode()
        )
        head = http_head(
            "HTTP/1.1 200 OK", [("Content-Type", content_type), ("Content-Length", str(length))]
        )
        writer = pool.writer_for(partition)
        return [
            pool.append(partition, req),
            writer.append_response_stream(url, head, body, max_bytes=length),
        ]

    statuses = list(corpus.posts(sizes["posts"], seed=8))
    per_page = 40
    for start in range(0, len(statuses), per_page):
        batch = statuses[start : start + per_page]
        url = f"{_URL}/api/v1/accounts/1/statuses?max_id={batch[0]['id']}"
        body = json.dumps(batch).encode("utf-8")
        ptrs = [
            pool.append(partition, request_record(url, f"GET {url} HTTP/1.1\r\n\r\n".encode())),
            pool.append(partition, response_record(url, json_head, body)),
        ]
        for k, status in enumerate(batch[:2]):
            image = corpus.image_bytes(int(status["id"]) * 16 + k)
            ptrs += fetch(f"{_URL}/media/{status['id']}-{k}.jpg", "image/jpeg", [image],
                          len(image))  # fmt: skip
        commit(ptrs)
    video = sizes["video"]
    commit(fetch(f"{_URL}/media/video-1.mp4", "video/mp4", corpus.video_stream(8, video), video))
    for closed in pool.close_all():
        spool.store_closed(closed)
    catalog.dispose()


def _store_files(root: Path) -> list[Path]:
    """The stored files the catalog lists, in its key order (as `verify --all` reads them)."""
    import sqlite3

    with closing(sqlite3.connect(root / "catalog.sqlite3")) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM stored_files ORDER BY key")]
    return [root / "store" / key for key in keys]


def sha256_run(files: list[Path]) -> tuple[float, int]:
    """Seconds to read and hash every stored file on one thread, and the bytes hashed."""
    total = 0
    buf = bytearray(_READ)
    view = memoryview(buf)
    t0 = time.perf_counter()
    for path in files:
        digest = hashlib.sha256()
        with path.open("rb", buffering=0) as f:
            while n := f.readinto(buf):
                digest.update(view[:n])
                total += n
        digest.hexdigest()
    return time.perf_counter() - t0, total


def verify_run(root: Path) -> dict[str, Any]:
    """`archiver verify --all --json` in a child process: its report and its wall time."""
    archiver = Path(sys.executable).with_name("archiver")
    argv = [str(archiver), "--config", str(root / "config.toml"), "verify", "--all", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=root)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"archiver verify failed ({proc.returncode}):\n{proc.stderr}")
    report: dict[str, Any] = json.loads(proc.stdout)
    if not report["ok"] or report["failed"] or report["missing"]:
        raise RuntimeError(f"archiver verify found damage: {proc.stdout[:2000]}")
    report["wall_s"] = wall
    return report


def measure(quick: bool, work: Path) -> Measurement:
    """Medians of REPEAT interleaved runs of the command and of the sha256 baseline."""
    from archiver.commands.verify_cmd import workers

    prepare(quick, work)
    root = _root(quick, work)
    files = _store_files(root)
    sha256_run(files)
    verify_run(root)
    sha_s: list[float] = []
    verify_s: list[float] = []
    wall_s: list[float] = []
    total = 0
    repeat = 1 if smoke() else REPEAT
    for _ in range(repeat):
        seconds, total = sha256_run(files)
        sha_s.append(seconds)
        report = verify_run(root)
        if report["bytes"] != total:
            raise RuntimeError(f"verify read {report['bytes']} bytes, the files hold {total}")
        verify_s.append(float(report["seconds"]))
        wall_s.append(report["wall_s"])
        records = sum(f["records"] for f in report["files"])
    sha_mb_s = total / MB / statistics.median(sha_s)
    verify_mb_s = total / MB / statistics.median(verify_s)
    label = f"{len(files)} WARC files, {total / MB:.0f} MB, {records} records"
    return Measurement(
        values={
            "verify_mb_s": round(verify_mb_s, 1),
            "verify_vs_sha256": round(verify_mb_s / sha_mb_s, 3),
        },
        repeat=repeat,
        sizes={"verify_mb_s": label, "verify_vs_sha256": label},
        notes={
            "verify_sha256_mb_s": f"{sha_mb_s:.1f} (one thread: read + hashlib.sha256)",
            "verify_workers": f"{workers()} files at a time (one per usable core, at most 4)",
            "verify_runs": "median of "
            + f"{len(verify_s)} after a warm-up; verify s "
            + ", ".join(f"{s:.2f}" for s in verify_s)
            + "; sha256 s "
            + ", ".join(f"{s:.2f}" for s in sha_s),
            "verify_wall_s": f"{statistics.median(wall_s):.2f} s for the whole command, "
            "start-up included",
        },
    )


def main() -> int:
    return run_main(measure, "verify_mb_s and verify_vs_sha256: archiver verify --all")


if __name__ == "__main__":
    sys.exit(main())
