"""The object-lock seam: every stored object is locked until its partition's series allows.

First what :func:`lock_until_for` answers for each kind of key (the shipped Wisconsin
schedule, a Chicago City with a July fiscal year); then the real thing: a capture through
``App.store`` into a local store and into an S3 Object Lock bucket (moto's server), whose
stored files carry those dates, and an account's closure that extends the provisional locks
of its event-triggered series, never shortening any.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver.app import App
from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.catalog.models import StoredFile
from archiver.layout import sidecar_key
from archiver.retention import Event, Policy
from archiver.retention_locks import PERMANENT_LOCK, extend_for_event, lock_until_for
from archiver.series import load_schedules
from archiver.store import LocalStore
from archiver.store.locking import LockingStore, LockUntil
from archiver.warc import WarcInfo
from tests.connectors.fake_bluesky import FakeBluesky

pytest_plugins = ["tests.store.s3server"]

CHICAGO = ZoneInfo("America/Chicago")
POLICY = Policy(zone=CHICAGO, fiscal_year_start=(7, 1))
NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
FILE = "01JD4S2W7X0Y8H6K3M9N5P1Q2R"
INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")
ACCOUNT = "mke-bluesky"
S3_KEY_ENV, S3_SECRET_ENV = "ARCHIVER_TEST_S3_KEY", "ARCHIVER_TEST_S3_SECRET"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def seam(default: timedelta = timedelta(0)) -> LockUntil:
    return lock_until_for(load_schedules(), POLICY, default)


@pytest.mark.parametrize(
    ("key", "until"),
    [
        # 7 years from creation: the partition's first instant plus 7 years.
        (f"warc/social-media/{ACCOUNT}/2026-01/{FILE}.warc.gz", utc(2033, 1, 1)),
        (f"warc/social-media/{ACCOUNT}/2026-01/{FILE}.warc.gz.sha256.json", utc(2033, 1, 1)),
        (f"parquet/social-media/{ACCOUNT}/2026-01/{FILE}.parquet", utc(2033, 1, 1)),
        # The end of the calendar year in Chicago (CST, UTC-6), plus 7 years.
        (f"warc/EXAMPLE-POSTS/{ACCOUNT}/2026-05/{FILE}.warc.gz", utc(2034, 1, 1, 6)),
        # 2026-01 starts on Dec 31 local: its fiscal year ends 2026-07-01 (CDT, UTC-5).
        (f"warc/EXAMPLE-COMMENTS/{ACCOUNT}/2026-01/{FILE}.warc.gz", utc(2033, 7, 1, 5)),
        (f"warc/EXAMPLE-COMMENTS/{ACCOUNT}/2026-08/{FILE}.warc.gz", utc(2034, 7, 1, 5)),
        # 90 days after capture: the month's first instant is the earliest capture.
        (f"warc/EXAMPLE-TRANSITORY/{ACCOUNT}/2026-03/{FILE}.warc.gz", utc(2026, 5, 30)),
        # Provisional until the account's closure is recorded: now plus 7 years.
        (f"warc/EXAMPLE-ACCOUNT-RECORDS/{ACCOUNT}/2026-03/{FILE}.warc.gz", NOW.replace(year=2033)),
        # No schedule defines the series, or it is a certificate: kept as if permanent.
        (f"warc/general/{ACCOUNT}/2026-03/{FILE}.warc.gz", PERMANENT_LOCK.after(NOW)),
        ("warc/not-a-partition.warc.gz", PERMANENT_LOCK.after(NOW)),
        (f"control/certificates/{FILE}.json", PERMANENT_LOCK.after(NOW)),
        # Neither a partition nor a certificate: the default (none here).
        (f"control/facts/2026-03/{FILE}.warc.gz", None),
        ("control/audit/000000000042.json", None),
        ("layout-version", None),
    ],
)
def test_each_key_is_locked_until_its_series_allows(key: str, until: datetime | None) -> None:
    assert seam()(key, NOW) == until


def test_the_configured_default_lock_is_a_floor_under_every_key() -> None:
    lock = seam(timedelta(days=30))

    # A partition whose retention ended long ago is still locked for the default period...
    assert lock(f"warc/social-media/{ACCOUNT}/2010-01/{FILE}.warc.gz", NOW) == NOW + timedelta(30)
    assert lock("layout-version", NOW) == NOW + timedelta(days=30)
    # ...and a longer series floor wins over the default.
    assert lock(f"warc/social-media/{ACCOUNT}/2026-01/{FILE}.warc.gz", NOW) == utc(2033, 1, 1)


def test_a_permanent_series_is_locked_far_into_the_future(tmp_path: Path) -> None:
    (tmp_path / "city.toml").write_text(
        """[[series]]
code = "council-posts"
title = "Council announcements"
trigger = "created"
disposition = "permanent"
authority = "City records disposition authorization"
default = true
""",
        encoding="utf-8",
    )
    lock = lock_until_for(load_schedules(tmp_path), POLICY, timedelta(0))

    assert lock(f"warc/council-posts/{ACCOUNT}/2026-01/{FILE}.warc.gz", NOW) == utc(
        2126, 3, 10, 15, 30
    )


# --- a capture through the app's store, then an account's closure --------------------------------


RULES = """
[[retention.rules]]
name = "account-records"
series = "EXAMPLE-ACCOUNT-RECORDS"
kinds = ["profile"]
"""


def write_app(root: Path, fake: FakeBluesky, store: str) -> App:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        f"""[archiver]
operator = "City of Milwaukee"
node = "node-1"

[http]
max_retries = 1
max_wait = "2s"

{store}

[retention]
default_lock = "1d"
{RULES}

[[accounts]]
id = "{ACCOUNT}"
platform = "bluesky"
handle = "{fake.handle}"
api_base = "{fake.base_url}"
department = "Office of the Mayor"
series = "social-media"
""",
        encoding="utf-8",
    )
    return App(config)


@pytest.fixture(params=["local", "s3"])
def store_section(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``[store]`` table of a local store, or of a moto S3 bucket with Object Lock."""
    if request.param == "local":
        return '[store]\nbackend = "local"\npath = "store"\n'
    pytest.importorskip("boto3")
    from tests.store.s3server import ACCESS_KEY, REGION, SECRET_KEY

    endpoint: str = request.getfixturevalue("moto_endpoint")
    bucket: str = request.getfixturevalue("lock_bucket")
    monkeypatch.setenv(S3_KEY_ENV, ACCESS_KEY)
    monkeypatch.setenv(S3_SECRET_ENV, SECRET_KEY)
    return (
        f'[store]\nbackend = "s3"\nbucket = "{bucket}"\nprefix = "city"\nregion = "{REGION}"\n'
        f'endpoint_url = "{endpoint}"\n'
        f'access_key_id = {{ env = "{S3_KEY_ENV}" }}\n'
        f'secret_access_key = {{ env = "{S3_SECRET_ENV}" }}\n'
    )


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    f = FakeBluesky(httpserver)
    f.now = datetime(2026, 1, 12, 15, 0, tzinfo=UTC)
    return f


def stored(catalog: Catalog) -> dict[str, StoredFile]:
    with catalog.reader() as s:
        return {f.key: f for f in s.scalars(select(StoredFile).where(StoredFile.kind == "warc"))}


def test_captured_files_carry_their_series_lock_and_an_account_closure_extends_it(
    tmp_path: Path, fake: FakeBluesky, catalog: Catalog, store_section: str
) -> None:
    fake.post("Snow emergency declared")
    app = write_app(tmp_path, fake, store_section)
    store = app.store
    assert isinstance(store, LockingStore)
    before = datetime.now(UTC)
    runner = CaptureRunner(app.config, catalog, store, INFO)

    assert runner.capture(ACCOUNT).status == "complete"

    after = datetime.now(UTC)
    files = stored(catalog)
    by_series: dict[str, list[StoredFile]] = {}
    for f in files.values():
        by_series.setdefault((f.partition or "").split("/")[0], []).append(f)
    assert set(by_series) == {"social-media", "EXAMPLE-ACCOUNT-RECORDS"}, sorted(files)
    seven = utc(2033, 1, 1) - utc(2026, 1, 1)  # 7 calendar years from a Jan 1
    for f in by_series["social-media"]:
        # The post (created 2026-01) and the exchanges (captured now) of the account series.
        month = f.key.split("/")[3]
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
        expected = start.replace(year=start.year + 7)
        assert store.head(f.key).retain_until == expected == f.retain_until, f.key
        assert store.head(sidecar_key(f.key)).retain_until == expected
    for f in by_series["EXAMPLE-ACCOUNT-RECORDS"]:
        # Provisional: from when it was stored, until the account's closure is recorded.
        held = store.head(f.key).retain_until
        assert held is not None
        assert before + seven - timedelta(days=2, seconds=1) <= held <= after + seven + timedelta(1)
    assert all(f.retain_until is not None for f in files.values())

    # The account closes a month later: its records' locks move to closure + 7 years.
    closed = after.replace(microsecond=0) + timedelta(days=30)
    event = Event("account-closed", ACCOUNT, closed)
    with catalog.session() as s:
        extended = extend_for_event(s, store, app.schedules, POLICY, event, (event,))
    target = closed.replace(year=closed.year + 7)
    assert {e.key for e in extended} == {f.key for f in by_series["EXAMPLE-ACCOUNT-RECORDS"]}
    for f in by_series["EXAMPLE-ACCOUNT-RECORDS"]:
        assert store.head(f.key).retain_until == target
        assert store.head(sidecar_key(f.key)).retain_until == target
    after_event = stored(catalog)
    for key, f in files.items():
        if f in by_series["social-media"]:
            assert after_event[key].retain_until == f.retain_until  # not that series: untouched
        else:
            assert after_event[key].retain_until == target

    # Recording it again changes nothing; an earlier closure never shortens a lock.
    earlier = Event("account-closed", ACCOUNT, closed - timedelta(days=400))
    with catalog.session() as s:
        assert extend_for_event(s, store, app.schedules, POLICY, event, (event,)) == []
        assert extend_for_event(s, store, app.schedules, POLICY, earlier, (earlier,)) == []
    for f in by_series["EXAMPLE-ACCOUNT-RECORDS"]:
        assert store.head(f.key).retain_until == target


def test_a_put_through_the_app_store_is_locked_by_its_partitions_series(
    tmp_path: Path, fake: FakeBluesky, store_section: str
) -> None:
    app = write_app(tmp_path, fake, store_section)
    data = b"a parquet file"
    source = tmp_path / "source"
    source.write_bytes(data)
    key = f"parquet/EXAMPLE-POSTS/{ACCOUNT}/2026-05/{FILE}.parquet"

    info = app.store.put(key, source, hashlib.sha256(data).hexdigest())

    assert info.retain_until == app.store.head(key).retain_until == utc(2034, 1, 1, 6)


def test_an_event_for_every_account_extends_each_accounts_files_of_its_series_only(
    tmp_path: Path, catalog: Catalog
) -> None:
    store = LockingStore(LocalStore(tmp_path / "store"), seam(), now=lambda: NOW)
    keys = {
        "a": f"warc/EXAMPLE-ACCOUNT-RECORDS/mke-a/2026-03/{FILE}.warc.gz",
        "b": f"warc/EXAMPLE-ACCOUNT-RECORDS/mke-b/2026-03/{FILE[:-1]}S.warc.gz",
        "other": f"warc/social-media/mke-a/2026-03/{FILE[:-1]}T.warc.gz",
        "gone": f"warc/EXAMPLE-ACCOUNT-RECORDS/mke-c/2026-03/{FILE[:-1]}V.warc.gz",
    }
    with catalog.session() as s:
        for name, key in keys.items():
            source = tmp_path / name
            source.write_bytes(name.encode())
            info = store.put(key, source, hashlib.sha256(name.encode()).hexdigest())
            s.add(
                StoredFile(
                    id=key.split("/")[-1].split(".")[0],
                    key=key,
                    kind="warc",
                    partition="/".join(key.split("/")[1:4]),
                    sha256=info.sha256,
                    size=info.size,
                    created_at=NOW,
                    stored_at=NOW,
                    retain_until=info.retain_until,
                    state="disposed" if name == "gone" else "stored",
                )
            )
    assert store.head(keys["a"]).retain_until == NOW.replace(year=2033)  # provisional
    closed = NOW + timedelta(days=30)
    event = Event("account-closed", None, closed)

    with catalog.session() as s:
        extended = extend_for_event(s, store, load_schedules(), POLICY, event, (event,))

    assert sorted(e.key for e in extended) == sorted([keys["a"], keys["b"]])
    target = closed.replace(year=2033, microsecond=0)
    assert store.head(keys["a"]).retain_until == store.head(keys["b"]).retain_until == target
    assert store.head(keys["other"]).retain_until == utc(2033, 3, 1)  # 7 years from creation
    assert store.head(keys["gone"]).retain_until == NOW.replace(year=2033)
    with catalog.reader() as s:
        rows = {f.key: f.retain_until for f in s.scalars(select(StoredFile))}
    assert rows[keys["a"]] == rows[keys["b"]] == target
