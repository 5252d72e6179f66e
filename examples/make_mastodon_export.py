"""Build ``examples/mastodon-export.zip``: a small, realistic Mastodon account archive.

The archive has the layout Mastodon (4.2 and later) gives an account's "Request your
archive" download (``app/services/backup_service.rb``), in the same entry order:
``outbox.json`` (an ActivityPub ``OrderedCollection`` of ``Create``/``Announce``
activities), ``media_attachments/files/…``, ``likes.json``, ``bookmarks.json``,
``avatar.png``, ``header.png`` and ``actor.json``. The account, the servers and the people
are made up (``*.example`` domains); the images are tiny PNGs drawn here.

The output is byte-for-byte reproducible: fixed timestamps and attributes on every zip
entry, fixed compression level, no randomness. Run from the repository root::

    .venv/bin/python examples/make_mastodon_export.py              # examples/mastodon-export.zip
    .venv/bin/python examples/make_mastodon_export.py --out x.zip  # somewhere else
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOST = "https://mastodon.example"
HEALTH = "https://health.example.org/users/MKEHealth"
RESIDENT = "https://social.example.net/users/riverwest_resident"
MEDIA_HOST = "https://files.mastodon.example"
USER = "mkedpw"
ACTOR = f"{HOST}/users/{USER}"
FOLLOWERS = f"{ACTOR}/followers"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
#: When the archive was "built": the timestamp of every zip entry (the exporter's local time).
BUILT = (2024, 3, 21, 8, 15, 0)
OUT = Path(__file__).with_name("mastodon-export.zip")

CONTEXT: list[Any] = [
    "https://www.w3.org/ns/activitystreams",
    "https://w3id.org/security/v1",
    {
        "ostatus": "http://ostatus.org#",
        "atomUri": "ostatus:atomUri",
        "inReplyToAtomUri": "ostatus:inReplyToAtomUri",
        "conversation": "ostatus:conversation",
        "sensitive": "as:sensitive",
        "toot": "http://joinmastodon.org/ns#",
        "votersCount": "toot:votersCount",
        "blurhash": "toot:blurhash",
        "focalPoint": {"@container": "@list", "@id": "toot:focalPoint"},
        "Hashtag": "as:Hashtag",
    },
]

# -- tiny PNGs ------------------------------------------------------------------------------

Pixel = Callable[[int, int], tuple[int, int, int]]


def png(width: int, height: int, pixel: Pixel) -> bytes:
    """A valid 8-bit RGB PNG, drawn pixel by pixel (no imaging library needed)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows.extend(pixel(x, y))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data)
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _avatar(x: int, y: int) -> tuple[int, int, int]:
    # City blue with a white disc.
    return (255, 255, 255) if (x - 48) ** 2 + (y - 48) ** 2 < 30**2 else (0, 75, 135)


def _header(x: int, y: int) -> tuple[int, int, int]:
    # Lake Michigan blue above a grey skyline band.
    if y > 70:
        return (90, 90, 95)
    return (20, 90 + y, 160 + y // 2) if (x // 25) % 2 or y < 50 else (60, 60, 70)


def _pothole(x: int, y: int) -> tuple[int, int, int]:
    # Asphalt with a dark patch.
    if ((x - 60) / 40) ** 2 + ((y - 45) / 22) ** 2 < 1:
        return (35, 35, 35)
    return (110 + (x * 7 + y * 13) % 20, 110, 112)


def _patched(x: int, y: int) -> tuple[int, int, int]:
    # Fresh black patch next to a concrete curb.
    if x > 95:
        return (190, 190, 180)
    return (20, 20, 22) if 20 < x < 80 and 25 < y < 70 else (105, 105, 108)


def _water(x: int, y: int) -> tuple[int, int, int]:
    # Water over a street, an orange barricade.
    if 50 < x < 70 and 20 < y < 40:
        return (240, 120, 20)
    return (70, 110 + (y % 10), 150) if y > 45 else (100, 100, 104)


# -- statuses -------------------------------------------------------------------------------


def snowflake(moment: datetime, seq: int = 0) -> str:
    """A Mastodon id: milliseconds since the epoch, shifted 16 bits, plus a sequence."""
    return str((int(moment.timestamp() * 1000) << 16) | seq)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def link(url: str) -> str:
    """A link as Mastodon renders it: the scheme hidden, long URLs ellipsized."""
    scheme, rest = url.split("://", 1)
    return (
        f'<a href="{url}" target="_blank" rel="nofollow noopener noreferrer" translate="no">'
        f'<span class="invisible">{scheme}://</span><span class="">{rest}</span>'
        '<span class="invisible"></span></a>'
    )


def hashtag(name: str) -> str:
    href = f"{HOST}/tags/{name.lower()}"
    return f'<a href="{href}" class="mention hashtag" rel="tag">#<span>{name}</span></a>'


def mention(user: str, host: str) -> str:
    return (
        f'<span class="h-card" translate="no"><a href="https://{host}/@{user}" '
        f'class="u-url mention">@<span>{user}</span></a></span>'
    )


class Media:
    """One uploaded image: its id, where the server keeps it, its bytes and alt text."""

    def __init__(self, moment: datetime, seq: int, data: bytes, alt: str, size: tuple[int, int]):
        self.id = snowflake(moment, seq)
        digits = self.id.zfill(18)
        partition = "/".join(digits[i : i + 3] for i in range(0, len(digits), 3))
        name = hashlib.sha256(self.id.encode()).hexdigest()[:16]
        self.path = f"media_attachments/files/{partition}/original/{name}.png"
        self.data = data
        self.alt = alt
        self.size = size

    def attachment(self) -> dict[str, Any]:
        # The server kept media in object storage (MEDIA_HOST), so the export's rewritten
        # URL is the path with a leading "/" (nothing to strip: it has no "/system/").
        return {
            "type": "Document",
            "mediaType": "image/png",
            "url": "/" + self.path,
            "name": self.alt,
            "blurhash": "U9B:dD_3xuxu~qM{ofWB%MRjWBRj",
            "width": self.size[0],
            "height": self.size[1],
        }


def note(
    moment: datetime,
    html: str,
    *,
    seq: int = 0,
    summary: str | None = None,
    reply_to: str | None = None,
    to: list[str] | None = None,
    cc: list[str] | None = None,
    tags: list[dict[str, Any]] | None = None,
    media: list[Media] | None = None,
    links: list[str] | None = None,
    updated: datetime | None = None,
    poll: dict[str, Any] | None = None,
    conversation: int = 0,
) -> dict[str, Any]:
    """A ``Create`` activity around a ``Note`` (or ``Question``), as the export writes it."""
    status_id = snowflake(moment, seq)
    uri = f"{ACTOR}/statuses/{status_id}"
    to = [PUBLIC] if to is None else to
    cc = [FOLLOWERS] if cc is None else cc
    attachments: list[dict[str, Any]] = [m.attachment() for m in media or []]
    attachments += [{"type": "Link", "href": url} for url in links or []]
    obj: dict[str, Any] = {
        "id": uri,
        "type": "Question" if poll else "Note",
        "summary": summary,
        "inReplyTo": reply_to,
        "published": iso(moment),
        "url": f"{HOST}/@{USER}/{status_id}",
        "attributedTo": ACTOR,
        "to": to,
        "cc": cc,
        "sensitive": summary is not None,
        "atomUri": uri,
        "inReplyToAtomUri": reply_to,
        "conversation": (
            f"tag:mastodon.example,{moment:%Y-%m-%d}:objectId={conversation}:"
            "objectType=Conversation"
        ),
        "content": html,
        "contentMap": {"en": html},
    }
    if updated is not None:
        obj["updated"] = iso(updated)
    obj["attachment"] = attachments
    obj["tag"] = tags or []
    obj["replies"] = {
        "id": f"{uri}/replies",
        "type": "Collection",
        "first": {
            "type": "CollectionPage",
            "next": f"{uri}/replies?only_other_accounts=true&page=true",
            "partOf": f"{uri}/replies",
            "items": [],
        },
    }
    if poll:
        obj.update(poll)
    return {
        "id": f"{uri}/activity",
        "type": "Create",
        "actor": ACTOR,
        "published": iso(moment),
        "to": to,
        "cc": cc,
        "object": obj,
    }


def tag(name: str) -> dict[str, Any]:
    return {"type": "Hashtag", "href": f"{HOST}/tags/{name.lower()}", "name": f"#{name.lower()}"}


def boosted_status() -> str:
    """The Health Department's post that the account boosted (on another server)."""
    return f"{HEALTH}/statuses/{snowflake(at('2024-02-02T14:21:09'), 837)}"


def resident_status() -> str:
    """A resident's post (on another server) that the account replied to."""
    return f"{RESIDENT}/statuses/{snowflake(at('2024-02-12T09:12:44'), 4321)}"


def status_uri(activity: dict[str, Any]) -> str:
    return str(activity["object"]["id"])


def build_outbox() -> tuple[dict[str, Any], list[Media]]:
    """The account's twelve statuses from January to March 2024, oldest first."""
    resident = RESIDENT
    resident_tag = {
        "type": "Mention",
        "href": resident,
        "name": "@riverwest_resident@social.example.net",
    }
    potholes = [
        Media(
            at("2024-01-25T16:10:02"),
            1,
            png(120, 90, _pothole),
            "A DPW crew member in a yellow safety vest fills a pothole with hot asphalt on a "
            "snowy street.",
            (120, 90),
        ),
        Media(
            at("2024-01-25T16:10:40"),
            2,
            png(120, 90, _patched),
            "Close-up of a freshly patched pothole next to a curb and a storm drain.",
            (120, 90),
        ),
    ]
    water = Media(
        at("2024-02-20T11:18:55"),
        1,
        png(120, 90, _water),
        "Water flows across N. 27th St. around an orange barricade after a water main break.",
        (120, 90),
    )

    snow = note(
        at("2024-01-08T13:02:11"),
        "<p>A snow emergency is in effect from 9 PM tonight until 6 PM Tuesday. Park on the "
        "ODD-numbered side of the street, or off-street. Details and updates: "
        f"{link('https://city.milwaukee.gov/snow')}</p>"
        f"<p>{hashtag('MKE')} {hashtag('SnowEmergency')}</p>",
        tags=[tag("MKE"), tag("SnowEmergency")],
        conversation=4481,
    )
    plows = note(
        at("2024-01-08T22:40:05"),
        "<p>Update: plows are out on all main streets. Side streets are plowed once the "
        "snowfall ends. Please give plow drivers room to work.</p>",
        reply_to=status_uri(snow),
        conversation=4481,
    )
    lifted = note(
        at("2024-01-09T18:05:43"),
        "<p>The snow emergency has ended. Thank you for moving your cars! Normal parking "
        "rules apply again.</p>",
        reply_to=status_uri(plows),
        conversation=4481,
    )
    cold = note(
        at("2024-01-17T14:30:00"),
        "<p>Because of the extreme cold, garbage and recycling collection is running one "
        "day behind all week. Put your carts out on your usual day and leave them out until "
        "they are emptied.</p>",
        summary="Service delay: garbage and recycling",
        conversation=4602,
    )
    pothole_post = note(
        at("2024-01-25T16:12:09"),
        "<p>Pothole season is here. Report potholes through Click for Action at "
        f"{link('https://city.milwaukee.gov/ClickForAction')} or call (414) 286-CITY. Crews "
        "patched 1,240 potholes this week.</p>"
        f"<p>{hashtag('Potholes')} {hashtag('MKE')}</p>",
        tags=[tag("Potholes"), tag("MKE")],
        media=potholes,
        conversation=4718,
    )
    boosted = boosted_status()
    boost_at = at("2024-02-02T15:00:00")
    boost_id = snowflake(boost_at)
    boost = {
        "id": f"{ACTOR}/statuses/{boost_id}/activity",
        "type": "Announce",
        "actor": ACTOR,
        "published": iso(boost_at),
        "to": [PUBLIC],
        "cc": [HEALTH, FOLLOWERS],
        "object": boosted,
    }
    streetlight = note(
        at("2024-02-12T17:45:30"),
        f"<p>{mention('riverwest_resident', 'social.example.net')} Thanks for the report. A "
        "crew will check the streetlight on N. Bremen St. this week (service request "
        "24-031877).</p>",
        reply_to=resident_status(),
        to=[FOLLOWERS],
        cc=[PUBLIC, resident],
        tags=[resident_tag],
        conversation=4890,
    )
    main_break = note(
        at("2024-02-20T11:20:00"),
        "<p>N. 27th St. is closed between W. Wells St. and W. Wisconsin Ave. while Milwaukee "
        "Water Works repairs a water main break. Expect the closure through Thursday; use N. "
        f"35th St. instead.</p><p>{hashtag('MKETraffic')}</p>",
        summary="Road closure, photo of flooded street",
        tags=[tag("MKETraffic")],
        media=[water],
        conversation=4967,
    )
    repaired = note(
        at("2024-02-28T19:03:12"),
        f"<p>{mention('riverwest_resident', 'social.example.net')} The streetlight on N. "
        "Bremen St. was repaired this morning. Thanks again for reporting it.</p>",
        to=[resident],
        cc=[],
        tags=[resident_tag],
        conversation=5031,
    )
    sweeping = note(
        at("2024-03-05T13:00:00"),
        "<p>Street sweeping starts April 1. Watch for the orange signs: vehicles left on a "
        "posted street during sweeping hours may be ticketed. Schedule: "
        f"{link('https://city.milwaukee.gov/sanitation/StreetSweeping')}</p>"
        f"<p>{hashtag('MKE')}</p>",
        tags=[tag("MKE")],
        updated=at("2024-03-05T13:41:27"),
        conversation=5102,
    )
    choices = [("Text message", 61), ("Email", 38), ("This account", 47), ("The MKE app", 17)]
    poll = note(
        at("2024-03-12T15:30:00"),
        "<p>How would you like to get DPW service alerts? The poll is open for three days.</p>",
        poll={
            "endTime": "2024-03-15T15:30:00Z",
            "closed": "2024-03-15T15:30:00Z",
            "votersCount": sum(n for _, n in choices),
            "oneOf": [
                {"type": "Note", "name": name, "replies": {"type": "Collection", "totalItems": n}}
                for name, n in choices
            ],
        },
        conversation=5188,
    )
    cleanup_url = "https://city.milwaukee.gov/sanitation/DropOffCenters"
    cleanup = note(
        at("2024-03-20T14:00:00"),
        "<p>Spring cleanup: the self-help drop-off centers open extended hours starting "
        "April 6. Bring yard waste, bulky items and electronics. What is accepted: "
        f"{link(cleanup_url)}</p><p>{hashtag('SpringCleanup')} {hashtag('MKE')}</p>",
        tags=[tag("SpringCleanup"), tag("MKE")],
        links=[cleanup_url],
        conversation=5240,
    )
    items = [
        snow,
        plows,
        lifted,
        cold,
        pothole_post,
        boost,
        streetlight,
        main_break,
        repaired,
        sweeping,
        poll,
        cleanup,
    ]
    outbox = {
        "@context": CONTEXT,
        "id": "outbox.json",
        "type": "OrderedCollection",
        "totalItems": len(items),
        "orderedItems": items,
    }
    return outbox, [*potholes, water]


def build_actor() -> dict[str, Any]:
    """The profile, with the avatar and header rewritten to archive entries, as exported."""
    return {
        "@context": CONTEXT,
        "id": ACTOR,
        "type": "Person",
        "following": f"{ACTOR}/following",
        "followers": FOLLOWERS,
        "inbox": f"{ACTOR}/inbox",
        "outbox": "outbox.json",
        "featured": f"{ACTOR}/collections/featured",
        "featuredTags": f"{ACTOR}/collections/tags",
        "preferredUsername": USER,
        "name": "City of Milwaukee DPW",
        "summary": (
            "<p>Official account of the City of Milwaukee Department of Public Works: snow "
            "and ice, garbage and recycling, streets, forestry and water. Not monitored 24/7; "
            "for emergencies call 911. Posts and replies may be public records.</p>"
        ),
        "url": f"{HOST}/@{USER}",
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "indexable": True,
        "published": "2022-11-14T00:00:00Z",
        "memorial": False,
        "publicKey": {
            "id": f"{ACTOR}#main-key",
            "owner": ACTOR,
            "publicKeyPem": (
                "-----BEGIN PUBLIC KEY-----\n"
                "(example archive: no real key)\n"
                "-----END PUBLIC KEY-----\n"
            ),
        },
        "tag": [],
        "attachment": [
            {
                "type": "PropertyValue",
                "name": "Website",
                "value": link("https://city.milwaukee.gov/dpw"),
            },
            {"type": "PropertyValue", "name": "Phone", "value": "(414) 286-CITY"},
        ],
        "endpoints": {"sharedInbox": f"{HOST}/inbox"},
        "icon": {"type": "Image", "mediaType": "image/png", "url": "avatar.png"},
        "image": {"type": "Image", "mediaType": "image/png", "url": "header.png"},
        "likes": "likes.json",
        "bookmarks": "bookmarks.json",
    }


def collection(name: str, uris: list[str]) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": name,
        "type": "OrderedCollection",
        "orderedItems": uris,
    }


def dump(value: Any) -> bytes:
    """Compact JSON, as Mastodon writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build(out: Path) -> None:
    """Write the archive to ``out``, byte-for-byte the same on every run."""
    outbox, media = build_outbox()
    likes = collection(
        "likes.json",
        [
            boosted_status(),
            resident_status(),
            f"{HOST}/users/mkelibrary/statuses/{snowflake(at('2024-02-27T10:02:51'), 293)}",
        ],
    )
    bookmarks = collection(
        "bookmarks.json",
        [f"{HOST}/users/mkefire/statuses/{snowflake(at('2024-01-17T23:43:10'), 602)}"],
    )
    entries = [
        ("outbox.json", dump(outbox)),
        *((m.path, m.data) for m in media),
        ("likes.json", dump(likes)),
        ("bookmarks.json", dump(bookmarks)),
        ("avatar.png", png(96, 96, _avatar)),
        ("header.png", png(300, 100, _header)),
        ("actor.json", dump(build_actor())),
    ]
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=BUILT)
            info.create_system = 3  # unix
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
