"""Files and directories that hold patient data are the user's alone: files 0600, directories 0700.

Used for every file trialbridge writes patient data to: the sync state database (and SQLite's
``-wal``/``-shm`` files, which SQLite creates with the database file's mode), the pull NDJSON of the
sync job, and the ``--out`` files of the command line (``pull``, ``observations``, ``map``, ...).
The mode is set explicitly after creation, so it holds whatever the umask (a permissive umask such as
0 cannot widen it).  An existing regular file that trialbridge rewrites is narrowed to 0600 too; an
existing directory, or a device such as ``/dev/stdout`` given as ``--out``, is left as it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TextIO

__all__ = ["FILE_MODE", "DIR_MODE", "ensure_private_file", "open_private", "private_dir"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory; each level created here is made 0700 (existing ones are left alone)."""
    path = Path(path)
    missing = []
    for level in (path, *path.parents):
        if level.exists():
            break
        missing.append(level)
    for level in reversed(missing):
        try:
            level.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created meanwhile by another process: left as it is
            continue
        os.chmod(level, DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return path


def _private_fd(path: str | os.PathLike[str], flags: int) -> int:
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private_file(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty when missing; either way a regular file there is made 0600."""
    os.close(_private_fd(path, os.O_RDWR))


def open_private(path: str | os.PathLike[str], *, newline: str | None = None) -> TextIO:
    """``path`` opened for writing text (UTF-8, truncated), created 0600 (see the module docstring)."""
    fd = _private_fd(path, os.O_WRONLY | os.O_TRUNC)
    return os.fdopen(fd, "w", encoding="utf-8", newline=newline)
