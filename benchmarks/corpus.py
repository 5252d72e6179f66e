"""A deterministic corpus for the benchmarks: accounts, posts, comments, images, videos.

Everything comes from a seeded PRNG, so the same seed gives the same bytes on every
machine and every run:

- :func:`accounts`, :func:`posts`, :func:`comments`: JSON documents shaped as the Mastodon
  API returns them (a post serializes to about 1.5 KB), with varied text from a fixed
  vocabulary (:func:`texts`);
- :func:`image_bytes`: a ~200 KB incompressible body behind a JPEG marker;
- :func:`video_stream`: a large incompressible body, yielded a chunk at a time and never
  held whole.

``python -m benchmarks.corpus build [--quick]`` builds every measurement module's cached
corpus (its ``prepare(quick, work)``, see :mod:`benchmarks.measurement`) under
``./var/bench/`` in this process, before the harness starts the measurement children.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.measurement import DEFAULT_WORK, MODULES, SMOKE_ENV

#: Where generated platform URLs point (never contacted).
BASE_URL = "https://social.example.gov"
#: Creation time of the first generated post; later ones follow at :data:`POST_STEP`.
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
POST_STEP = timedelta(minutes=7)
JPEG_MARKER = b"\xff\xd8\xff\xe0"
CHUNK = 1 << 20

#: Two-letter syllables that make up the made-up words of the vocabulary.
_SYLLABLES = tuple(
    "babebibobudadedidodufafefifogagegokakekikolalelilolumamemimomunaneninonupapepipo"
    "rarerirorusasesisotatetitotuvavevoza"[i : i + 2]
    for i in range(0, 116, 2)
)
# fmt: off
_CIVIC = (
    "city", "council", "meeting", "budget", "park", "library", "street", "snow", "plow", "permit",
    "water", "main", "repair", "bus", "route", "closure", "festival", "parade", "recycling",
    "pickup", "schedule", "mayor", "office", "residents", "hearing", "vote", "zoning", "bridge",
    "traffic", "detour", "fire", "police", "safety", "health", "clinic", "vaccine", "school",
    "board", "election", "polling", "volunteers", "trees", "lead", "pipes", "sewer", "grant",
    "housing", "tax", "bike", "lane", "sidewalk", "lights", "update", "notice", "tonight",
    "tomorrow", "weekend", "public", "comment",
)
# fmt: on


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 (a reproducible corpus, never a secret)


def _vocabulary() -> tuple[str, ...]:
    """About 4,000 words: civic ones plus made-up ones, fixed for every corpus seed."""
    rng = _rng(20240801)
    made = {"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(4200)}
    return tuple(_CIVIC) + tuple(sorted(made - set(_CIVIC)))


WORDS = _vocabulary()


def texts(n: int, seed: int = 0, words: int = 30) -> Iterator[str]:
    """``n`` varied sentences of about ``words`` words each (deterministic for ``seed``).

    Words are drawn from :data:`WORDS`, so a phrase made of words outside it (as the search
    benchmark plants) matches only where it was planted.
    """
    rng = _rng(seed)
    low, high = max(1, words * 2 // 3), words * 4 // 3
    for _ in range(n):
        chosen = rng.choices(WORDS, k=rng.randint(low, high))
        yield " ".join(chosen).capitalize() + "."


def accounts(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` Mastodon-style account documents."""
    rng = _rng(seed ^ 0xACC)
    out = []
    for i in range(n):
        username = f"city{i}{rng.choice(_CIVIC)}"
        out.append(
            {
                "id": str(100_000 + i),
                "username": username,
                "acct": username,
                "display_name": f"City of Example {rng.choice(_CIVIC).title()} Office",
                "locked": False,
                "bot": False,
                "created_at": _iso(EPOCH - timedelta(days=365 + i)),
                "note": f"<p>Official account of the {rng.choice(_CIVIC)} office.</p>",
                "url": f"{BASE_URL}/@{username}",
                "avatar": f"{BASE_URL}/avatars/{i}.png",
                "header": f"{BASE_URL}/headers/{i}.png",
                "followers_count": rng.randint(100, 90_000),
                "following_count": rng.randint(0, 500),
                "statuses_count": rng.randint(100, 20_000),
            }
        )
    return out


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _status(
    status_id: int,
    created: datetime,
    author: dict[str, Any],
    text: str,
    reply_to: tuple[str, str] | None = None,
    media: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    url = f"{BASE_URL}/@{author['username']}/{status_id}"
    return {
        "id": str(status_id),
        "created_at": _iso(created),
        "in_reply_to_id": reply_to[0] if reply_to else None,
        "in_reply_to_account_id": reply_to[1] if reply_to else None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "en",
        "uri": f"{BASE_URL}/users/{author['username']}/statuses/{status_id}",
        "url": url,
        "replies_count": 0,
        "reblogs_count": 0,
        "favourites_count": 0,
        "edited_at": None,
        "content": f"<p>{text}</p>",
        "reblog": None,
        "application": {"name": "Web", "website": None},
        "account": author,
        "media_attachments": list(media),
        "mentions": [],
        "tags": [],
        "emojis": [],
        "card": None,
        "poll": None,
    }


def posts(
    n: int,
    seed: int = 0,
    *,
    account: dict[str, Any] | None = None,
    first_id: int = 110_000_000_000_000_000,
    images: int = 0,
) -> Iterator[dict[str, Any]]:
    """``n`` Mastodon-style status documents (~1.5 KB of JSON each), oldest first.

    ``images`` media attachments per post point at ``{BASE_URL}/media/<id>-<k>.jpg``; fetch
    their bodies from :func:`image_bytes` with the seed ``post id * 16 + k``.
    """
    author = account or accounts(1, seed)[0]
    for i, text in enumerate(texts(n, seed, words=48)):
        status_id = first_id + i
        media = [
            {
                "id": f"{status_id}{k}",
                "type": "image",
                "url": f"{BASE_URL}/media/{status_id}-{k}.jpg",
                "preview_url": f"{BASE_URL}/media/{status_id}-{k}-small.jpg",
                "description": f"Photo {k + 1} of the {WORDS[(i + k) % 64]}",
                "meta": {"original": {"width": 1600, "height": 1200}},
            }
            for k in range(images)
        ]
        yield _status(status_id, EPOCH + i * POST_STEP, author, text, media=media)


def comments(
    n: int,
    parents: Sequence[dict[str, Any]],
    seed: int = 0,
    *,
    first_id: int = 120_000_000_000_000_000,
) -> Iterator[dict[str, Any]]:
    """``n`` replies from members of the public, spread over ``parents`` in turn."""
    if not parents:
        raise ValueError("comments need at least one parent post")
    public = accounts(16, seed + 1)
    for i, text in enumerate(texts(n, seed + 2, words=20)):
        parent = parents[i % len(parents)]
        created = datetime.strptime(parent["created_at"], "%Y-%m-%dT%H:%M:%S.000Z")
        yield _status(
            first_id + i,
            created.replace(tzinfo=UTC) + timedelta(minutes=1 + i % 50),
            public[i % len(public)],
            text,
            reply_to=(parent["id"], parent["account"]["id"]),
        )


def image_bytes(seed: int, size: int = 200_000) -> bytes:
    """An incompressible ~200 KB body behind a JPEG marker (what a photo costs to store)."""
    return JPEG_MARKER + _rng(seed).randbytes(size - len(JPEG_MARKER))


def video_stream(seed: int, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """``size`` incompressible bytes (an MP4 marker, then PRNG output), ``chunk`` at a time.

    Generating fresh PRNG bytes runs at ~350 MB/s, slower than the archiver's media path,
    so a pool of 8 chunks of PRNG output is made once and each chunk is a slice of it at a
    shifting offset. Deflate looks back only 32 KiB, so for gzip (and sha256) the body is
    as incompressible as fresh random bytes, and memory stays at a few chunks.
    """
    if size < 0 or chunk < 1:
        raise ValueError("size must not be negative and chunk must be positive")
    pool = b"\x00\x00\x00\x20ftypisom" + _rng(seed).randbytes(chunk * 8 - 12)
    span = len(pool) - chunk
    view = memoryview(pool)
    sent, k = 0, 0
    while sent < size:
        take = min(chunk, size - sent)
        start = 0 if k == 0 else (k * 1_048_573) % span
        yield bytes(view[start : start + take])
        sent += take
        k += 1


# -- the build command ----------------------------------------------------------------------


def build(quick: bool, work: Path, only: Sequence[str] = ()) -> tuple[dict[str, float], bool]:
    """Run every measurement module's ``prepare``: (seconds each took, whether all worked).

    A module whose ``prepare`` fails is reported on stderr and skipped, so the others'
    corpora are still built (its measurement then fails and says why).
    """
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    ok = True
    for name in only or MODULES:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"benchmarks.{name}":
                raise
            continue  # the harness reports the missing module itself
        prepare = getattr(module, "prepare", None)
        if prepare is None:
            continue
        started = time.perf_counter()
        try:
            prepare(quick, work)
        except Exception:
            ok = False
            sys.stderr.write(f"the corpus of benchmarks.{name} failed:\n")
            traceback.print_exc()
            continue
        seconds[name] = time.perf_counter() - started
    return seconds, ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the benchmarks' cached corpora.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build every module's corpus under --work")
    cmd.add_argument("--quick", action="store_true", help="the QUICK sizes")
    cmd.add_argument("--smoke", action="store_true", help="tiny sizes (implies --quick)")
    cmd.add_argument("--work", type=Path, default=DEFAULT_WORK, help="corpus directory")
    cmd.add_argument("--only", nargs="*", default=[], choices=MODULES, help="these modules")
    cmd.add_argument("--json", type=Path, default=None, help="write seconds per module here")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ[SMOKE_ENV] = "1"
    seconds, ok = build(args.quick or args.smoke, args.work, args.only)
    text = json.dumps({k: round(v, 2) for k, v in seconds.items()})
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(f"corpus built: {text}\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
