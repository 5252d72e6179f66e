"""Filesystem steps the local backend builds its durability on; links are never followed."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# Errors by which a filesystem says it cannot hard-link (FAT, some network mounts).
_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def regular_file_size(path: Path) -> int | None:
    """The size of the regular file at ``path``; None if there is none (links not followed)."""
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def read_nofollow(path: Path) -> bytes:
    """The whole file at ``path``; ``OSError`` (ELOOP) if it is a symbolic link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def fsync_dir(directory: Path) -> None:
    """Flush ``directory``'s entries, so a rename or unlink in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_no_replace(tmp: Path, dest: Path) -> None:
    """Give ``tmp`` the name ``dest``; ``FileExistsError`` if ``dest`` exists in any form.

    Callers hold the store's lock: only then is the fallback for filesystems without hard
    links (check, then rename) free of races.
    """
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARDLINKS:
            raise
        if dest.exists() or dest.is_symlink():
            raise FileExistsError(errno.EEXIST, "already exists", str(dest)) from None
        tmp.rename(dest)


def prune(directory: Path, stop: Path) -> None:
    """Remove ``directory`` and its parents below ``stop`` while they are empty."""
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (or already gone): keep it
        fsync_dir(directory.parent)
        directory = directory.parent
