"""Records series assignment: at capture, when an item's state changes, and in the config.

Captures run through the real pipeline (fake Bluesky AppView → archiving client → WARC →
local store → catalog) on SQLite and PostgreSQL; the rules are the shipped schedule's
EXAMPLE series, as a City would configure them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from archiver.assignment import Assigner, account_series, plan_reassign
from archiver.capture import CaptureRunner
from archiver.catalog import Catalog
from archiver.catalog.models import AuditEntry, Item, ItemVersion, StoredFile
from archiver.config import Config, load_config
from archiver.control import read_facts
from archiver.errors import ConfigError
from archiver.layout import period_of
from archiver.series import load_schedules
from archiver.store import LocalStore
from archiver.warc import WarcInfo
from tests.connectors.fake_bluesky import FakeBluesky

INFO = WarcInfo("city-archiver/test", {"warcio": "1.8.1"}, "City of Milwaukee", "node-1")
ACCOUNT = "mke-bluesky"

#: What a City might configure: posts, public comments, and moderated comments kept longer.
RULES = """
[[retention.rules]]
name = "city-posts"
series = "EXAMPLE-POSTS"
kinds = ["post"]

[[retention.rules]]
name = "public-comments"
series = "EXAMPLE-COMMENTS"
kinds = ["comment"]

[[retention.rules]]
name = "moderated"
series = "EXAMPLE-MODERATED"
kinds = ["comment"]
states = ["hidden", "deleted"]
"""


def write_config(root: Path, fake: FakeBluesky, rules: str = RULES, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.toml"
    path.write_text(
        f"""
[archiver]
operator = "City of Milwaukee"
node = "node-1"

[http]
max_retries = 1
max_wait = "2s"
{extra}
{rules}

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
    return path


def runner_for(
    root: Path, fake: FakeBluesky, catalog: Catalog, rules: str = RULES
) -> CaptureRunner:
    config = load_config(write_config(root, fake, rules))
    return CaptureRunner(config, catalog, LocalStore(root / "store"), INFO)


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeBluesky:
    f = FakeBluesky(httpserver)
    f.now = datetime.now(UTC) - timedelta(days=3)
    return f


def items(catalog: Catalog) -> dict[str, Item]:
    with catalog.reader() as s:
        return {i.platform_item_id: i for i in s.scalars(select(Item))}


def versions(catalog: Catalog, item_id: int) -> list[tuple[str, str]]:
    """(change, partition) of each version of an item, in order."""
    with catalog.reader() as s:
        rows = s.execute(
            select(ItemVersion.change, ItemVersion.partition)
            .where(ItemVersion.item_id == item_id)
            .order_by(ItemVersion.version_no)
        ).all()
    return [(r.change, r.partition) for r in rows]


def stored_keys(catalog: Catalog) -> list[str]:
    with catalog.reader() as s:
        return list(s.scalars(select(StoredFile.key).where(StoredFile.kind == "warc")))


def moves_audited(catalog: Catalog) -> list[AuditEntry]:
    with catalog.reader() as s:
        query = select(AuditEntry).where(AuditEntry.action == "retention.reassign")
        return list(s.scalars(query.order_by(AuditEntry.seq)))


def test_a_city_post_and_a_public_comment_land_in_the_series_and_partitions_the_rules_give(
    tmp_path: Path, fake: FakeBluesky, catalog: Catalog
) -> None:
    post = fake.post("Snow emergency declared")
    comment = fake.reply(post, "The plow missed Elm Street")
    runner = runner_for(tmp_path, fake, catalog)

    result = runner.capture(ACCOUNT)

    assert result.status == "complete", result.reason
    got = items(catalog)
    assert (got[post].series, got[post].series_rule) == ("EXAMPLE-POSTS", "city-posts")
    assert (got[comment].series, got[comment].series_rule) == (
        "EXAMPLE-COMMENTS",
        "public-comments",
    )
    (profile,) = [i for i in got.values() if i.kind == "profile"]
    assert (profile.series, profile.series_rule) == ("social-media", "default")
    # Item records go to the partition of the assigned series and the creation month...
    keys = stored_keys(catalog)
    for item in (got[post], got[comment]):
        assert item.created_at is not None
        partition = f"{item.series}/{ACCOUNT}/{period_of(item.created_at)}"
        assert item.partition == partition
        assert versions(catalog, item.id) == [("new", partition)]
        assert any(k.startswith(f"warc/{partition}/") for k in keys), keys
    # ...and the raw exchanges to the account's own series, capture month.
    with catalog.reader() as s:
        first = s.scalar(select(Item.first_captured_at).where(Item.id == got[post].id))
    assert first is not None
    assert any(k.startswith(f"warc/social-media/{ACCOUNT}/{period_of(first)}/") for k in keys)
    # A first assignment is no move: no fact, no audit entry.
    assert not list(read_facts(runner.store))
    assert moves_audited(catalog) == []


def test_a_reply_hidden_by_a_moderator_moves_to_the_moderated_series_with_a_fact_and_an_audit(
    tmp_path: Path, fake: FakeBluesky, catalog: Catalog
) -> None:
    post = fake.post("Pothole reporting is open")
    kept = fake.reply(post, "There is one on 5th street")
    spam = fake.reply(post, "Cheap followers at bestdeals dot example")
    runner = runner_for(tmp_path, fake, catalog)
    assert runner.capture(ACCOUNT).status == "complete"
    fake.hide_reply(spam)

    result = runner.capture(ACCOUNT, full_walk=True)

    assert result.status == "complete", result.reason
    got = items(catalog)
    hidden = got[spam]
    assert hidden.state == "hidden"
    assert (hidden.series, hidden.series_rule) == ("EXAMPLE-MODERATED", "moderated")
    assert got[kept].series == "EXAMPLE-COMMENTS"  # unchanged: not moved
    month = period_of(hidden.created_at or hidden.first_captured_at)
    # The first version stays where it was written; the hidden one goes to the new series.
    assert versions(catalog, hidden.id) == [
        ("new", f"EXAMPLE-COMMENTS/{ACCOUNT}/{month}"),
        ("hidden", f"EXAMPLE-MODERATED/{ACCOUNT}/{month}"),
    ]
    assert any(
        k.startswith(f"warc/EXAMPLE-MODERATED/{ACCOUNT}/{month}/") for k in stored_keys(catalog)
    )
    (fact,) = list(read_facts(runner.store))
    assert fact.kind == "assignment.changed" and fact.actor == "archiver@node-1"
    assert fact.body["cause"] == "capture"
    (change,) = fact.body["changes"]
    assert {k: change[k] for k in ("account", "item", "from", "to", "rule")} == {
        "account": ACCOUNT,
        "item": spam,
        "from": "EXAMPLE-COMMENTS",
        "to": "EXAMPLE-MODERATED",
        "rule": "moderated",
    }
    assert "longest retention" in change["why"]
    with catalog.reader() as s:
        registered = s.scalar(select(StoredFile.kind).where(StoredFile.key == fact.key))
    assert registered == "control"
    (entry,) = moves_audited(catalog)
    assert entry.actor == "archiver@node-1" and entry.subject == ACCOUNT
    assert entry.detail["cause"] == "capture" and entry.detail["moved"] == 1
    assert entry.detail["changes"] == [
        {"item": spam, "from": "EXAMPLE-COMMENTS", "to": "EXAMPLE-MODERATED"}
    ]
    assert entry.detail["facts"] == [fact.key]

    # A capture that changes nothing re-evaluates nothing and records nothing.
    assert runner.capture(ACCOUNT, full_walk=True).stats["unchanged"] > 0
    assert len(list(read_facts(runner.store))) == 1 and len(moves_audited(catalog)) == 1


def test_a_reply_deleted_on_the_platform_moves_with_its_deletion_note(
    tmp_path: Path, fake: FakeBluesky, catalog: Catalog
) -> None:
    post = fake.post("Library hours")
    wrong = fake.reply(post, "Wrong street listed for Oak Avenue")
    runner = runner_for(tmp_path, fake, catalog)
    assert runner.capture(ACCOUNT).status == "complete"
    fake.delete(wrong)

    result = runner.capture(ACCOUNT, full_walk=True)

    assert result.stats["deleted"] == 1
    gone = items(catalog)[wrong]
    assert (gone.state, gone.series, gone.series_rule) == (
        "deleted",
        "EXAMPLE-MODERATED",
        "moderated",
    )
    month = period_of(gone.created_at or gone.first_captured_at)
    assert versions(catalog, gone.id)[-1] == ("deleted", f"EXAMPLE-MODERATED/{ACCOUNT}/{month}")
    (fact,) = list(read_facts(runner.store))
    assert [(c["item"], c["to"]) for c in fact.body["changes"]] == [(wrong, "EXAMPLE-MODERATED")]
    assert len(moves_audited(catalog)) == 1


def test_the_longest_retention_wins_whatever_the_order_of_the_rules(
    tmp_path: Path, fake: FakeBluesky, catalog: Catalog
) -> None:
    post = fake.post("Service status: all buses on time")
    comment = fake.reply(post, "Thanks for the update")
    rules = """
[[retention.rules]]
name = "transitory-posts"
series = "EXAMPLE-TRANSITORY"
kinds = ["post"]

[[retention.rules]]
name = "transitory-comments"
series = "EXAMPLE-TRANSITORY"
kinds = ["comment"]

[[retention.rules]]
name = "public-comments"
series = "EXAMPLE-COMMENTS"
kinds = ["comment"]
"""
    runner = runner_for(tmp_path, fake, catalog, rules)

    assert runner.capture(ACCOUNT).status == "complete"

    got = items(catalog)
    # 7 years after the fiscal year beats 90 days after capture, though listed later...
    assert (got[comment].series, got[comment].series_rule) == (
        "EXAMPLE-COMMENTS",
        "public-comments",
    )
    # ...and a rule can only lengthen retention: the account's 7 years beat 90 days.
    assert (got[post].series, got[post].series_rule) == ("social-media", "default")


def test_an_event_triggered_series_wins_until_its_event_is_recorded(
    tmp_path: Path, fake: FakeBluesky, catalog: Catalog
) -> None:
    fake.post("Welcome to the City's account")
    rules = """
[[retention.rules]]
name = "account-records"
series = "EXAMPLE-ACCOUNT-RECORDS"
kinds = ["profile"]
"""
    runner = runner_for(tmp_path, fake, catalog, rules)

    assert runner.capture(ACCOUNT).status == "complete"

    (profile,) = [i for i in items(catalog).values() if i.kind == "profile"]
    assert (profile.series, profile.series_rule) == ("EXAMPLE-ACCOUNT-RECORDS", "account-records")


def test_reassign_plans_moves_for_the_items_a_changed_rule_now_covers(
    tmp_path: Path, fake: FakeBluesky, catalog: Catalog
) -> None:
    post = fake.post("Leaf pickup schedule")
    comment = fake.reply(post, "What about Bay View?")
    assert runner_for(tmp_path, fake, catalog, rules="").capture(ACCOUNT).status == "complete"
    assert {i.series for i in items(catalog).values()} == {"social-media"}
    config = load_config(write_config(tmp_path / "new", fake))

    with catalog.reader() as s:
        assigner = Assigner.of(config, load_schedules(), s)
        plan = plan_reassign(s, assigner, account_series(s, config))

    assert plan.evaluated == 3  # the profile, the post, the comment
    assert {(m.platform_item_id, m.from_series, m.to_series, m.rule) for m in plan.moves} == {
        (post, "social-media", "EXAMPLE-POSTS", "city-posts"),
        (comment, "social-media", "EXAMPLE-COMMENTS", "public-comments"),
    }
    assert [(g.from_series, g.to_series, g.count) for g in plan.groups()] == [
        ("social-media", "EXAMPLE-COMMENTS", 1),
        ("social-media", "EXAMPLE-POSTS", 1),
    ]


# --- the configuration names only series the schedules define --------------------------------


def config_text(series: str, rule_series: str, extra: str = "") -> str:
    return f"""[archiver]
operator = "City of Milwaukee"

[retention]
{extra}
[[retention.rules]]
name = "public-comments"
series = "{rule_series}"
kinds = ["comment"]

[[accounts]]
id = "mke-bluesky"
platform = "bluesky"
handle = "city.bsky.social"
department = "Office of the Mayor"
series = "{series}"
"""


def test_an_account_or_rule_naming_an_unknown_series_is_refused_with_file_line_and_key_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text("general", "EXAMPLE-COMENTS"), encoding="utf-8")

    with pytest.raises(ConfigError) as refused:
        load_config(path)

    lines = str(refused.value).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        f"{path}:8: retention.rules[0].series: unknown records series 'EXAMPLE-COMENTS'; "
        "did you mean 'EXAMPLE-COMMENTS'?"
    )
    assert lines[1].startswith(f"{path}:16: accounts[0].series: unknown records series 'general'")
    assert "wisconsin-municipal.toml" in lines[1] and "social-media" in lines[1]
    assert refused.value.exit_code == 3


def own_schedule(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "city.toml").write_text(
        """[[series]]
code = "city-general"
title = "City records"
period = { years = 7 }
trigger = "created"
disposition = "destroy"
notice = { required = true }
authority = "Wis. Stat. § 19.21(4)(b)"
default = true
""",
        encoding="utf-8",
    )
    return directory


def test_a_citys_own_schedules_directory_replaces_the_shipped_series(tmp_path: Path) -> None:
    own_schedule(tmp_path / "schedules")
    path = tmp_path / "config.toml"
    extra = 'schedules_dir = "schedules"\n'

    path.write_text(config_text("city-general", "city-general", extra), encoding="utf-8")
    config: Config = load_config(path)
    assert config.retention.schedules_dir == tmp_path / "schedules"

    path.write_text(config_text("social-media", "city-general", extra), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.series: unknown records series"):
        load_config(path)


def test_a_missing_schedules_directory_is_refused_at_its_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        config_text("social-media", "EXAMPLE-COMMENTS", 'schedules_dir = "nowhere"\n'),
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as refused:
        load_config(path)

    assert str(refused.value).startswith(f"{path}:5: retention.schedules_dir: ")
    assert "nowhere" in str(refused.value)
