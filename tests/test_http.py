"""The archiving HTTP client against real local servers, its WARC output held to ``warcio``."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import logging
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from pytest_httpserver import HTTPServer
from warcio.archiveiterator import ArchiveIterator
from werkzeug import Request
from werkzeug import Response as WResponse

import archiver.logging as archiver_logging
from archiver.config import HttpSettings
from archiver.connector import HttpClient
from archiver.errors import MalformedResponseError, PlatformUnavailableError, RateLimitedError
from archiver.http import ArchivingHttpClient, PayloadTooLargeError
from archiver.layout import Partition
from archiver.logging import clear_registered_secrets, configure_logging
from archiver.ratelimit import policy_for
from archiver.warc import WarcInfo, WarcWriter
from archiver.warc_records import RecordPointer, WarcRecord, digest_label

WARCIO = Path(sys.executable).with_name("warcio")
PART = Partition("general", "city-mastodon", "2026-11")
INFO = WarcInfo("city-archiver test", {"httpx": "0.28"}, "City Clerk", "n1")
START = datetime(2026, 11, 23, 21, 30, 0, tzinfo=UTC)
TOKEN = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
QUERY_TOKEN = "qt-0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [
        raw,
        quote(secret, safe="").encode(),
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]


class FakeTime:
    """The client's clock and sleep: sleeping moves the clock, and is recorded."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


class WarcSink:
    """The exchange sink the pipeline would give: a real spool WARC writer."""

    def __init__(self, spool: Path) -> None:
        spool.mkdir(exist_ok=True)
        self.writer = WarcWriter(spool, PART, INFO)
        self.pointers: list[RecordPointer] = []

    def append(self, record: WarcRecord) -> RecordPointer:
        pointer = self.writer.append(record)
        self.pointers.append(pointer)
        return pointer

    def close_and_check(self) -> Path:
        """Close the file, run ``warcio check -v`` on it, return its path."""
        path = self.writer.close().path
        result = subprocess.run(
            [str(WARCIO), "check", "-v", str(path)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "digest pass" in result.stdout
        assert "digest fail" not in result.stdout
        return path


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record: type, WARC headers, HTTP headers, raw payload, decoded content."""
    out = []
    with path.open("rb") as f:
        for record in ArchiveIterator(f):
            http = record.http_headers
            raw = record.raw_stream.read()
            out.append(
                {
                    "type": record.rec_type,
                    "warc": dict(record.rec_headers.headers),
                    "status": http.get_statuscode()
                    if http and record.rec_type == "response"
                    else None,
                    "protocol": http.protocol if http else None,
                    "http": http.headers if http else [],
                    "payload": raw,
                }
            )
    return out


def http_header(record: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in record["http"] if k.lower() == name.lower()]


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    clear_registered_secrets()


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sink(tmp_path: Path) -> WarcSink:
    return WarcSink(tmp_path / "spool")


ClientFactory = Callable[..., ArchivingHttpClient]


@pytest.fixture
def make_client(sink: WarcSink, fake: FakeTime) -> Iterator[ClientFactory]:
    clients: list[ArchivingHttpClient] = []

    def build(policy: str = "default", **kwargs: Any) -> ArchivingHttpClient:
        settings = kwargs.pop("settings", None) or HttpSettings(
            timeout=timedelta(seconds=5), max_retries=3, max_wait=timedelta(minutes=15)
        )
        client = ArchivingHttpClient(
            kwargs.pop("sink", sink),
            policy=policy_for(policy, rng=kwargs.pop("rng", Half())),
            settings=settings,
            sleep=fake.sleep,
            clock=fake.clock,
            **kwargs,
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


class Half:
    """Jitter source drawing 0.5: backoff waits are 0.5, 1, 2, 4 … seconds."""

    def random(self) -> float:
        return 0.5


# --------------------------------------------------------------------------- raw servers


class RawServer:
    """A TCP server whose answers the test writes byte for byte (chunking, resets)."""

    def __init__(self, answer: Callable[[socket.socket, int], None]) -> None:
        self._answer = answer
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head)
                self._answer(conn, len(self.requests))

    def close(self) -> None:
        self._sock.close()


def reset(conn: socket.socket) -> None:
    """Close with RST instead of FIN: the client sees 'connection reset by peer'."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


# --------------------------------------------------------------------------- archiving


def test_exchange_is_archived_before_the_connector_sees_it(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink
) -> None:
    body = [{"id": "1", "content": "<p>Snow emergency lifted</p>"}]
    next_link = '</api/v1/accounts/7/statuses?max_id=1>; rel="next"'
    httpserver.expect_request("/api/v1/accounts/7/statuses").respond_with_json(
        body, headers={"Link": next_link}
    )
    client: HttpClient = make_client("mastodon")  # the connector contract, statically too
    assert isinstance(client, HttpClient)

    response = client.get(httpserver.url_for("/api/v1/accounts/7/statuses"), params={"limit": 40})

    # Both records were appended by the time the connector holds the response.
    assert [p.warc_type for p in sink.pointers] == ["request", "response"]
    assert response.evidence == sink.pointers[1].record_id
    assert response.status_code == 200
    assert response.json() == body
    assert response.headers["CONTENT-TYPE"] == "application/json"
    assert response.links == {"next": httpserver.url_for("/api/v1/accounts/7/statuses?max_id=1")}
    assert response.url == httpserver.url_for("/api/v1/accounts/7/statuses") + "?limit=40"

    records = read_records(sink.close_and_check())
    info, request, resp = records
    assert info["type"] == "warcinfo"
    assert request["warc"]["WARC-Concurrent-To"] == resp["warc"]["WARC-Record-ID"]
    assert resp["warc"]["WARC-Concurrent-To"] == request["warc"]["WARC-Record-ID"]
    assert request["warc"]["WARC-Target-URI"] == response.url
    for record in (request, resp):
        assert record["warc"]["WARC-Block-Digest"].startswith("sha256:")
        assert record["warc"]["WARC-Payload-Digest"].startswith("sha256:")
    assert request["protocol"] == "GET"
    assert http_header(request, "Host") == [f"{httpserver.host}:{httpserver.port}"]
    assert http_header(request, "User-Agent") == [HttpSettings().user_agent]
    assert resp["status"] == "200"
    assert json.loads(resp["payload"]) == body


def test_params_merge_into_the_query(httpserver: HTTPServer, make_client: ClientFactory) -> None:
    httpserver.expect_request("/search", query_string="q=snow&page=2&exact=true").respond_with_data(
        "ok"
    )
    response = make_client().get(
        httpserver.url_for("/search?q=snow"), params={"page": 2, "exact": True}
    )
    assert response.status_code == 200


def test_gzip_is_archived_raw_and_returned_decoded(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink
) -> None:
    document = json.dumps({"statuses": ["x" * 50] * 40}).encode()
    wire = gzip.compress(document, mtime=0)
    httpserver.expect_request("/statuses").respond_with_data(
        wire, content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    response = make_client().get(httpserver.url_for("/statuses"))
    assert response.content == document
    assert response.text == document.decode()
    assert response.headers["content-encoding"] == "gzip"

    resp = read_records(sink.close_and_check())[2]
    assert http_header(resp, "Content-Encoding") == ["gzip"]
    assert http_header(resp, "Content-Length") == [str(len(wire))]
    assert resp["payload"] == wire  # the gzipped bytes as they came over the wire
    assert "WARC-Archiver-Redacted" not in resp["warc"]


def test_chunked_response_is_archived_dechunked_with_a_truthful_head(
    make_client: ClientFactory, sink: WarcSink
) -> None:
    document = json.dumps([{"id": str(i), "text": "plow route"} for i in range(200)]).encode()
    wire = gzip.compress(document, mtime=0)
    pieces = [wire[i : i + 1000] for i in range(0, len(wire), 1000)]

    def answer(conn: socket.socket, _n: int) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for piece in pieces:
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sendall(b"0\r\n\r\n")

    server = RawServer(answer)
    try:
        response = make_client().get(server.url("/chunked"))
    finally:
        server.close()
    assert response.json() == json.loads(document)
    assert response.headers["transfer-encoding"] == "chunked"  # the connector sees the truth

    path = sink.close_and_check()
    resp = read_records(path)[2]
    assert http_header(resp, "Transfer-Encoding") == []
    assert http_header(resp, "X-Archive-Orig-Transfer-Encoding") == ["chunked"]
    assert resp["payload"] == wire  # de-chunked, still gzip: no chunk-size lines in it
    with path.open("rb") as f:
        record = next(r for r in ArchiveIterator(f) if r.rec_type == "response")
        assert record.content_stream().read() == document  # warcio decodes it right


# --------------------------------------------------------------------------- secrets


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The archiver's own log output (JSON lines), restored afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    configure_logging("DEBUG", fmt="json", stream=stream)
    yield stream
    handler = archiver_logging._handler
    if handler is not None:
        root.removeHandler(handler)
        archiver_logging._handler = None
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()


def echo_secrets(request: Request) -> WResponse:
    """A platform that echoes what it was sent, in several encodings (the worst case)."""
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ")
    body = json.dumps(
        {
            "authorization": auth,
            "token_b64": base64.b64encode(token.encode()).decode(),
            "token_pct": quote(token, safe=""),
            "query": request.args.get("access_token"),
            "url": request.url,
            "status": "visible",
        }
    ).encode()
    headers = {"Set-Cookie": "session=s3cr3t-cookie-value; HttpOnly"}
    if request.args.get("gzip"):
        body = gzip.compress(body, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return WResponse(body, content_type="application/json", headers=headers)


@pytest.mark.parametrize("encoded", [False, True], ids=["identity", "gzip"])
def test_credentials_never_reach_the_warc_or_the_log(
    httpserver: HTTPServer,
    make_client: ClientFactory,
    sink: WarcSink,
    log_stream: io.StringIO,
    encoded: bool,
) -> None:
    httpserver.expect_request("/api/v1/timelines/home").respond_with_handler(echo_secrets)
    client = make_client("mastodon", auth_headers={"Authorization": f"Bearer {TOKEN}"})
    params: dict[str, str | int | bool] = {"access_token": QUERY_TOKEN, "limit": 20}
    if encoded:
        params["gzip"] = 1

    response = client.get(httpserver.url_for("/api/v1/timelines/home"), params=params)

    # The real request carried both credentials; the connector sees what the server said.
    seen, _ = httpserver.log[-1]
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.args["access_token"] == QUERY_TOKEN
    assert response.json()["authorization"] == f"Bearer {TOKEN}"
    assert QUERY_TOKEN in response.url

    path = sink.close_and_check()
    everything = gzip.decompress(path.read_bytes())
    for secret in (TOKEN, QUERY_TOKEN, "s3cr3t-cookie-value"):
        for form in forms(secret):
            assert form not in everything, (secret, form)
    logged = log_stream.getvalue()
    assert "http.exchange" in logged
    for secret in (TOKEN, QUERY_TOKEN):
        for form in forms(secret):
            assert form.decode() not in logged

    _, request, resp = read_records(path)
    assert http_header(request, "Authorization") == ["[REDACTED]"]
    assert "access_token=[REDACTED]" in request["warc"]["WARC-Target-URI"]
    assert "limit=20" in request["warc"]["WARC-Target-URI"]
    assert "header:Authorization" in request["warc"]["WARC-Archiver-Redacted"]
    assert "query" in request["warc"]["WARC-Archiver-Redacted"]
    assert http_header(resp, "Set-Cookie") == ["[REDACTED]"]
    marks = resp["warc"]["WARC-Archiver-Redacted"]
    assert "registered-secret" in marks and "header:Set-Cookie" in marks
    archived = json.loads(resp["payload"])  # decoded: the head says so
    assert archived["authorization"] == "[REDACTED]"  # the whole registered value
    assert archived["token_b64"] == archived["token_pct"] == archived["query"] == "[REDACTED]"
    assert archived["status"] == "visible"
    assert http_header(resp, "Content-Length") == [str(len(resp["payload"]))]
    if encoded:
        assert http_header(resp, "Content-Encoding") == []
        assert http_header(resp, "X-Archive-Orig-Content-Encoding") == ["gzip"]


def test_malformed_json_names_the_url_without_secrets(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink
) -> None:
    httpserver.expect_request("/api/v1/statuses/1").respond_with_data(
        "<html>Bad gateway</html>", content_type="application/json"
    )
    response = make_client().get(
        httpserver.url_for("/api/v1/statuses/1"), params={"access_token": QUERY_TOKEN}
    )
    with pytest.raises(MalformedResponseError) as caught:
        response.json()
    message = str(caught.value)
    assert "/api/v1/statuses/1?access_token=[REDACTED]" in message
    assert "not valid JSON" in message and response.evidence in message
    assert QUERY_TOKEN not in message
    assert len(sink.pointers) == 2  # archived all the same


def test_body_not_matching_its_content_encoding_is_archived_then_refused(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink
) -> None:
    httpserver.expect_request("/broken").respond_with_data(
        b"this is not gzip", headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(MalformedResponseError, match="does not match its Content-Encoding"):
        make_client().get(httpserver.url_for("/broken"))
    resp = read_records(sink.close_and_check())[2]
    assert resp["payload"] == b"this is not gzip"


# --------------------------------------------------------------------------- rate limits


def rate_limited_then_ok(httpserver: HTTPServer, path: str, headers: dict[str, str]) -> None:
    httpserver.expect_ordered_request(path).respond_with_json(
        {"error": "Too many requests"}, status=429, headers=headers
    )
    httpserver.expect_ordered_request(path).respond_with_json({"ok": True})


@pytest.mark.parametrize(
    ("policy", "headers", "wait"),
    [
        ("default", {"Retry-After": "7"}, 7.0),
        (
            "mastodon",
            {"Retry-After": format_datetime(START + timedelta(seconds=42), usegmt=True)},
            42.0,
        ),
        (
            "mastodon",
            {
                "X-RateLimit-Limit": "300",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "2026-11-23T21:35:00.123456Z",
            },
            300.123456 + 1,  # the reset, plus the policy's 1 s margin for clock skew
        ),
        (
            "bluesky",
            {
                "RateLimit-Limit": "3000",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(int(START.timestamp()) + 120),
                "RateLimit-Policy": "3000;w=300",
            },
            121.0,
        ),
    ],
    ids=["retry-after-seconds", "retry-after-http-date", "mastodon-iso-reset", "bluesky-epoch"],
)
def test_429_waits_what_the_platform_says_then_succeeds(
    httpserver: HTTPServer,
    make_client: ClientFactory,
    sink: WarcSink,
    fake: FakeTime,
    policy: str,
    headers: dict[str, str],
    wait: float,
) -> None:
    rate_limited_then_ok(httpserver, "/api", headers)
    response = make_client(policy).get(httpserver.url_for("/api"))
    assert response.json() == {"ok": True}
    assert fake.sleeps == [pytest.approx(wait)]
    # The refused attempt is evidence too.
    records = read_records(sink.close_and_check())
    assert [(r["type"], r["status"]) for r in records[1:]] == [
        ("request", None),
        ("response", "429"),
        ("request", None),
        ("response", "200"),
    ]


def test_exhausted_quota_paces_the_next_request(
    httpserver: HTTPServer, make_client: ClientFactory, fake: FakeTime
) -> None:
    httpserver.expect_request("/a").respond_with_json(
        [], headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2026-11-23T21:31:00Z"}
    )
    httpserver.expect_request("/b").respond_with_json([])
    client = make_client("mastodon")
    client.get(httpserver.url_for("/a"))
    assert fake.sleeps == []
    client.get(httpserver.url_for("/b"))
    assert fake.sleeps == [61.0]  # waited for the reset (+1 s) before sending
    client.get(httpserver.url_for("/b"))
    assert fake.sleeps == [61.0]


def test_pacing_beyond_max_wait_refuses_without_sending(
    httpserver: HTTPServer, make_client: ClientFactory, fake: FakeTime
) -> None:
    httpserver.expect_request("/a").respond_with_json(
        [], headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2026-11-23T22:30:00Z"}
    )
    settings = HttpSettings(max_retries=3, max_wait=timedelta(minutes=5))
    client = make_client("mastodon", settings=settings)
    client.get(httpserver.url_for("/a"))
    with pytest.raises(RateLimitedError, match="quota") as caught:
        client.get(httpserver.url_for("/a"))
    assert caught.value.retry_after == 3601.0
    assert len(httpserver.log) == 1 and fake.sleeps == []


def test_a_500_then_success(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink, fake: FakeTime
) -> None:
    httpserver.expect_ordered_request("/api").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/api").respond_with_json({"ok": True})
    assert make_client().get(httpserver.url_for("/api")).json() == {"ok": True}
    assert fake.sleeps == [0.5]  # backoff: jitter 0.5 of the 1 s first ceiling
    assert [p.warc_type for p in sink.pointers] == ["request", "response"] * 2


def test_503_storm_gives_up_after_max_retries(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink, fake: FakeTime
) -> None:
    httpserver.expect_request("/api/v1/instance").respond_with_data("down", status=503)
    client = make_client(settings=HttpSettings(max_retries=3))
    with pytest.raises(PlatformUnavailableError) as caught:
        client.get(httpserver.url_for("/api/v1/instance"), params={"access_token": QUERY_TOKEN})
    message = str(caught.value)
    assert httpserver.url_for("/api/v1/instance") + "?access_token=[REDACTED]" in message
    assert "4 attempt(s)" in message and "503, 503, 503, 503" in message
    assert "retry limit (3 retries)" in message and QUERY_TOKEN not in message
    assert fake.sleeps == [0.5, 1.0, 2.0]
    assert len(httpserver.log) == 4
    assert len(sink.pointers) == 8  # every failed exchange archived


def test_429_storm_gives_up_with_rate_limited_error(
    httpserver: HTTPServer, make_client: ClientFactory, fake: FakeTime
) -> None:
    httpserver.expect_request("/api").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "10"}
    )
    client = make_client(settings=HttpSettings(max_retries=2))
    with pytest.raises(RateLimitedError) as caught:
        client.get(httpserver.url_for("/api"))
    assert caught.value.retry_after == 10.0
    assert "3 attempt(s)" in str(caught.value) and "429, 429, 429" in str(caught.value)
    assert fake.sleeps == [10.0, 10.0]


def test_max_wait_bounds_the_total_waiting(
    httpserver: HTTPServer, make_client: ClientFactory, fake: FakeTime
) -> None:
    httpserver.expect_request("/api").respond_with_data(
        "busy", status=429, headers={"Retry-After": "60"}
    )
    client = make_client(settings=HttpSettings(max_retries=10, max_wait=timedelta(seconds=100)))
    with pytest.raises(RateLimitedError, match="max_wait budget of 100 s"):
        client.get(httpserver.url_for("/api"))
    assert fake.sleeps == [60.0]  # a second 60 s wait would have passed 100 s: not started
    assert sum(fake.sleeps) <= 100


def test_a_wait_longer_than_max_wait_is_not_started(
    httpserver: HTTPServer, make_client: ClientFactory, fake: FakeTime
) -> None:
    httpserver.expect_request("/api").respond_with_data(
        "busy", status=429, headers={"Retry-After": "3600"}
    )
    client = make_client(settings=HttpSettings(max_wait=timedelta(seconds=100)))
    with pytest.raises(RateLimitedError) as caught:
        client.get(httpserver.url_for("/api"))
    assert caught.value.retry_after == 3600.0
    assert fake.sleeps == [] and len(httpserver.log) == 1


def test_4xx_is_returned_to_the_connector(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink, fake: FakeTime
) -> None:
    httpserver.expect_request("/api/v1/statuses/9").respond_with_json(
        {"error": "Record not found"}, status=404
    )
    response = make_client().get(httpserver.url_for("/api/v1/statuses/9"))
    assert response.status_code == 404
    assert response.json() == {"error": "Record not found"}
    assert fake.sleeps == [] and len(sink.pointers) == 2


# --------------------------------------------------------------------------- connections


def test_connection_refused_is_retried_then_unavailable(
    make_client: ClientFactory, sink: WarcSink, fake: FakeTime
) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    client = make_client(settings=HttpSettings(max_retries=2))
    with pytest.raises(PlatformUnavailableError) as caught:
        client.get(f"http://127.0.0.1:{port}/api", params={"access_token": QUERY_TOKEN})
    message = str(caught.value)
    assert "3 attempt(s)" in message and "ConnectError" in message
    assert QUERY_TOKEN not in message
    assert fake.sleeps == [0.5, 1.0]
    assert sink.pointers == []


def test_connection_reset_is_retried(
    make_client: ClientFactory, sink: WarcSink, fake: FakeTime
) -> None:
    def answer(conn: socket.socket, n: int) -> None:
        if n <= 2:
            reset(conn)
            return
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n[]"
        )

    server = RawServer(answer)
    try:
        response = make_client().get(server.url("/api"))
    finally:
        server.close()
    assert response.json() == []
    assert len(server.requests) == 3
    assert fake.sleeps == [0.5, 1.0]
    assert [p.warc_type for p in sink.pointers] == ["request", "response"]


def test_connection_reset_every_time_gives_up(make_client: ClientFactory, fake: FakeTime) -> None:
    server = RawServer(lambda conn, _n: reset(conn))
    try:
        with pytest.raises(PlatformUnavailableError, match="4 attempt"):
            make_client().get(server.url("/api"))
    finally:
        server.close()
    assert len(fake.sleeps) == 3


# --------------------------------------------------------------------------- redirects


def test_redirect_hops_are_archived_and_auth_stays_on_its_origin(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink
) -> None:
    elsewhere = httpserver.url_for("/final").replace("localhost", "127.0.0.1")
    if elsewhere == httpserver.url_for("/final"):
        elsewhere = httpserver.url_for("/final").replace("127.0.0.1", "localhost")
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": "/middle"}
    )
    httpserver.expect_request("/middle").respond_with_data(
        "", status=301, headers={"Location": elsewhere}
    )
    httpserver.expect_request("/final").respond_with_json({"done": True})
    client = make_client(auth_headers={"Authorization": f"Bearer {TOKEN}"})

    response = client.get(httpserver.url_for("/start"))

    assert response.json() == {"done": True}
    assert response.url == elsewhere
    auth = [req.headers.get("Authorization") for req, _ in httpserver.log]
    assert auth == [f"Bearer {TOKEN}", f"Bearer {TOKEN}", None]  # not sent to another origin
    records = read_records(sink.close_and_check())
    assert [r["status"] for r in records if r["type"] == "response"] == ["302", "301", "200"]


# --------------------------------------------------------------------------- media


def stream_of(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """``size`` deterministic bytes, made one chunk at a time."""
    for start in range(0, size, chunk):
        n = min(chunk, size - start)
        yield bytes([(start // chunk) % 251]) * n


def media_handler(size: int) -> Callable[[Request], WResponse]:
    def handler(_request: Request) -> WResponse:
        # No Content-Length: streamed until the server closes the connection.
        return WResponse(stream_of(size), content_type="video/mp4", direct_passthrough=True)

    return handler


def test_download_over_the_cap_is_refused_and_nothing_is_written(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink, tmp_path: Path
) -> None:
    httpserver.expect_request("/media/big.mp4").respond_with_handler(media_handler(3 * 2**20))
    media_tmp = tmp_path / "media-tmp"
    media_tmp.mkdir()
    with pytest.raises(PayloadTooLargeError, match="larger than the 1048576-byte limit"):
        make_client().download(
            httpserver.url_for("/media/big.mp4"), max_bytes=2**20, tmp_dir=media_tmp
        )
    assert sink.pointers == []
    assert list(media_tmp.iterdir()) == []


def test_download_streams_digests_and_stays_small_in_memory(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink, tmp_path: Path
) -> None:
    size = 3 * 2**20
    httpserver.expect_request("/media/clip.mp4").respond_with_handler(media_handler(size))
    expected = hashlib.sha256()
    for piece in stream_of(size):
        expected.update(piece)
    client = make_client(auth_headers={"Authorization": f"Bearer {TOKEN}"})

    tracemalloc.start()
    try:
        download = client.download(
            httpserver.url_for("/media/clip.mp4"), max_bytes=4 * 2**20, tmp_dir=tmp_path
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    with download:
        assert peak < 2**20, f"peak {peak} bytes: the body was held in memory"
        assert download.status_code == 200
        assert download.response.payload_size == size
        assert download.response.payload_digest == digest_label(expected)
        assert sink.pointers == []  # the pipeline appends, not the client
        seen, _ = httpserver.log[-1]
        assert seen.headers["Accept-Encoding"] == "identity"
        assert "Authorization" not in seen.headers  # no token to the media host
        sink.append(download.request)
        sink.append(download.response.record)

    records = read_records(sink.close_and_check())
    request, resp = records[1], records[2]
    assert request["warc"]["WARC-Concurrent-To"] == resp["warc"]["WARC-Record-ID"]
    assert resp["warc"]["WARC-Payload-Digest"] == digest_label(expected)
    assert hashlib.sha256(resp["payload"]).digest() == expected.digest()


def test_download_retries_and_keeps_the_failed_attempt_for_the_pipeline(
    httpserver: HTTPServer, make_client: ClientFactory, fake: FakeTime, tmp_path: Path
) -> None:
    httpserver.expect_ordered_request("/m.png").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/m.png").respond_with_data(
        b"\x89PNG-bytes", content_type="image/png"
    )
    with make_client().download(
        httpserver.url_for("/m.png"), max_bytes=1000, tmp_dir=tmp_path
    ) as download:
        assert download.status_code == 200
        assert download.response.payload_size == len(b"\x89PNG-bytes")
        assert [r.warc_type for r in download.history] == ["request", "response"]
        assert download.history[1].body == b"busy"
    assert fake.sleeps == [0.5]


def test_a_cookie_a_platform_sets_is_not_sent_back(
    httpserver: HTTPServer, make_client: ClientFactory, sink: WarcSink
) -> None:
    """Stateless: each archived request is what the connector asked for, not its history."""
    httpserver.expect_request("/api/v1/timelines/home").respond_with_handler(echo_secrets)
    client = make_client("mastodon")

    client.get(httpserver.url_for("/api/v1/timelines/home"))
    client.get(httpserver.url_for("/api/v1/timelines/home"))

    (first, _), (second, _) = httpserver.log[-2:]
    assert "Cookie" not in first.headers and "Cookie" not in second.headers
    _, _, _, request, _ = read_records(sink.close_and_check())
    assert http_header(request, "Cookie") == []
