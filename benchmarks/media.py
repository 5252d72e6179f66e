"""Benchmark `media_mb_s` and `media_vs_limit`: one large video through the real media path.

A deterministic, incompressible body (pseudo-random bytes, like MP4) of 256 MiB (QUICK) or
1 GiB is served from 127.0.0.1 by `benchmarks.media_stream`'s body server, a separate
process so that generating the body competes neither for this process's GIL nor its memory.

**archiver** (timed from the request, i.e. before the first body byte, until the catalog
commit returns): `MediaFetcher.store` with an `ArchivingHttpClient` as its source, exactly
as a capture does it (`download` streams the body into a spool temporary file while the
block and payload SHA-256 digests are fed, then the request and response records are
appended to the partition's open WARC through the `WriterPool`), then `pool.sync()` (the
records are durable) and one catalog transaction that adds the `warc_records` rows and the
`media` row (SQLite, `synchronous = FULL`, as configured by the archiver). Uploading to the
store and the verifying re-read when the file is closed happen later, once per WARC file,
and are not timed (the close is reported in the notes).

**limit**: the same bytes from the same server, read with bare `httpx` (`iter_raw`), one
`hashlib.sha256`, written to a file and fsynced: the least any archiver must do with a
download (receive, hash, write, make durable). Reading from the same local server keeps the
cost of serving and receiving the bytes in both figures, so the ratio is what the archiving
path costs on top.

`media_vs_limit` = archiver MB/s ÷ limit MB/s, medians of N interleaved runs after one
warm-up run of each at an eighth of the size. MB = 10^6 bytes of body.

    .venv/bin/python -m benchmarks.media [--quick] [--json OUT] [--work DIR]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.measurement import Measurement, run_main, smoke
from benchmarks.media_stream import Server, body_sha256, child_env, hex_to_label

MIB = 1 << 20
MB = 1_000_000
QUICK_SIZE = 256 * MIB
FULL_SIZE = 1024 * MIB
SMOKE_SIZE = 8 * MIB
REPEAT = 3

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
rotate_size = "8 GiB"
max_media_bytes = "8 GiB"

[logging]
level = "WARNING"
"""


def _quiet_env() -> None:
    """Talk to 127.0.0.1 directly, whatever proxy this shell is configured with."""
    env = child_env()
    os.environ.clear()
    os.environ.update(env)


class _Sink:
    """Where the client appends the exchanges of API calls; `download` appends nothing."""

    def __init__(self, pool: object, partition: object) -> None:
        self.pool, self.partition = pool, partition

    def append(self, record: object) -> object:
        return self.pool.append(self.partition, record)  # type: ignore[attr-defined]


def archiver_run(root: Path, url: str, size: int, period: str) -> dict[str, float | str]:
    """One video through `MediaFetcher.store`, sync and the catalog commit; seconds."""
    from archiver.capture import RunStats
    from archiver.catalog import Catalog, upgrade
    from archiver.catalog.records import register_records
    from archiver.config import load_config
    from archiver.connector import MediaRef
    from archiver.http import ArchivingHttpClient
    from archiver.layout import Partition
    from archiver.media import MediaFetcher
    from archiver.ratelimit import policy_for
    from archiver.warc import WarcInfo
    from archiver.warc_pool import WriterPool

    config = load_config(root / "config.toml")
    config.spool.path.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.open(config.catalog.url)
    upgrade(catalog)
    info = WarcInfo("city-archiver benchmark", {}, "benchmark", "localhost")
    pool = WriterPool(config.spool.path, info, max_size=config.warc.rotate_size, max_idle=3600.0)
    partition = Partition("general", "bench", period)
    ref = MediaRef("video-1", url=url, mime_type="video/mp4", kind="video")
    stats = RunStats()
    try:
        with ArchivingHttpClient(
            _Sink(pool, partition), policy=policy_for("default"), settings=config.http
        ) as client:
            fetcher = MediaFetcher(config, catalog, pool, client)
            t0 = time.perf_counter()
            stored = fetcher.store(ref, partition, stats)
            pool.sync()
            with catalog.session() as s:
                register_records(s, stored.pointers)
                stored.upsert(s, datetime.now(UTC))
            t1 = time.perf_counter()
        if stored.status != "stored" or stored.size != size:
            raise RuntimeError(f"the video was not stored whole: {stored.status} {stored.detail}")
        t2 = time.perf_counter()
        closed = pool.close_all()
        t3 = time.perf_counter()
    finally:
        catalog.dispose()
    warc_bytes = sum(c.size for c in closed)
    for c in closed:
        c.path.unlink()
    return {
        "seconds": t1 - t0,
        "close_s": t3 - t2,
        "warc_bytes": float(warc_bytes),
        "payload_digest": stored.record.payload_digest if stored.record else "",
    }


def limit_run(root: Path, url: str, size: int) -> dict[str, float | str]:
    """The same bytes read with bare httpx, one sha256, written to a file and fsynced."""
    import httpx

    target = root / "limit.bin"
    digest = hashlib.sha256()
    received = 0
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        t0 = time.perf_counter()
        with client.stream("GET", url) as response, target.open("wb") as out:
            response.raise_for_status()
            for chunk in response.iter_raw():
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        t1 = time.perf_counter()
    target.unlink()
    if received != size:
        raise RuntimeError(f"received {received} bytes, expected {size}")
    return {"seconds": t1 - t0, "payload_digest": hex_to_label(digest.hexdigest())}


def measure(quick: bool, work: Path) -> Measurement:
    """Medians of REPEAT interleaved runs of the archiver path and of the limit."""
    _quiet_env()
    size = SMOKE_SIZE if smoke() else QUICK_SIZE if quick else FULL_SIZE
    repeat = 1 if smoke() else REPEAT
    root = (work / "media").resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "config.toml").write_text(_CONFIG.format(root=root), encoding="utf-8")
    expected = hex_to_label(body_sha256(size))
    archiver_s: list[float] = []
    limit_s: list[float] = []
    close_s: list[float] = []
    warc_bytes = 0.0
    try:
        with Server() as server:
            warm = size // 8
            limit_run(root, server.url(warm, "length"), warm)
            archiver_run(root, server.url(warm, "length"), warm, "2026-01")
            for n in range(repeat):
                url = server.url(size, "length")
                limit = limit_run(root, url, size)
                run = archiver_run(root, url, size, f"2026-{n + 2:02d}")
                for got in (limit, run):
                    if got["payload_digest"] != expected:
                        raise RuntimeError(f"digest {got['payload_digest']} != {expected}")
                limit_s.append(float(limit["seconds"]))
                archiver_s.append(float(run["seconds"]))
                close_s.append(float(run["close_s"]))
                warc_bytes = float(run["warc_bytes"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    media = size / MB / statistics.median(archiver_s)
    limit_mb_s = size / MB / statistics.median(limit_s)
    label = f"{size // MIB} MiB video"
    return Measurement(
        values={"media_mb_s": round(media, 1), "media_vs_limit": round(media / limit_mb_s, 3)},
        repeat=repeat,
        sizes={"media_mb_s": label, "media_vs_limit": label},
        notes={
            "media_limit_mb_s": f"{limit_mb_s:.1f} (httpx iter_raw + sha256 + write + fsync)",
            "media_runs": f"median of {repeat} after a warm-up; archiver s "
            + ", ".join(f"{s:.2f}" for s in archiver_s)
            + "; limit s "
            + ", ".join(f"{s:.2f}" for s in limit_s),
            "media_close_s": f"{statistics.median(close_s):.2f} s to close and verify the "
            "WARC (once per file, not timed)",
            "media_warc_overhead": f"{warc_bytes / size:.4f} WARC bytes per body byte",
        },
    )


def main() -> int:
    return run_main(measure, "media_mb_s and media_vs_limit: one large video")


if __name__ == "__main__":
    sys.exit(main())
