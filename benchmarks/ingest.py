"""Benchmark: WARC records per second through the real capture path, against bare warcio.

**The archiver.** One :class:`~archiver.capture.CaptureRunner` run of one Bluesky account
(the real ``connectors.bluesky`` connector), through the real archiving HTTP client, into
a fresh spool, local store and SQLite catalog, then the Parquet roll of every partition:
exchange records (``request``/``response``), one ``conversion`` record per item version,
catalog rows and search index rows per page, WARC files closed (verified by one re-read)
and stored, Parquet written and stored. The platform is an in-process ``httpx``
transport (:class:`BenchAppView`) handed to the runner: it answers ``getProfile``,
``getAuthorFeed`` (pages of 100) and ``getPostThread`` like the public AppView, with
deterministic posts of ~1.5 KB of JSON; every fifth post has two replies by a member of
the public (comments). No images: media have their own benchmark.

**The baseline**, in the same run and on the same disk: warcio 1.8's
``WARCWriter(gzip=True)``, its digester switched to SHA-256, writing the very records the
archiver wrote (read back from its WARCs before the timing: same types, target URIs,
links and blocks) with ``create_warc_record`` + ``write_record``, then one ``fsync``.

``ingest_vs_warcio`` = archiver records/s ÷ baseline records/s (warcinfo records are not
counted on either side). The archiver's time includes everything a capture does that the
baseline does not: HTTP parsing, the connector, catalog transactions (``synchronous=FULL``)
and the fsync of every page before its commit, the close-time re-read, the store copy and
the Parquet roll. Warm-up: one small run of each; then N repetitions, medians reported.

    .venv/bin/python -m benchmarks.ingest [--quick] [--json OUT] [--work DIR]
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from benchmarks.measurement import Measurement, run_main, smoke

ACCOUNT = "bench-bluesky"
API_BASE = "https://bench-appview.invalid"
CITY_DID = "did:plc:benchcityofexample4y2bqfzk"
CITY_HANDLE = "city.example.gov"
PUBLIC_DID = "did:plc:benchresident5bq2c3d4e5f6g"
PUBLIC_HANDLE = "resident.bsky.social"
FEED_PAGE = 100
REPLIES_EVERY = 5  # every fifth post has REPLIES replies (comments)
REPLIES = 2
#: Records the baseline holds in memory at a time.
CHUNK = 2000
#: The newest post; older ones go back 30 minutes each (a few monthly partitions).
NEWEST = datetime(2025, 3, 31, 12, tzinfo=UTC)
_S32 = "234567abcdefghijklmnopqrstuvwxyz"
_VOCABULARY = (
    "snow emergency parking ban route plow crews tonight residents please move vehicles "
    "leaf pickup schedule library hours extended budget hearing council meeting agenda "
    "water main repair detour bus service update park cleanup volunteers recycling permit "
    "application deadline public comment zoning board traffic signal closure"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass(frozen=True)
class Sizes:
    posts: int
    repeat: int


def sizes(quick: bool) -> Sizes:
    if smoke():
        return Sizes(posts=150, repeat=1)
    return Sizes(posts=1500, repeat=3) if quick else Sizes(posts=10_000, repeat=5)


# -- the platform ------------------------------------------------------------------------


def _tid(moment: datetime, n: int) -> str:
    value = (int(moment.timestamp() * 1_000_000) << 10) | (n & 0x3FF)
    return "".join(_S32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def _cid(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return "bafyrei" + digest[:52]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _author(did: str, handle: str, name: str) -> dict[str, Any]:
    return {
        "did": did,
        "handle": handle,
        "displayName": name,
        "avatar": f"https://cdn.bsky.app/img/avatar/plain/{did}/{_cid(did)}@jpeg",
        "associated": {"chat": {"allowIncoming": "following"}},
        "labels": [],
        "createdAt": "2023-06-01T09:00:00.000Z",
    }


_CITY = _author(CITY_DID, CITY_HANDLE, "City of Example")
_PUBLIC = _author(PUBLIC_DID, PUBLIC_HANDLE, "A Resident")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def post_view(index: int, *, reply_to: str | None = None, reply: int = 0) -> dict[str, Any]:
    """Post ``index`` of the account (or reply ``reply`` under it) as the AppView shows it.

    About 1.5 KB of JSON for a post: text with a link facet, langs, counts, viewer state.
    """
    rng = random.Random(index * 7919 + reply)  # noqa: S311 (a reproducible corpus, no secret)
    created = NEWEST - timedelta(minutes=30 * index) + timedelta(minutes=reply)
    did, author = (PUBLIC_DID, _PUBLIC) if reply_to else (CITY_DID, _CITY)
    uri = f"at://{did}/app.bsky.feed.post/{_tid(created, reply)}"
    link = f"https://city.example.gov/news/{index}"
    text = _text(rng, 38 if reply_to is None else 14) + " " + link
    start = len(text.encode()) - len(link.encode())
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post",
        "createdAt": _iso(created),
        "langs": ["en"],
        "text": text,
        "facets": [
            {
                "$type": "app.bsky.richtext.facet",
                "index": {"byteStart": start, "byteEnd": len(text.encode())},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": link}],
            }
        ],
    }
    if reply_to is not None:
        root = {"uri": reply_to, "cid": _cid(reply_to)}
        record["reply"] = {"root": root, "parent": root}
    replies = REPLIES if reply_to is None and index % REPLIES_EVERY == 0 else 0
    return {
        "uri": uri,
        "cid": _cid(uri),
        "author": author,
        "record": record,
        "embed": {
            "$type": "app.bsky.embed.external#view",
            "external": {
                "uri": link,
                "title": f"City news {index}",
                "description": _text(rng, 12),
                "thumb": f"https://cdn.bsky.app/img/feed_thumbnail/plain/{did}/{_cid(link)}@jpeg",
            },
        },
        "replyCount": replies,
        "repostCount": rng.randrange(40),
        "likeCount": rng.randrange(400),
        "quoteCount": rng.randrange(5),
        "indexedAt": _iso(created + timedelta(seconds=2)),
        "viewer": {"threadMuted": False, "embeddingDisabled": False},
        "labels": [],
    }


class BenchAppView:
    """An in-process Bluesky AppView over ``posts`` deterministic posts, newest first.

    Every answer body is rendered before the timing starts, so generating the corpus is
    not counted against the archiver.
    """

    def __init__(self, posts: int) -> None:
        self.posts = posts
        self.requests = 0
        profile = {
            # No avatar or banner: they would be media, which have their own benchmark.
            **{k: v for k, v in _CITY.items() if k != "avatar"},
            "description": "Official account of the City of Example.",
            "followersCount": 1234,
            "followsCount": 56,
            "postsCount": posts,
            "indexedAt": "2023-06-01T09:00:00.000Z",
        }
        self._profile = _dump(profile)
        self._feed: dict[int, bytes] = {}
        self._threads: dict[str, bytes] = {}
        views = [post_view(i) for i in range(posts)]
        for start in range(0, posts, FEED_PAGE):
            end = min(start + FEED_PAGE, posts)
            page: dict[str, Any] = {"feed": [{"post": v} for v in views[start:end]]}
            if end < posts:
                page["cursor"] = str(end)
            self._feed[start] = _dump(page)
        for i, view in enumerate(views):
            self._threads[view["uri"]] = _dump({"thread": _thread(i, view)})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        method = request.url.path.removeprefix("/xrpc/")
        # urllib's parser: httpx's ``url.params`` would cost more than the whole answer.
        params = dict(parse_qsl(request.url.query.decode("ascii")))
        body: bytes | None = None
        if method == "app.bsky.actor.getProfile":
            body = self._profile
        elif method == "app.bsky.feed.getAuthorFeed":
            if int(params.get("limit") or 0) != FEED_PAGE:
                raise ValueError(f"the connector asked for pages of {params.get('limit')}")
            body = self._feed.get(int(params.get("cursor") or 0))
        elif method == "app.bsky.feed.getPostThread":
            body = self._threads.get(params["uri"])
        if body is None:
            return _answer(400, _dump({"error": "InvalidRequest", "message": str(request.url)}))
        return _answer(200, body)


def _thread(index: int, view: dict[str, Any]) -> dict[str, Any]:
    replies = [
        {
            "$type": "app.bsky.feed.defs#threadViewPost",
            "post": post_view(index, reply_to=view["uri"], reply=r + 1),
            "replies": [],
        }
        for r in range(view["replyCount"])
    ]
    return {"$type": "app.bsky.feed.defs#threadViewPost", "post": view, "replies": replies}


def _dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _answer(status: int, data: bytes) -> httpx.Response:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": str(len(data)),
        "Date": "Mon, 31 Mar 2025 12:00:00 GMT",
        "Vary": "Accept-Encoding",
        "RateLimit-Limit": "3000",
        "RateLimit-Remaining": "2999",
        "RateLimit-Policy": "3000;w=300",
    }
    # A stream, as from a socket: the client reads it raw (`iter_raw`).
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(data))


# -- the archiver side -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    items: int
    records: int
    store: Path


def _config_text(spool: Path, store: Path, catalog: Path) -> str:
    return f"""
[archiver]
operator = "City of Example"
node = "bench"

[catalog]
url = "sqlite:///{catalog}"

[store]
backend = "local"
path = "{store}"

[spool]
path = "{spool}"

[parquet]
min_rows = 1

[http]
max_retries = 1
max_wait = "2s"

[[accounts]]
id = "{ACCOUNT}"
platform = "bluesky"
handle = "{CITY_HANDLE}"
api_base = "{API_BASE}"
department = "Office of the Mayor"
series = "social-media"
rescan_days = 0
full_walk_days = 30
"""


def archiver_run(root: Path, platform: BenchAppView) -> Run:
    """One capture of ``platform``'s posts into a fresh workspace under ``root``, timed."""
    from archiver.capture import CaptureRunner
    from archiver.catalog import Catalog, upgrade
    from archiver.config import load_config
    from archiver.store import LocalStore
    from archiver.warc import WarcInfo

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    catalog_path, store = root / "catalog.sqlite3", root / "store"
    (root / "config.toml").write_text(_config_text(root / "spool", store, catalog_path))
    config = load_config(root / "config.toml")
    catalog = Catalog.open(f"sqlite:///{catalog_path}")
    upgrade(catalog)
    info = WarcInfo("city-archiver/bench", {}, "City of Example", "bench")
    runner = CaptureRunner(config, catalog, LocalStore(store), info, transport=platform.transport())
    start = time.perf_counter()
    result = runner.capture(ACCOUNT)
    runner.roll_parquet(ACCOUNT)
    seconds = time.perf_counter() - start
    catalog.dispose()
    if result.status != "complete":
        raise SystemExit(f"the benchmark capture did not complete: {result.reason}")
    db = sqlite3.connect(catalog_path)
    try:
        records = int(db.execute("SELECT count(*) FROM warc_records").fetchone()[0])
        parquet_rows = int(
            db.execute(
                "SELECT coalesce(sum(records), 0) FROM stored_files WHERE kind = 'parquet'"
            ).fetchone()[0]
        )
    finally:
        db.close()
    items = result.stats["items_seen"]
    if parquet_rows != result.stats["new"]:
        raise SystemExit(f"Parquet holds {parquet_rows} rows, not the {result.stats['new']} new")
    return Run(seconds, items, records, store)


# -- the baseline ------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One record as the archiver wrote it: what the baseline writes again."""

    warc_type: str
    target_uri: str | None
    content_type: str
    links: dict[str, str]
    block: bytes


def read_records(store: Path) -> Iterator[list[Source]]:
    """Every record but warcinfo from the WARCs in ``store``, in order, in lists of CHUNK.

    In pieces, so that the benchmark never holds a whole large corpus: its own memory is
    counted in ``peak_rss_mb`` with the archiver's.
    """
    from warcio.archiveiterator import ArchiveIterator

    out: list[Source] = []
    for path in sorted(store.glob("warc/**/*.warc.gz")):
        with path.open("rb") as f:
            for rec in ArchiveIterator(f, no_record_parse=True):
                if rec.rec_type == "warcinfo":
                    continue
                h = rec.rec_headers
                links = {
                    name: value
                    for name in ("WARC-Concurrent-To", "WARC-Refers-To")
                    if (value := h.get_header(name))
                }
                out.append(
                    Source(
                        rec.rec_type,
                        h.get_header("WARC-Target-URI"),
                        h.get_header("Content-Type"),
                        links,
                        rec.raw_stream.read(),
                    )
                )
                if len(out) >= CHUNK:
                    yield out
                    out = []
    if out:
        yield out


def check_warcs(store: Path) -> None:
    """``warcio check`` on every WARC the archiver wrote: a fast path must stay a valid one."""
    warcio = Path(sys.executable).with_name("warcio")
    files = sorted(store.glob("warc/**/*.warc.gz"))
    done = subprocess.run([warcio, "check", *files], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"warcio check failed on the archiver's WARCs: {done.stdout[-2000:]}")


def baseline_run(path: Path, store: Path) -> tuple[float, int]:
    """warcio writing the records of ``store`` to ``path`` (SHA-256, gzip), fsynced.

    Seconds spent writing (the reading of each chunk of records is not timed) and records.
    """
    from warcio.utils import Digester
    from warcio.warcwriter import WARCWriter

    class Sha256WARCWriter(WARCWriter):  # type: ignore[misc]  # warcio is untyped
        @staticmethod
        def _create_digester() -> Any:
            return Digester("sha256")

    path.unlink(missing_ok=True)
    seconds, count = 0.0, 0
    with path.open("wb") as f:
        writer = Sha256WARCWriter(f, gzip=True, warc_version="1.1")
        for chunk in read_records(store):
            start = time.perf_counter()
            for src in chunk:
                rec = writer.create_warc_record(
                    src.target_uri,
                    src.warc_type,
                    payload=io.BytesIO(src.block),
                    length=len(src.block),
                    warc_content_type=src.content_type,
                    warc_headers_dict=dict(src.links),
                )
                writer.write_record(rec)
            seconds += time.perf_counter() - start
            count += len(chunk)
        start = time.perf_counter()
        f.flush()
        os.fsync(f.fileno())
        seconds += time.perf_counter() - start
    path.unlink()
    return seconds, count


def writer_run(root: Path, store: Path) -> float:
    """The archiver's own writer on ``store``'s records: builders, appends, fsync; seconds.

    Not a key, a note: it tells the WARC writer's share apart from the rest of the path.
    """
    from archiver.layout import Partition
    from archiver.warc import WarcInfo, WarcWriter

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    info = WarcInfo("city-archiver/bench", {}, "City of Example", "bench")
    start = time.perf_counter()
    writer = WarcWriter(root, Partition("social-media", ACCOUNT, "2025-03"), info)
    seconds = time.perf_counter() - start
    for chunk in read_records(store):
        start = time.perf_counter()
        _append_all(writer, chunk)
        seconds += time.perf_counter() - start
    start = time.perf_counter()
    writer.sync()
    seconds += time.perf_counter() - start
    writer.abandon()
    shutil.rmtree(root)
    return seconds


def _append_all(writer: Any, records: list[Source]) -> None:
    from archiver.warc_records import conversion_record, request_record, response_record

    for src in records:
        uri = src.target_uri or ""
        if src.warc_type in ("request", "response"):
            cut = src.block.index(b"\r\n\r\n") + 4
            build = request_record if src.warc_type == "request" else response_record
            record = build(
                uri,
                src.block[:cut],
                src.block[cut:],
                concurrent_to=src.links.get("WARC-Concurrent-To"),
            )
        else:
            record = conversion_record(uri, src.block, refers_to=src.links["WARC-Refers-To"])
        writer.append(record)


# -- the measurement ---------------------------------------------------------------------


def _quiet() -> None:
    from archiver.logging import configure_logging

    configure_logging("WARNING")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def measure(quick: bool, work: Path) -> Measurement:
    size = sizes(quick)
    _quiet()
    root = work / "ingest"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    # Warm-up: imports, the catalog schema code, the page cache for the baseline's file.
    warm = archiver_run(root / "warm", BenchAppView(min(size.posts, 200)))
    platform = BenchAppView(size.posts)
    baseline_run(root / "baseline.warc.gz", warm.store)

    runs: list[Run] = []
    base: list[float] = []
    writer: list[float] = []
    for n in range(size.repeat):
        run = archiver_run(root / f"run-{n}", platform)
        runs.append(run)
        if n == 0:
            check_warcs(run.store)
        seconds, count = baseline_run(root / "baseline.warc.gz", run.store)
        if count != run.records:
            raise SystemExit(f"read {count} records back, the catalog lists {run.records}")
        base.append(seconds)
        writer.append(writer_run(root / "writer", run.store))
        shutil.rmtree(root / f"run-{n}")
    shutil.rmtree(root, ignore_errors=True)

    records, items = runs[0].records, runs[0].items
    archiver_s = statistics.median(r.seconds for r in runs)
    baseline_s = statistics.median(base)
    records_s = records / archiver_s
    baseline_records_s = records / baseline_s
    writer_s = statistics.median(writer)
    return Measurement(
        repeat=size.repeat,
        values={
            "ingest_items_s": round(items / archiver_s, 1),
            "ingest_records_s": round(records_s, 1),
            "ingest_vs_warcio": round(records_s / baseline_records_s, 3),
        },
        sizes={
            "ingest_items_s": f"{items} items",
            "ingest_records_s": f"{records} records",
            "ingest_vs_warcio": f"{records} records",
        },
        notes={
            "ingest": (
                f"{size.posts} Bluesky posts (+{REPLIES} replies on every {REPLIES_EVERY}th), "
                f"{items} items, {records} records; median of {size.repeat}: archiver "
                f"{archiver_s:.3f} s (capture + Parquet roll), warcio baseline "
                f"{baseline_s:.3f} s ({baseline_records_s:.0f} records/s)"
            ),
            "ingest_writer": (
                f"the archiver's WarcWriter alone (builders with their digests, appends, one "
                f"fsync) on the same records: {writer_s:.3f} s, "
                f"{baseline_s / writer_s:.2f} times warcio's rate"
            ),
        },
    )


def main() -> int:
    return run_main(measure, "WARC records/s of the capture path against warcio")


if __name__ == "__main__":
    raise SystemExit(main())
