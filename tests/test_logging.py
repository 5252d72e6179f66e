"""archiver.logging: JSON or console output, stdlib routed through structlog, secrets removed."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

import archiver.logging as archiver_logging
from archiver.logging import (
    REDACTED,
    clear_registered_secrets,
    configure_logging,
    get_logger,
    is_secret_name,
    redact,
    redact_headers,
    redact_text,
    redact_url,
    register_secret,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    handler = archiver_logging._handler
    if handler is not None:
        root.removeHandler(handler)
        archiver_logging._handler = None
    root.setLevel(level)
    clear_registered_secrets()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def out() -> io.StringIO:
    """A non-terminal stream the archiver's logging writes JSON lines to."""
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    return stream


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --------------------------------------------------------------------------- output


def test_json_lines_with_timestamp_level_logger_event(out: io.StringIO) -> None:
    log = get_logger("archiver.capture")
    log.info("run started", account="milwaukee-police", items=3)
    log.warning("rate limited", retry_after=30.5)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001")

    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    for event in parsed:
        assert list(event)[:4] == ["timestamp", "level", "logger", "event"]
        stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
    assert parsed[0] | {"timestamp": None} == {
        "timestamp": None,
        "level": "info",
        "logger": "archiver.capture",
        "event": "run started",
        "account": "milwaukee-police",
        "items": 3,
    }
    assert parsed[1]["level"] == "warning"
    assert parsed[1]["retry_after"] == 30.5
    assert parsed[2]["logger"] == "alembic.runtime.migration"
    assert parsed[2]["event"] == "Running upgrade  -> 0001"


def test_stdlib_positional_arguments_are_formatted(out: io.StringIO) -> None:
    logging.getLogger("sqlalchemy.pool").warning("pool %s overflow %d", "main", 5)
    get_logger("archiver.x").info("page %d of %s", 2, "feed")
    assert [e["event"] for e in events(out)] == ["pool main overflow 5", "page 2 of feed"]


def test_level_filters_structlog_and_stdlib_alike() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    get_logger("archiver.a").info("quiet")
    logging.getLogger("apscheduler").info("quiet too")
    get_logger("archiver.a").warning("loud")
    assert [e["event"] for e in events(stream)] == ["loud"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD", stream=io.StringIO())


def test_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(stream=second)
    get_logger("archiver.a").info("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_bound_and_context_values_are_included(out: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(run_id="01JD4S2W7X")
    get_logger("archiver.a").bind(connector="facebook").info("page fetched")
    event = events(out)[0]
    assert event["run_id"] == "01JD4S2W7X"
    assert event["connector"] == "facebook"


def test_console_renderer_on_a_terminal() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            configure_logging("INFO", stream=tty)  # fmt="auto"
            get_logger("archiver.cli").info("verified", files=12)
            tty.flush()
        text = ANSI.sub("", os.read(master, 65536).decode())
    finally:
        os.close(master)
        os.close(slave)
    line = text.strip()
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "verified" in line
    assert "info" in line
    assert "[archiver.cli]" in line
    assert "files=12" in line


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_follows_isatty_and_can_be_forced() -> None:
    tty = FakeTerminal()
    configure_logging(stream=tty)
    get_logger("archiver.a").info("on a terminal", n=1)
    assert not tty.getvalue().lstrip().startswith("{")
    assert "on a terminal" in ANSI.sub("", tty.getvalue())

    forced_json = FakeTerminal()
    configure_logging(fmt="json", stream=forced_json)
    get_logger("archiver.a").info("json anyway")
    assert json.loads(forced_json.getvalue())["event"] == "json anyway"

    forced_console = io.StringIO()
    configure_logging(fmt="console", stream=forced_console)
    get_logger("archiver.a").info("console anyway")
    assert "console anyway" in forced_console.getvalue()
    assert "\x1b[" not in forced_console.getvalue()  # no colours where there is no terminal


# --------------------------------------------------------------------------- redaction in logs


GRAPH_TOKEN = "EAAGm0PX4ZCpsBAKZCZAx9ZBgqZCa1VZBZBs3ZA"


def test_facebook_graph_url_loses_its_access_token(out: io.StringIO) -> None:
    url = (
        "https://graph.facebook.com/v19.0/1234567890/feed"
        f"?fields=id,message,created_time&access_token={GRAPH_TOKEN}&limit=25"
    )
    get_logger("archiver.http").info("GET %s", url, url=url)
    text = out.getvalue()
    assert GRAPH_TOKEN not in text
    event = events(out)[0]
    expected = (
        "https://graph.facebook.com/v19.0/1234567890/feed"
        f"?fields=id,message,created_time&access_token={REDACTED}&limit=25"
    )
    assert event["url"] == expected
    assert event["event"] == f"GET {expected}"


def test_authorization_header_dict_is_redacted(out: io.StringIO) -> None:
    headers = {
        "Authorization": "Bearer ya29.a0AfB_byC1234567890",
        "User-Agent": "city-archiver/0.1",
        "Cookie": "sessionid=abc123def456",
    }
    get_logger("archiver.http").debug("request", headers=headers)
    event = events(out)[0]
    assert event["headers"] == {
        "Authorization": REDACTED,
        "User-Agent": "city-archiver/0.1",
        "Cookie": REDACTED,
    }
    assert headers["Authorization"].startswith("Bearer ya29")  # the caller's dict is untouched


def test_nested_structures_are_redacted(out: io.StringIO) -> None:
    get_logger("archiver.config").info(
        "loaded",
        config={
            "catalog": {"url": "postgresql+psycopg://archiver:pa55word!@db.city.local/archiver"},
            "connectors": [
                {"name": "facebook", "app_secret": "f00dfeed", "page_id": "1234"},
                {"name": "mastodon", "client_secret": "abcd", "instance": "https://mastodon.city"},
            ],
            "token_count": 2,
        },
    )
    config = events(out)[0]["config"]
    assert config["catalog"]["url"] == (
        f"postgresql+psycopg://archiver:{REDACTED}@db.city.local/archiver"
    )
    assert config["connectors"][0] == {
        "name": "facebook",
        "app_secret": REDACTED,
        "page_id": "1234",
    }
    assert config["connectors"][1]["client_secret"] == REDACTED
    assert config["connectors"][1]["instance"] == "https://mastodon.city"
    assert config["token_count"] == 2


def test_exception_message_with_a_token_is_redacted(out: io.StringIO) -> None:
    log = get_logger("archiver.capture")
    try:
        raise RuntimeError(
            f"401 for https://graph.facebook.com/me?access_token={GRAPH_TOKEN} "
            "(header Authorization: Bearer sk_live_0123456789abcdef)"
        )
    except RuntimeError:
        log.exception("capture failed")
    text = out.getvalue()
    assert GRAPH_TOKEN not in text
    assert "sk_live_0123456789abcdef" not in text
    event = events(out)[0]
    assert "RuntimeError: 401 for" in event["exception"]
    assert "Traceback" in event["exception"]


def test_exception_object_as_a_value_is_redacted(out: io.StringIO) -> None:
    error = ValueError("bad password=hunter22 for user")
    get_logger("archiver.a").error("failed", error=error)
    assert "hunter22" not in out.getvalue()
    assert events(out)[0]["error"] == f"ValueError('bad password={REDACTED} for user')"


def test_stdlib_record_with_a_bearer_token_is_redacted(out: io.StringIO) -> None:
    stdlib = logging.getLogger("httpx")
    stdlib.info('HTTP Request: GET %s "Authorization: Bearer %s"', "https://api.x", "AbC123xyz789")
    stdlib.warning("retry", extra={"api_key": "k-0123456789", "attempt": 2})
    try:
        raise ConnectionError("proxy said: Proxy-Authorization: Basic dXNlcjpodW50ZXIy")
    except ConnectionError:
        stdlib.exception("connection failed")
    text = out.getvalue()
    assert "AbC123xyz789" not in text
    assert "k-0123456789" not in text
    assert "dXNlcjpodW50ZXIy" not in text
    first, second, third = events(out)
    assert first["event"] == f'HTTP Request: GET https://api.x "Authorization: Bearer {REDACTED}"'
    assert second["api_key"] == REDACTED
    assert second["attempt"] == 2
    assert "ConnectionError: proxy said" in third["exception"]


def test_registered_secret_is_scrubbed_inside_longer_strings(out: io.StringIO) -> None:
    secret = "mastodon-Zm9vYmFyYmF6cXV4"
    assert register_secret(secret)
    log = get_logger("archiver.a")
    log.info(f"connector said: invalid credentials ({secret}) for instance")
    log.info("echo", body={"note": f"prefix{secret}suffix"}, items=[f"x {secret} y"])
    text = out.getvalue()
    assert secret not in text
    first, second = events(out)
    assert first["event"] == f"connector said: invalid credentials ({REDACTED}) for instance"
    assert second["body"]["note"] == f"prefix{REDACTED}suffix"
    assert second["items"] == [f"x {REDACTED} y"]


def test_registered_secret_is_scrubbed_url_encoded_too() -> None:
    secret = "p@ss/w0rd+x"
    register_secret(secret)
    assert (
        redact_text("https://h/cb?state=p%40ss%2Fw0rd%2Bx&x=1")
        == f"https://h/cb?state={REDACTED}&x=1"
    )


def test_short_values_are_not_registered() -> None:
    assert not register_secret("abc12")
    assert not register_secret("")
    assert redact_text("abc12 is a short value") == "abc12 is a short value"


def test_non_secret_values_are_untouched(out: io.StringIO) -> None:
    values: dict[str, Any] = {
        "token_count": 41,
        "token_type": "bearer",
        "auth_method": "oauth2",
        "session_count": 3,
        "tokenizer": "words",
        "account": "milwaukee-fire",
        "note": "Basic information about the Bearer token lifecycle",
        "key": "warc/general/fb-city/2024-05/01JD4S2W7X.warc.gz",
        "url": "https://www.facebook.com/CityOfMilwaukee/posts/123?comment_id=9&ref=share",
        "has_token": True,
        "password": None,
    }
    get_logger("archiver.a").info("a normal day", **values)
    event = events(out)[0]
    for key, value in values.items():
        assert event[key] == value, key
    assert event["event"] == "a normal day"


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "access_token",
        "accessToken",
        "page_token",
        "next_page_token",
        "X-Auth-Token",
        "x-csrf-token",
        "X-Amz-Security-Token",
        "Authorization",
        "Proxy-Authorization",
        "auth",
        "client_secret",
        "clientSecret",
        "app_secret",
        "password",
        "db_passwd",
        "passwords",
        "api_key",
        "apiKey",
        "apikey",
        "X-API-Key",
        "aws_secret_access_key",
        "Cookie",
        "Set-Cookie",
        "session",
        "session_id",
        "X-Hub-Signature-256",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "credentials",
        "appsecret_proof",
        "private_key",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "token_count",
        "token_type",
        "tokenizer",
        "auth_method",
        "author",
        "session_count",
        "possession",
        "key",
        "store_key",
        "secretary",
        "password_policy",
        "signature_algorithm",
        "cookie_jar_size",
        "event",
        "",
        "-",
    ],
)
def test_non_secret_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://graph.facebook.com/v19.0/me/accounts?access_token=EAAB&fields=id",
            f"https://graph.facebook.com/v19.0/me/accounts?access_token={REDACTED}&fields=id",
        ),
        (
            "https://x.example/cb?x=1&client_secret=s3&code=abc",
            f"https://x.example/cb?x=1&client_secret={REDACTED}&code=abc",
        ),
        (
            "postgresql+psycopg://archiver:s3cr3t@db:5432/archiver",
            f"postgresql+psycopg://archiver:{REDACTED}@db:5432/archiver",
        ),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=9f8e",
            f"https://b.s3.amazonaws.com/k?X-Amz-Credential={REDACTED}&X-Amz-Signature={REDACTED}",
        ),
        (
            "https://app.example/#access_token=abc&state=xyz",
            f"https://app.example/#access_token={REDACTED}&state=xyz",
        ),
        ("https://user@h/p?page=2&token_count=5", "https://user@h/p?page=2&token_count=5"),
        ("https://h/p?a=b%20c&d", "https://h/p?a=b%20c&d"),
        ("https://h/p?access_token=", "https://h/p?access_token="),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(expected) == expected


def test_redact_headers() -> None:
    headers = {
        "Host": "graph.facebook.com",
        "Authorization": "OAuth EAAGm0PX4ZCpsBA",
        "X-Auth-Token": "abc",
        "Location": "https://h/next?page_token=QVFIUjVq&limit=5",
        "Content-Type": "application/json",
    }
    assert redact_headers(headers) == {
        "Host": "graph.facebook.com",
        "Authorization": REDACTED,
        "X-Auth-Token": REDACTED,
        "Location": f"https://h/next?page_token={REDACTED}&limit=5",
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdef123456", f"Authorization: {REDACTED}"),
        ("sent Bearer abcdef123456 upstream", f"sent Bearer {REDACTED} upstream"),
        ("Basic dXNlcjpwYXNzd29yZA==", f"Basic {REDACTED}"),
        ("Basic information is public", "Basic information is public"),
        ("the Bearer token expired", "the Bearer token expired"),
        (
            "GET /a HTTP/1.1\r\nHost: h\r\nCookie: sid=1; other=2\r\nAccept: */*",
            f"GET /a HTTP/1.1\r\nHost: h\r\nCookie: {REDACTED}\r\nAccept: */*",
        ),
        (
            '{"access_token": "EAAB\\"x", "token_type": "bearer", "expires_in": 5183944}',
            f'{{"access_token": "{REDACTED}", "token_type": "bearer", "expires_in": 5183944}}',
        ),
        ("{'password': 'hunter2', 'user': 'a'}", f"{{'password': '{REDACTED}', 'user': 'a'}}"),
        ("host=db password=hunter2 dbname=x", f"host=db password={REDACTED} dbname=x"),
        ("Config(api_key='abc', timeout=5)", f"Config(api_key='{REDACTED}', timeout=5)"),
        ("--password=hunter2 --verbose", f"--password={REDACTED} --verbose"),
        (
            "grant_type=refresh_token&refresh_token=r1&x=2",
            f"grant_type=refresh_token&refresh_token={REDACTED}&x=2",
        ),
        ("token_count=5 items=3", "token_count=5 items=3"),
        ("authorization=Bearer abcdef123456 next", f"authorization=Bearer {REDACTED} next"),
        ("nothing to see", "nothing to see"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent


def test_redact_values_keeps_types_and_does_not_mutate() -> None:
    original = {
        "n": 1,
        "f": 1.5,
        "ok": True,
        "none": None,
        "tuple": ("a", "token=x"),
        "set": frozenset({"Bearer abcdefghij"}),
        "token": 12345,
        "secret": "",
    }
    result = redact(original)
    assert result == {
        "n": 1,
        "f": 1.5,
        "ok": True,
        "none": None,
        "tuple": ("a", f"token={REDACTED}"),
        "set": frozenset({f"Bearer {REDACTED}"}),
        "token": REDACTED,
        "secret": "",
    }
    assert original["tuple"] == ("a", "token=x")


def test_objects_are_returned_unless_their_repr_holds_a_secret() -> None:
    class Plain:
        def __repr__(self) -> str:
            return "Plain()"

    class Leaky:
        def __repr__(self) -> str:
            return "Leaky(password='hunter22')"

    plain = Plain()
    assert redact(plain) is plain
    assert redact(Leaky()) == f"Leaky(password='{REDACTED}')"
