"""The shipped systemd unit: valid, pointing at the documented install, hardened, and livable.

- ``systemd-analyze verify`` checks a copy whose ``ExecStart=`` names this environment's
  ``archiver`` (verify refuses a command that does not exist, and /opt/archiver is not
  installed here). ``User=archiver`` stays as shipped: verify does not look users up
  (systemd 252 passes without an ``archiver`` user), and should a version do so, the test
  says so and checks a copy running as root instead. Verify exits 0 even for unknown keys
  and unparsable values, so any line it prints about the unit fails the test.
- The unit's paths are the ones docs/install.md and docs/sudoers.example document.
- The sandbox settings that could break the program (system call filter, no W+X memory,
  address families) are emulated with an equivalent seccomp filter, built from the unit's own
  lines and ``systemd-analyze syscall-filter``, and a capture, ``status`` and ``accounts``
  run inside it, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import platform
import pwd
import re
import shlex
import shutil
import struct
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.config import DaemonSettings
from tests.commands.clitools import Workspace, describe, make_workspace, toml_str

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "archiver.service"
INSTALL_DOC = REPO / "docs" / "install.md"
SUDOERS = REPO / "docs" / "sudoers.example"
ARCHIVER = Path(sys.executable).with_name("archiver")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
)
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """``{section: [(key, value), ...]}`` in file order (keys may repeat, as in systemd)."""
    unit: Unit = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        assert section is not None, f"setting outside a section: {raw!r}"
        assert not line.endswith("\\"), "continuation lines are not used in this unit"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {raw!r}"
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, key: str, section: str = "Service") -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, key: str, section: str = "Service") -> str:
    found = values(unit, key, section)
    assert len(found) == 1, f"{key}= appears {len(found)} times in [{section}]"
    return found[0]


def timespan(text: str) -> timedelta:
    """A systemd time span such as ``90``, ``90s``, ``2min``, ``15min``, ``1h 30min``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return timedelta(seconds=total)


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


# --- systemd-analyze verify ----------------------------------------------------------------


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _verify(path: Path) -> tuple[int, list[str]]:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True, text=True, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if path.name in line]


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_unit(unit: Unit, tmp_path: Path) -> None:
    shipped = shlex.split(value(unit, "ExecStart"))[0]
    text = UNIT.read_text(encoding="utf-8")
    copy = tmp_path / "archiver.service"
    copy.write_text(text.replace(f"ExecStart={shipped} ", f"ExecStart={ARCHIVER} "))
    assert str(ARCHIVER) in copy.read_text()

    code, complaints = _verify(copy)
    if not _user_exists("archiver") and any("user" in line.lower() for line in complaints):
        # This systemd looks users up and there is no `archiver` user on this machine:
        # check everything else on a copy that runs as root, and say so.
        print(f"systemd-analyze complained about User=archiver: {complaints}; rechecking as root")
        copy.write_text(
            copy.read_text()
            .replace("User=archiver", "User=root")
            .replace("Group=archiver", "Group=root")
        )
        code, complaints = _verify(copy)
    assert code == 0 and complaints == [], "\n".join(complaints)


@needs_systemd_analyze
def test_verify_would_catch_a_mistake(unit: Unit, tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key is reported (though verify exits 0)."""
    shipped = shlex.split(value(unit, "ExecStart"))[0]
    copy = tmp_path / "archiver.service"
    text = UNIT.read_text(encoding="utf-8").replace(
        f"ExecStart={shipped} ", f"ExecStart={ARCHIVER} "
    )
    copy.write_text(text.replace("ProtectHome=yes", "ProtectHomme=yes"))
    _, complaints = _verify(copy)
    assert any("ProtectHomme" in line for line in complaints), complaints


# --- what the unit says --------------------------------------------------------------------


def test_the_unit_runs_the_documented_installation(unit: Unit) -> None:
    argv = shlex.split(value(unit, "ExecStart"))
    program, config = argv[0], argv[argv.index("--config") + 1]
    assert argv[-1] == "run"
    install = INSTALL_DOC.read_text(encoding="utf-8")
    # docs/install.md names the prefix, builds the virtualenv there, and names the program.
    prefix = re.search(r"install prefix is `(/[^`]+)`", install, re.IGNORECASE)
    assert prefix, "docs/install.md does not state the install prefix"
    venv = f"{prefix.group(1)}/venv"
    assert program == f"{venv}/bin/archiver"
    assert f"python3 -m venv {venv}\n" in install
    assert f"{venv}/bin/pip install --require-hashes" in install
    assert f"`{program}`" in install
    assert config == "/etc/archiver/config.toml" and f"`{config}`" in install
    # Staff run the same program through sudo.
    sudo_rules = [
        line
        for line in SUDOERS.read_text(encoding="utf-8").splitlines()
        if "ALL=(archiver)" in line
    ]
    assert sudo_rules and all(line.rstrip().endswith(program) for line in sudo_rules)
    # The README points at the installation guide.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Installing as a service" in readme and "(docs/install.md)" in readme
    # The paths the guide puts in the configuration are the ones the unit lets it write.
    state = Path("/var/lib") / value(unit, "StateDirectory")
    for key in ("[spool]", "[store]"):
        assert key in install
    assert f'path = "{state}/spool"' in install and f'path = "{state}/store"' in install


def test_the_unit_is_a_notify_service_with_a_watchdog(unit: Unit) -> None:
    assert value(unit, "Type") == "notify"
    assert value(unit, "NotifyAccess") == "main"
    assert value(unit, "User") == "archiver" and value(unit, "Group") == "archiver"
    assert value(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert value(unit, "KillSignal") == "SIGTERM"
    assert value(unit, "Restart") == "on-failure" and values(unit, "RestartSec")
    assert value(unit, "StateDirectory") == "archiver"
    assert value(unit, "ConfigurationDirectory") == "archiver"
    assert value(unit, "WantedBy", section="Install") == "multi-user.target"
    # Credentials are per installation: examples only, never a line that fails without a file.
    assert values(unit, "LoadCredential") == []
    assert "LoadCredential=" in UNIT.read_text(encoding="utf-8")


def test_the_timeouts_fit_the_daemon_defaults(unit: Unit) -> None:
    daemon = DaemonSettings()
    # The daemon pings with each heartbeat; three may be missed before systemd acts.
    assert timespan(value(unit, "WatchdogSec")) >= 3 * daemon.heartbeat_every
    # SIGTERM: the record in hand may take stop_timeout, then WARCs close and the head anchors.
    assert timespan(value(unit, "TimeoutStopSec")) > daemon.stop_timeout
    assert timespan(value(unit, "TimeoutStartSec")) >= timedelta(minutes=5)


HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0027",
}


def test_the_unit_is_hardened(unit: Unit) -> None:
    for key, expected in HARDENING.items():
        assert value(unit, key) == expected, key
    assert values(unit, "SystemCallFilter")[0] == "@system-service"
    # Nothing but the state directory is writable.
    assert values(unit, "ReadWritePaths") == []


@needs_systemd_analyze
def test_systemd_rates_the_sandbox_ok(tmp_path: Path) -> None:
    copy = tmp_path / "archiver.service"
    shutil.copy(UNIT, copy)
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if found is None:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {result.stderr}")
    assert float(found.group(1)) <= 2.5, result.stdout


# --- the sandbox, emulated -----------------------------------------------------------------

_UNISTD = (
    Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    Path("/usr/include/asm/unistd_64.h"),
)
#: Always allowed by systemd, whatever the filter says (systemd.exec(5), SystemCallFilter=).
_IMPLICIT = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"}
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_EPERM, _EAFNOSUPPORT = 1, 97
_LD_W_ABS, _JEQ_K, _JSET_K, _AND_K, _RET_K = 0x20, 0x15, 0x45, 0x54, 0x06
_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}
_ARGS = 16  # offsetof(struct seccomp_data, args); arguments are 8 bytes, little-endian


def _syscall_numbers() -> dict[str, int]:
    header = next((p for p in _UNISTD if p.exists()), None)
    if header is None:
        pytest.skip("no x86-64 system call table (linux-libc-dev's asm/unistd_64.h)")
    found = re.findall(r"#define __NR_(\w+)\s+(\d+)", header.read_text())
    return {name: int(number) for name, number in found}


def _syscall_groups() -> dict[str, list[str]]:
    assert SYSTEMD_ANALYZE is not None
    out = subprocess.run(
        [SYSTEMD_ANALYZE, "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and current is not None:
            if not line.strip().startswith("#"):
                current.append(line.strip())
        else:
            current = None
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= _expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def sandbox_filter(unit: Unit) -> bytes:
    """A seccomp BPF program doing what the unit's seccomp-based settings do (x86-64)."""
    numbers, groups = _syscall_numbers(), _syscall_groups()
    allowed: set[str] = set(_IMPLICIT)
    denied: set[str] = set()
    for line in values(unit, "SystemCallFilter"):
        if line.startswith("~"):
            denied |= _expand(line[1:].split(), groups)
        else:
            allowed |= _expand(line.split(), groups)
    allow_numbers = sorted({numbers[n] for n in allowed - denied if n in numbers})
    errno = {"EPERM": _EPERM}[value(unit, "SystemCallErrorNumber")]
    assert value(unit, "SystemCallArchitectures") == "native"
    assert value(unit, "MemoryDenyWriteExecute") == "yes"
    families = [_FAMILIES[f] for f in value(unit, "RestrictAddressFamilies").split()]
    deny = _ERRNO | errno
    prot_write, prot_exec = 2, 4

    prog: list[tuple[int, int, int, int]] = []

    def emit(code: int, k: int, jt: int = 0, jf: int = 0) -> None:
        prog.append((code, jt, jf, k))

    # Another architecture, or the x32 ABI: refused (SystemCallArchitectures=native).
    emit(_LD_W_ABS, 4)
    emit(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0)
    emit(_RET_K, deny)
    emit(_LD_W_ABS, 0)
    emit(_JSET_K, _X32_BIT, 0, 1)
    emit(_RET_K, deny)
    # MemoryDenyWriteExecute=yes: mmap(W|X), mprotect/pkey_mprotect(X) are refused.
    emit(_JEQ_K, numbers["mmap"], 0, 4)
    emit(_LD_W_ABS, _ARGS + 2 * 8)
    emit(_AND_K, prot_write | prot_exec)
    emit(_JEQ_K, prot_write | prot_exec, 0, 1)
    emit(_RET_K, deny)
    emit(_LD_W_ABS, 0)
    for name in ("mprotect", "pkey_mprotect"):
        emit(_JEQ_K, numbers[name], 0, 3)
        emit(_LD_W_ABS, _ARGS + 2 * 8)
        emit(_JSET_K, prot_exec, 0, 1)
        emit(_RET_K, deny)
        emit(_LD_W_ABS, 0)
    # RestrictAddressFamilies=: socket() of another family fails with EAFNOSUPPORT.
    emit(_JEQ_K, numbers["socket"], 0, len(families) + 3)
    emit(_LD_W_ABS, _ARGS)
    for i, family in enumerate(families):
        emit(_JEQ_K, family, len(families) - i, 0)
    emit(_RET_K, _ERRNO | _EAFNOSUPPORT)
    emit(_LD_W_ABS, 0)
    # SystemCallFilter=: the allowed calls pass, everything else fails with EPERM.
    for number in allow_numbers:
        emit(_JEQ_K, number, 0, 1)
        emit(_RET_K, _ALLOW)
    emit(_RET_K, deny)
    assert len(prog) < 4096
    return b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in prog)


#: Run in the child: install the filter (after no_new_privs, as systemd does), then exec.
_ENTER_SANDBOX = """
import ctypes, os, sys
program = bytes.fromhex(sys.argv[1])
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
fprog = Fprog(len(program) // 8, program)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit(f"cannot install the seccomp filter: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[2], sys.argv[2:])
"""

#: Proof the sandbox is on: what it refuses is refused, with systemd's errors.
_PROBE = """
import errno, mmap, socket
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("rwx mapped")
except PermissionError:
    print("rwx refused")
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    print("netlink opened")
except OSError as exc:
    print("netlink refused" if exc.errno == errno.EAFNOSUPPORT else f"netlink {exc}")
try:
    import os; os.chroot("/")
except PermissionError:
    print("chroot refused")
"""


def _in_sandbox(program: bytes, *argv: str, ws: Workspace) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _ENTER_SANDBOX, program.hex(), *argv],
        capture_output=True,
        text=True,
        env=ws.env,
        cwd=ws.cwd,
        timeout=120,
        check=False,
    )


@needs_systemd_analyze
@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the emulated filter is written for x86-64 Linux",
)
def test_captures_work_inside_the_units_sandbox(
    unit: Unit, tmp_path: Path, catalog_url: str
) -> None:
    program = sandbox_filter(unit)
    archive = REPO / "examples" / "mastodon-export.zip"
    accounts = (
        '[[accounts]]\nid = "mke-dpw-archive"\nplatform = "mastodon_export"\n'
        'handle = "mkedpw@mastodon.example"\ndepartment = "Department of Public Works"\n'
        f'series = "social-media"\narchive = {toml_str(str(archive))}\n'
    )
    ws = make_workspace(tmp_path, catalog_url=catalog_url, accounts=accounts)

    probe = _in_sandbox(program, sys.executable, "-c", _PROBE, ws=ws)
    assert probe.stdout.split("\n")[:3] == ["rwx refused", "netlink refused", "chroot refused"], (
        describe(probe)
    )

    def archiver(*args: str) -> subprocess.CompletedProcess[str]:
        result = _in_sandbox(program, str(ARCHIVER), "--config", str(ws.config), *args, ws=ws)
        assert result.returncode == 0, describe(result)
        return result

    archiver("catalog", "upgrade")
    run = json.loads(archiver("capture", "mke-dpw-archive", "--json").stdout)
    assert run["status"] == "complete" and run["parquet"], run
    report = json.loads(archiver("status", "--json").stdout)
    assert report["counts"]["items"] > 10 and report["counts"]["stored_files"] > 0
    listed = json.loads(archiver("accounts", "--json").stdout)["accounts"]
    assert [a["id"] for a in listed] == ["mke-dpw-archive"] and listed[0]["items"] > 10
