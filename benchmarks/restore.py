"""Benchmark: restoring one item does not slow down as the catalog grows.

Keys: ``restore_ms_small``, ``restore_ms_large`` (median milliseconds of
:func:`archiver.restore.restore_item`, in-process, for one item with two ~200 KB images)
and ``restore_scaling`` (large / small). Sizes: 1,000 and 1,000,000 items (QUICK: 1,000 and
100,000). Target: scaling at most 1.5, and at most 50 ms at the large size.

One real Bluesky post with two ~200 KB images is captured through the real capture path
(:class:`~archiver.capture.CaptureRunner`, a fake Bluesky AppView from ``tests/connectors``
on 127.0.0.1) into a :class:`~archiver.store.LocalStore` and a SQLite catalog (the *seed*).
For each catalog size N, a copy of the seed catalog is filled with filler rows so that
every table a restore queries (``items``, ``item_versions``, ``item_media``, ``media``,
``warc_records``) holds N rows. Each filler row is a clone of the real row with new keys,
its own text (:func:`benchmarks.corpus.texts`, with :data:`PHRASE` planted in 100 of them)
and its own creation time; its WARC pointers name the one real WARC file and are never
read. The filled catalog is indexed for search, so :mod:`benchmarks.search` uses the same
catalogs.

The seed and each catalog are kept under ``WORK/restore/`` and reused by later runs;
:func:`prepare` builds what is missing (``python -m benchmarks.corpus build``).

    .venv/bin/python -m benchmarks.restore [--quick] [--json OUT]
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.corpus import texts
from benchmarks.measurement import Measurement, run_main, smoke

REPO = Path(__file__).resolve().parent.parent
IMAGE_BYTES = 200 * 1024
BATCH = 50_000
ACCOUNT = "mke-bluesky"
#: The ISSUE's target: the large catalog at most 1.5 times slower, and at most 50 ms.
TARGET_RATIO = 1.5
TARGET_MS = 50.0
#: The tables a restore queries that grow with the archive (``stored_files`` grows with
#: WARC files, not items, and stays as the capture left it).
FILLED = ("items", "item_versions", "warc_records", "media", "item_media")
#: Catalog sizes (small, large) and timed restores per size.
SIZES = {"full": (1000, 1_000_000), "quick": (1000, 100_000), "smoke": (100, 1000)}
REPEAT = {"full": 20, "quick": 20, "smoke": 3}
#: Two words no generated text holds (the vocabulary's made-up words are consonant-vowel
#: syllables), planted in :data:`PLANTED` filler items spread evenly over each catalog.
PHRASE = "rainbow crosswalk"
PLANTED = 100
#: Filler item i was created at FILLER_EPOCH + i * FILLER_STEP.
FILLER_EPOCH = datetime(2015, 1, 1, tzinfo=UTC)
FILLER_STEP = timedelta(minutes=5)
#: Bumped when filler rows change, so older cached catalogs are rebuilt.
LAYOUT = 2
#: Where the seed and the catalogs live under the benchmarks' work directory.
SUBDIR = "restore"


def mode(quick: bool) -> str:
    """ "smoke", "quick" or "full": the size class in effect."""
    return "smoke" if smoke() else ("quick" if quick else "full")


def emit(line: str = "") -> None:
    """One progress line on stderr, flushed (stdout may carry the JSON result)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def filler_created(i: int) -> datetime:
    """Creation time of filler item ``i`` (1-based)."""
    return FILLER_EPOCH + i * FILLER_STEP


def planted(i: int, n: int) -> bool:
    """Whether filler item ``i`` of a catalog of ``n`` holds :data:`PHRASE`."""
    return i % max(1, n // PLANTED) == 0


# -- the seed: one real capture ------------------------------------------------------------


def capture_seed(seed: Path) -> int:
    """Capture one post with two ~200 KB images into ``seed``; return its catalog id."""
    # The fake platforms live in the test package, which is not installed.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from pytest_httpserver import HTTPServer
    from sqlalchemy import select
    from werkzeug import Request, Response

    from archiver.capture import CaptureRunner
    from archiver.catalog import Catalog, upgrade
    from archiver.catalog.models import Item
    from archiver.config import load_config
    from archiver.store import LocalStore
    from archiver.warc import WarcInfo
    from tests.connectors.fake_bluesky import FakeBluesky

    class BigImageBluesky(FakeBluesky):
        """The fake AppView, serving ~200 KB incompressible JPEG-looking images."""

        def _media(self, request: Request) -> Response:
            data = b"\xff\xd8\xff\xe0" + os.urandom(IMAGE_BYTES - 4)
            return Response(data, 200, self._rate_headers(), content_type="image/jpeg")

    # The fake server's per-request access log would drown the benchmark's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    shutil.rmtree(seed, ignore_errors=True)
    seed.mkdir(parents=True)
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        fake = BigImageBluesky(server)
        fake.now = datetime.now(UTC) - timedelta(days=3)  # inside the rescan window
        post = fake.post(
            "Snow emergency declared",
            images=[("Map of snow routes", "image/jpeg"), ("Parking ban sign", "image/png")],
        )
        (seed / "config.toml").write_text(
            '[archiver]\noperator = "City of Milwaukee"\nnode = "bench"\n\n'
            '[http]\nmax_retries = 1\nmax_wait = "2s"\n\n'
            f'[[accounts]]\nid = "{ACCOUNT}"\nplatform = "bluesky"\nhandle = "{fake.handle}"\n'
            f'api_base = "{fake.base_url}"\ndepartment = "Office of the Mayor"\n'
            'series = "social-media"\nrescan_days = 14\nfull_walk_days = 30\n'
        )
        config = load_config(seed / "config.toml")
        catalog = Catalog.open(f"sqlite:///{seed / 'catalog.sqlite3'}")
        upgrade(catalog)
        info = WarcInfo("city-archiver/bench", {}, "City of Milwaukee", "bench")
        result = CaptureRunner(config, catalog, LocalStore(seed / "store"), info).capture(ACCOUNT)
        if result.status != "complete":
            raise RuntimeError(f"the seed capture did not complete: {result.reason}")
        with catalog.reader() as s:
            item_id = int(s.scalars(select(Item.id).where(Item.platform_item_id == post)).one())
        catalog.dispose()
    finally:
        server.clear()
        if server.is_running():
            server.stop()
    (seed / "seed.json").write_text(json.dumps({"item_id": item_id}))
    return item_id


def seed_item(seed: Path, rebuild: bool = False) -> int:
    """The seed's item id, capturing the seed first when there is none yet."""
    marker = seed / "seed.json"
    if marker.exists() and not rebuild:
        return int(json.loads(marker.read_text())["item_id"])
    emit(f"capturing the seed item into {seed} ...")
    return capture_seed(seed)


# -- filling a copy of the seed catalog ----------------------------------------------------


def _row(db: sqlite3.Connection, table: str, where: str, *args: Any) -> dict[str, Any]:
    cur = db.execute(f"SELECT * FROM {table} WHERE {where} LIMIT 1", args)  # noqa: S608 (fixed names)
    values = cur.fetchone()
    if values is None:
        raise RuntimeError(f"the seed catalog has no {table} row where {where} {args}")
    return dict(zip([d[0] for d in cur.description], values, strict=True))


def _insert(db: sqlite3.Connection, table: str, rows: Iterator[dict[str, Any]]) -> None:
    first = next(rows, None)
    if first is None:
        return
    columns = list(first)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 (names from the schema)
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    batch = [tuple(first.values())]
    for row in rows:
        batch.append(tuple(row[c] for c in columns))
        if len(batch) >= BATCH:
            db.executemany(sql, batch)
            batch.clear()
    db.executemany(sql, batch)


def _sqlite_time(moment: datetime) -> str:
    # How SQLAlchemy stores a DateTime in SQLite (naive UTC text), so ranges compare right.
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill(path: Path, item_id: int, n: int) -> None:
    """Fill the catalog at ``path`` until every table in :data:`FILLED` holds ``n`` rows."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # Only ever a throw-away benchmark copy: a crash mid-load just means rebuilding it.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("PRAGMA cache_size = -262144")
        item = _row(db, "items", "id = ?", item_id)
        version = _row(db, "item_versions", "item_id = ?", item_id)
        record = _row(db, "warc_records", "record_id = ?", version["warc_record_id"])
        link = _row(db, "item_media", "version_id = ?", version["id"])
        medium = _row(db, "media", "id = ?", link["media_id"])
        count = {
            t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
            for t in FILLED
        }
        base = {
            t: int(db.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0])  # noqa: S608
            for t in FILLED
        }
        todo = max(0, n - count["items"])

        def text() -> Iterator[str]:
            # The same texts, in order, for items and then versions (never all in memory).
            for i, t in enumerate(texts(todo, seed=n), start=1):
                yield f"{t[:-1]} {PHRASE}." if planted(i, n) else t

        item_text, version_text = text(), text()
        db.execute("BEGIN")

        def filler(table: str, template: dict[str, Any], make: Callable[[int], Any]) -> None:
            rows = max(0, n - count[table])
            _insert(db, table, ({**template, **make(i)} for i in range(1, rows + 1)))

        filler(
            "items",
            item,
            lambda i: {
                "id": base["items"] + i,
                "platform_item_id": f"filler-{i}",
                "parent_id": None,
                "platform_parent_id": None,
                "thread_id": f"filler-{i}",
                "content_sha256": f"{i:064x}",
                "created_at": _sqlite_time(filler_created(i)),
                "text": next(item_text),
            },
        )
        filler(
            "item_versions",
            version,
            lambda i: {
                "id": base["item_versions"] + i,
                "item_id": base["items"] + i,
                "version_no": 1,
                "content_sha256": f"{i:064x}",
                "warc_record_id": f"<urn:uuid:filler-{i:012d}>",
                "parquet_file_id": None,
                "text": next(version_text),
            },
        )
        filler("warc_records", record, lambda i: {"record_id": f"<urn:uuid:filler-{i:012d}>"})
        filler(
            "media",
            medium,
            lambda i: {
                "id": base["media"] + i,
                "sha256": f"{i:064x}",
                "warc_record_id": f"<urn:uuid:filler-{i:012d}>",
            },
        )
        filler(
            "item_media",
            link,
            lambda i: {
                "version_id": base["item_versions"] + i,
                "position": 0,
                "media_id": base["media"] + i,
            },
        )
        db.execute("COMMIT")
    finally:
        db.close()


def index(path: Path) -> int:
    """Rebuild the search index of the catalog at ``path`` with the archiver's own code."""
    from archiver.catalog import Catalog
    from archiver.search.index import reindex

    catalog = Catalog.open(f"sqlite:///{path}")
    try:
        return reindex(catalog)
    finally:
        catalog.dispose()


def upgrade_cached(path: Path) -> None:
    """Bring a cached catalog to this archiver's schema, as a deployment's upgrade would
    (a migration added since it was built must not fail, or be skipped by, the timing)."""
    from archiver.catalog import Catalog, upgrade

    catalog = Catalog.open(f"sqlite:///{path}")
    try:
        upgrade(catalog)
    finally:
        catalog.dispose()


def catalog_for(work: Path, seed: Path, item_id: int, n: int, rebuild: bool = False) -> Path:
    """A search-indexed catalog of ``n`` items holding the seed item: built once, reused."""
    path = work / f"catalog-{n}.sqlite3"
    done = path.with_suffix(".json")
    if not rebuild and done.exists() and path.exists():
        marker = json.loads(done.read_text())
        if marker.get("item_id") == item_id and marker.get("layout") == LAYOUT:
            upgrade_cached(path)
            return path
    for stale in (path, done, Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    emit(f"building a catalog of {n:,} items ...")
    started = time.perf_counter()
    # The seed is in WAL mode: checkpoint it so the copied main file holds every row.
    src = sqlite3.connect(seed / "catalog.sqlite3")
    try:
        src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dst = sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    fill(path, item_id, n)
    filled = time.perf_counter() - started
    indexed = index(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    seconds = time.perf_counter() - started
    emit(f"  built in {seconds:.1f} s ({filled:.1f} s rows, {indexed:,} versions indexed)")
    done.write_text(
        json.dumps({"item_id": item_id, "n": n, "layout": LAYOUT, "build_s": round(seconds, 1)})
    )
    return path


def catalogs(work: Path, sizes: tuple[int, ...], rebuild: bool = False) -> tuple[int, list[Path]]:
    """The seed item id and a catalog for each size, under ``work`` (built when missing)."""
    root = work.resolve()
    item_id = seed_item(root / "seed", rebuild)
    return item_id, [catalog_for(root, root / "seed", item_id, n, rebuild) for n in sizes]


# -- measuring ------------------------------------------------------------------------------


def time_restore(db: Path, store_root: Path, item_id: int, repeat: int) -> dict[str, Any]:
    """Median ms of ``restore_item`` of the seed item from the catalog at ``db``, after one
    warm-up restore; each restore writes into a fresh directory, removed outside the timing."""
    from sqlalchemy import func, select

    from archiver.catalog import Catalog
    from archiver.catalog.models import Item
    from archiver.restore import restore_item
    from archiver.store import LocalStore

    catalog = Catalog.open(f"sqlite:///{db}")
    store = LocalStore(store_root)
    with catalog.reader() as s:
        items = int(s.scalar(select(func.count()).select_from(Item)) or 0)
    times: list[float] = []
    written = 0
    try:
        with tempfile.TemporaryDirectory(prefix="restore-bench-") as tmp:
            for run in range(repeat + 1):  # run 0 is the warm-up
                target = Path(tmp) / f"run-{run}"
                started = time.perf_counter()
                result = restore_item(catalog, store, item_id, target, restored_by="benchmark")
                elapsed = time.perf_counter() - started
                written = sum(f.stat().st_size for f in result.directory.rglob("*") if f.is_file())
                shutil.rmtree(target)
                if run:
                    times.append(elapsed * 1000)
    finally:
        catalog.dispose()
    return {
        "items": items,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeat": repeat,
        "bytes_written": written,
    }


def prepare(quick: bool, work: Path) -> None:
    """Capture the seed and build both catalogs (reused when already built)."""
    catalogs(work / SUBDIR, SIZES[mode(quick)])


def measure(quick: bool, work: Path) -> Measurement:
    """Restore the seed item from the small and the large catalog, in this process."""
    size = mode(quick)
    small_n, large_n = SIZES[size]
    item_id, (small_db, large_db) = catalogs(work / SUBDIR, (small_n, large_n))
    store_root = (work / SUBDIR).resolve() / "seed" / "store"
    repeat = REPEAT[size]
    small = time_restore(small_db, store_root, item_id, repeat)
    large = time_restore(large_db, store_root, item_id, repeat)
    return Measurement(
        values={
            "restore_ms_small": small["median_ms"],
            "restore_ms_large": large["median_ms"],
            "restore_scaling": large["median_ms"] / small["median_ms"],
        },
        sizes={
            "restore_ms_small": small["items"],
            "restore_ms_large": large["items"],
            "restore_scaling": f"{large['items']}/{small['items']} items",
        },
        notes={
            "restore": (
                f"median of {repeat} restores after 1 warm-up, one item with two ~200 KB "
                f"images ({large['bytes_written']:,} bytes written); min/max ms small "
                f"{small['min_ms']:.2f}/{small['max_ms']:.2f}, large "
                f"{large['min_ms']:.2f}/{large['max_ms']:.2f}"
            ),
        },
        repeat=repeat,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main(measure, "Restore one item from a small and a large catalog.", argv)


if __name__ == "__main__":
    raise SystemExit(main())
