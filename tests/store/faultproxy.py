"""A fault-injecting HTTP proxy on 127.0.0.1, in front of the moto S3 server.

The proxy forwards each request as it came (method, path and query, headers including the
``Host`` boto3 signed, and the body streamed through as it arrives, ``Content-Length`` or
chunked) and each answer as moto gave it. Tests program faults, consumed in order: only the
first pending fault is matched against each request, by HTTP method and optionally a query
parameter, a header and a substring of the path, and ``nth`` says which matching request it
hits (``nth=2``: let one through, hit the second). A fault of ``times=3`` hits three matching
requests in a row. The kinds are those an S3 client meets in the field:

- ``slow_down``: answer ``503 SlowDown`` with S3's XML error body, without forwarding;
- ``reset``: read part of the request body, then reset the connection (``SO_LINGER`` 0), so
  the client sees ``ECONNRESET`` in the middle of its upload and S3 never sees the request;
- ``flip``: forward the request, and flip one byte in the body of S3's answer;
- ``lose_answer``: forward the request, then reset the connection instead of answering, so
  S3 did the work but the client never heard (it retries what already succeeded);
- ``cut_answer``: forward the request, send S3's status, headers and half its body, then
  reset the connection (a download broken off in the middle).

Every request is logged (``proxy.seen``) with the fault that hit it, so a test can prove a
retry really happened. Use it with ``pytest_plugins = ["tests.store.s3server",
"tests.store.faultproxy"]``; do not import this module from a test module (it would then be
imported before pytest registers it as a plugin) except under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partialmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import pytest

Kind = Literal["slow_down", "reset", "flip", "lose_answer", "cut_answer"]

SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>FAULTPROXY0000001</RequestId><HostId>faultproxy</HostId></Error>"
)
#: Headers about one hop, not the request: the proxy speaks them itself on each side.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"}
)
COPY_CHUNK = 64 * 1024


@dataclass
class Fault:
    """One programmed fault: what it does and which request it hits."""

    kind: Kind
    method: str
    query: str | None = None
    header: str | None = None
    path: str | None = None
    nth: int = 1
    times: int = 1
    passed: int = 0  # matching requests let through so far
    hits: int = 0

    def matches(self, request: Seen) -> bool:
        return (
            request.method == self.method
            and (self.query is None or self.query in request.query)
            and (self.header is None or self.header.lower() in request.headers)
            and (self.path is None or self.path in request.path)
        )


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and the fault (if any) that hit it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    fault: Kind | None = None


class FaultProxy:
    """The proxy: ``url`` to give boto3, faults to program, ``seen`` to inspect."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.seen: list[Seen] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fault-proxy", daemon=True
        )

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- programming faults ------------------------------------------------------------------

    def program(
        self,
        kind: Kind,
        method: str,
        *,
        query: str | None = None,
        header: str | None = None,
        path: str | None = None,
        nth: int = 1,
        times: int = 1,
    ) -> Fault:
        """Queue a fault of ``kind`` for the ``nth`` request matching; ``times`` in a row."""
        return self._add(Fault(kind, method, query, header, path, nth, times))

    # fault_proxy.slow_down("PUT", query="partNumber", nth=2): the second UploadPart gets 503.
    slow_down = partialmethod(program, "slow_down")
    reset = partialmethod(program, "reset")
    flip = partialmethod(program, "flip")
    lose_answer = partialmethod(program, "lose_answer")
    cut_answer = partialmethod(program, "cut_answer")

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    @property
    def pending(self) -> list[Fault]:
        """The faults not (fully) delivered yet."""
        with self._lock:
            return list(self._faults)

    # -- the log -----------------------------------------------------------------------------

    def requests(
        self, method: str | None = None, *, query: str | None = None, header: str | None = None
    ) -> list[Seen]:
        """The requests seen so far, optionally only those of a method / query / header."""
        with self._lock:
            return [
                r
                for r in self.seen
                if (method is None or r.method == method)
                and (query is None or query in r.query)
                and (header is None or header.lower() in r.headers)
            ]

    def hit(self, kind: Kind | None = None) -> list[Seen]:
        """The requests a fault (of ``kind``) hit."""
        return [r for r in self.requests() if r.fault and (kind is None or r.fault == kind)]

    def _take(self, request: Seen) -> Kind | None:
        """Log the request; the fault that hits it, if the first pending one matches."""
        with self._lock:
            kind: Kind | None = None
            fault = self._faults[0] if self._faults else None
            if fault is not None and fault.matches(request):
                if fault.passed + 1 < fault.nth:
                    fault.passed += 1
                else:
                    kind = fault.kind
                    fault.hits += 1
                    if fault.hits >= fault.times:
                        self._faults.pop(0)
            self.seen.append(
                Seen(request.method, request.path, request.query, request.headers, kind)
            )
            return kind


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects
    timeout = 60  # an idle kept-alive connection ends after this

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxy's log is ``seen``."""

    def handle_expect_100(self) -> bool:
        # Answered only once we know the request is forwarded (see _relay_body); a fault
        # answers at once instead, which a client waiting for 100 Continue accepts.
        return True

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _serve(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        request = Seen(
            self.command,
            url.path,
            parse_qs(url.query, keep_blank_values=True),
            {name.lower(): value for name, value in self.headers.items()},
        )
        kind = proxy._take(request)
        if kind == "slow_down":
            self._slow_down()
        elif kind == "reset":
            self._reset(read=True)
        else:
            self._forward(proxy.upstream, kind)

    # -- faults ------------------------------------------------------------------------------

    def _slow_down(self) -> None:
        self.send_response_only(503, "Slow Down")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(SLOW_DOWN_BODY)))
        if self._body_length() != 0:
            # The body was not read (a client waiting for 100 Continue never sends it): this
            # connection cannot carry another request.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(SLOW_DOWN_BODY)

    def _reset(self, *, read: bool) -> None:
        if read:
            self._read_half_the_body()
        # SO_LINGER with a zero timeout: close() sends RST, not FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _read_half_the_body(self) -> None:
        if "100-continue" in self.headers.get("Expect", "").lower():
            self.send_response_only(100)
            self.end_headers()
        length = self._body_length()
        want = max(1, (length or 2 * COPY_CHUNK) // 2)
        got = 0
        while got < want:
            data = self.rfile.read1(min(COPY_CHUNK, want - got))  # type: ignore[attr-defined]
            if not data:
                break
            got += len(data)

    # -- forwarding --------------------------------------------------------------------------

    def _body_length(self) -> int | None:
        """The request body's length; None when it is chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        return int(self.headers.get("Content-Length", "0") or 0)

    def _relay_body(self) -> Iterator[bytes]:
        """The request body as it arrives, framing and all (chunked stays chunked)."""
        if "100-continue" in self.headers.get("Expect", "").lower():
            self.send_response_only(100)
            self.end_headers()
        length = self._body_length()
        if length is not None:
            while length > 0:
                data = self.rfile.read(min(COPY_CHUNK, length))
                if not data:
                    raise ConnectionError("the client closed in the middle of its body")
                length -= len(data)
                yield data
            return
        while True:  # chunked: size line, data and CRLF; a zero size, trailers, blank line
            line = self.rfile.readline()
            yield line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    yield trailer
                yield b"\r\n"
                return
            yield self.rfile.read(size + 2)

    def _forward(self, upstream: tuple[str, int], kind: Kind | None) -> None:
        conn = http.client.HTTPConnection(*upstream, timeout=120)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.endheaders()
            for piece in self._relay_body():
                conn.send(piece)
            answer = conn.getresponse()
            if kind == "lose_answer":
                answer.read()
                self._reset(read=False)
            else:
                self._answer(answer, flip=kind == "flip", cut=kind == "cut_answer")
        finally:
            conn.close()

    def _answer(self, answer: http.client.HTTPResponse, *, flip: bool, cut: bool) -> None:
        self.send_response_only(answer.status, answer.reason)
        chunked = False
        for name, value in answer.getheaders():
            lower = name.lower()
            if lower == "transfer-encoding":
                chunked = "chunked" in value.lower()  # http.client undoes it; redo it
            if lower not in HOP_BY_HOP or lower == "transfer-encoding":
                self.send_header(name, value)
        if answer.getheader("Connection", "").lower() == "close":
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            length = int(answer.getheader("Content-Length", "0") or 0)
            self.wfile.write(answer.read(length // 2))
            self._reset(read=False)
            return
        flipped = not flip
        while data := answer.read1(COPY_CHUNK):
            if not flipped:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
                flipped = True
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def fault_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A fresh fault proxy in front of the session's moto server (no faults programmed)."""
    proxy = FaultProxy(moto_endpoint).start()
    try:
        yield proxy
    finally:
        proxy.stop()
