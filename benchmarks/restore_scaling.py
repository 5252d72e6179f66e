"""Benchmark: restoring one item does not slow down as the catalog grows.

One real Bluesky post with two ~200 KB images is captured through the real capture path
(:class:`~archiver.capture.CaptureRunner`, a fake Bluesky AppView from ``tests/connectors``
on 127.0.0.1) into a :class:`~archiver.store.LocalStore` and a SQLite catalog (the *seed*).
For each catalog size N, a copy of the seed catalog is filled with filler rows so that
every table a restore queries (``items``, ``item_versions``, ``item_media``, ``media``,
``warc_records``) holds N rows. Each filler row is a clone of the real row with new keys;
its pointers name the one real WARC file and are never read.

Then :func:`archiver.restore.restore_item` restores the real item into a fresh temporary
directory: one warm-up, then ``--repeat`` timed runs, the median reported. The small and
the large catalog are each measured in their own child process, so neither inherits the
other's caches.

    .venv/bin/python benchmarks/restore_scaling.py [--small 1000] [--large 1000000] [--repeat 20]

The seed and each filled catalog are kept under ``--work`` (``var/bench/restore``) and
reused by the next run (``--rebuild`` starts over). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def emit(line: str = "") -> None:
    """One line on stdout, flushed (progress shows while a long build goes on)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- the seed: one real capture ------------------------------------------------------------


def capture_seed(seed: Path) -> int:
    """Capture one post with two ~200 KB images into ``seed``; return its catalog id."""
    # The fake platforms live in the test package, which is not installed.
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
            raise SystemExit(f"the seed capture did not complete: {result.reason}")
        with catalog.reader() as s:
            item_id = int(s.scalars(select(Item.id).where(Item.platform_item_id == post)).one())
        catalog.dispose()
    finally:
        server.clear()
        if server.is_running():
            server.stop()
    (seed / "seed.json").write_text(json.dumps({"item_id": item_id}))
    return item_id


def seed_item(seed: Path, rebuild: bool) -> int:
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
        raise SystemExit(f"the seed catalog has no {table} row where {where} {args}")
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
        db.execute("BEGIN")

        def filler(table: str, template: dict[str, Any], make: Any) -> None:
            todo = max(0, n - count[table])
            _insert(db, table, ({**template, **make(i)} for i in range(1, todo + 1)))

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
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def catalog_for(work: Path, seed: Path, item_id: int, n: int, rebuild: bool) -> Path:
    """A catalog of ``n`` items holding the seed item: built once, then reused."""
    path = work / f"catalog-{n}.sqlite3"
    done = path.with_suffix(".json")
    if (
        not rebuild
        and done.exists()
        and path.exists()
        and json.loads(done.read_text()).get("item_id") == item_id
    ):
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
    seconds = time.perf_counter() - started
    emit(f"  built in {seconds:.1f} s")
    done.write_text(json.dumps({"item_id": item_id, "n": n, "build_s": round(seconds, 1)}))
    return path


# -- measuring (in a child process) --------------------------------------------------------


def measure(db: Path, store_root: Path, item_id: int, repeat: int) -> dict[str, Any]:
    """Time ``restore_item`` of the seed item from the catalog at ``db``."""
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
    catalog.dispose()
    return {
        "items": items,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeat": repeat,
        "bytes_written": written,
    }


def run_child(db: Path, store_root: Path, item_id: int, repeat: int) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter, so no cache carries over between sizes."""
    argv = [sys.executable, __file__, "--measure", str(db), "--store", str(store_root)]
    argv += ["--item", str(item_id), "--repeat", str(repeat)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"the measuring child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the parent ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000, help="items in the small catalog")
    parser.add_argument("--large", type=int, default=1_000_000, help="items in the large one")
    parser.add_argument("--repeat", type=int, default=20, help="timed restores per size")
    parser.add_argument(
        "--work", type=Path, default=REPO / "var" / "bench" / "restore", help="cache directory"
    )
    parser.add_argument("--rebuild", action="store_true", help="recapture and rebuild")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--item", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.small < 1 or args.large < 1:
        parser.error("--small, --large and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure is not None:
        emit(json.dumps(measure(args.measure, args.store, args.item, args.repeat)))
        return 0
    work: Path = args.work.resolve()
    seed = work / "seed"
    item_id = seed_item(seed, args.rebuild)
    results = {}
    for label, n in (("small", args.small), ("large", args.large)):
        db = catalog_for(work, seed, item_id, n, args.rebuild)
        results[label] = run_child(db, seed / "store", item_id, args.repeat)
        emit(f"  {label}: {results[label]['median_ms']:.2f} ms median")
    small, large = results["small"], results["large"]
    ratio = large["median_ms"] / small["median_ms"]
    ok = ratio <= TARGET_RATIO and large["median_ms"] <= TARGET_MS
    emit()
    emit(f"{'catalog':>8} {'items':>11} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for label, r in results.items():
        emit(
            f"{label:>8} {r['items']:>11,} {r['median_ms']:>10.2f} "
            f"{r['min_ms']:>8.2f} {r['max_ms']:>8.2f}"
        )
    emit(
        f"ratio large/small: {ratio:.2f} (target <= {TARGET_RATIO}); large median "
        f"{large['median_ms']:.2f} ms (target <= {TARGET_MS:.0f} ms): "
        f"{'MEETS' if ok else 'MISSES'} the target; {large['bytes_written']:,} bytes restored"
    )
    emit(
        json.dumps(
            {
                "benchmark": "restore_scaling",
                "small": small,
                "large": large,
                "ratio": round(ratio, 3),
                "meets_target": ok,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
