"""sd_notify over a real unix datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver import sdnotify


class Listener:
    """A bound ``SOCK_DGRAM`` unix socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name  # what $NOTIFY_SOCKET holds

    def receive(self, timeout: float = 2.0) -> list[str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        return data.decode().split("\n")

    def nothing_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(65536)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "unix socket paths are limited to 108 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield Listener(sock, str(path))
    finally:
        sock.close()


@pytest.fixture
def abstract_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    name = f"archiver-test-{os.getpid()}-{id(monkeypatch)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        yield Listener(sock, "@" + name)
    finally:
        sock.close()


def test_ready_names_the_main_pid_and_a_status(listener: Listener) -> None:
    assert sdnotify.ready("2 accounts scheduled")
    assert listener.receive() == [
        "READY=1",
        f"MAINPID={os.getpid()}",
        "STATUS=2 accounts scheduled",
    ]


def test_each_kind_of_notification_is_one_datagram(listener: Listener) -> None:
    assert sdnotify.status("capturing mke-bluesky")
    assert sdnotify.watchdog()
    assert sdnotify.stopping("stopping: 1 capture finishing its page")
    assert listener.receive() == ["STATUS=capturing mke-bluesky"]
    assert listener.receive() == ["WATCHDOG=1"]
    assert listener.receive() == ["STOPPING=1", "STATUS=stopping: 1 capture finishing its page"]


def test_a_status_with_newlines_cannot_forge_another_field(listener: Listener) -> None:
    assert sdnotify.status("last error: boom\nREADY=1")
    assert listener.receive() == ["STATUS=last error: boom READY=1"]


def test_the_abstract_namespace_is_used_for_an_at_sign(abstract_listener: Listener) -> None:
    assert sdnotify.socket_address() == "\0" + abstract_listener.name[1:]
    assert sdnotify.notify("WATCHDOG=1")
    assert abstract_listener.receive() == ["WATCHDOG=1"]


def test_without_notify_socket_nothing_is_sent(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert listener.nothing_within(0.2)


def test_a_socket_nobody_listens_on_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert sdnotify.notify("READY=1") is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "2000000"}, 1.0),  # WATCHDOG_PID unset: any process
        ({"WATCHDOG_USEC": "180000000", "WATCHDOG_PID": str(os.getpid())}, 90.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_the_watchdog_interval_is_half_the_timeout_for_this_process(
    env: dict[str, str], interval: float | None
) -> None:
    assert sdnotify.watchdog_interval(env) == interval


def test_the_watchdog_interval_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() == 1.5
    assert sdnotify.watchdog_timeout() == 3.0
