"""The systemd notification protocol (``sd_notify(3)``), spoken without libsystemd.

A ``Type=notify`` service tells systemd how it is doing by sending newline-separated
``KEY=value`` fields in one datagram to the unix socket named by ``$NOTIFY_SOCKET``:
``READY=1`` once start-up is done, ``STATUS=...`` (one line shown by ``systemctl status``),
``WATCHDOG=1`` keep-alive pings, ``STOPPING=1`` when shutting down, ``MAINPID=...``.
A socket name starting with ``@`` is in the abstract namespace. Outside systemd (the
variable unset) every call is a no-op, so the daemon runs the same under a terminal.

The watchdog (``WatchdogSec=`` in the unit) is enabled when ``$WATCHDOG_USEC`` is set and
``$WATCHDOG_PID`` is unset or names this process (``sd_watchdog_enabled(3)``); systemd
expects a ping at least that often and the manual recommends pinging every half of it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from archiver.logging import get_logger

log = get_logger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(env: Mapping[str, str] | None = None) -> str | None:
    """Where notifications go: a filesystem path, or ``"\\0name"`` for an abstract socket."""
    value = (os.environ if env is None else env).get(NOTIFY_SOCKET, "")
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.debug("NOTIFY_SOCKET is neither a path nor an abstract name; not notifying", value=value)
    return None


def _one_line(field: str) -> str:
    # A newline would start a new field: STATUS text from an error message must not forge one.
    return " ".join(field.splitlines())


def notify(*fields: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=capturing"``) as one notification.

    Returns whether a datagram was sent. Never raises: a service must not fail because its
    manager stopped listening.
    """
    address = socket_address(env)
    if address is None or not fields:
        return False
    message = "\n".join(_one_line(f) for f in fields).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as exc:
        log.debug("sd_notify failed", error=str(exc))
        return False
    return True


def ready(status: str | None = None) -> bool:
    """``READY=1`` (with the process id, so systemd knows the main process, and a status)."""
    fields = ["READY=1", f"MAINPID={os.getpid()}"]
    if status:
        fields.append(f"STATUS={status}")
    return notify(*fields)


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def stopping(status: str | None = None) -> bool:
    fields = ["STOPPING=1"]
    if status:
        fields.append(f"STATUS={status}")
    return notify(*fields)


def watchdog_timeout(env: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds if systemd expects pings from this process, else None."""
    env = os.environ if env is None else env
    raw = env.get(WATCHDOG_USEC, "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get(WATCHDOG_PID, "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """How often to ping: half the watchdog timeout (``sd_watchdog_enabled(3)``), or None."""
    timeout = watchdog_timeout(env)
    return None if timeout is None else timeout / 2
