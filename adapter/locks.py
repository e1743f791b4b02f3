"""Host-wide write locks: no two processes or threads of this host send conditional writes of the same
resource key (server + ``Type?identifier=...``) to a FHIR server at the same time.

``fcntl.flock`` on lock files hashed into :data:`STRIPES`, in a directory private to the user
(``TRIALBRIDGE_LOCK_DIR``); or, once :func:`use` installed one, another backend with the same key
normalisation (the sync job's PostgreSQL advisory locks, shared by every host: :func:`lock_id`).
Taken by :mod:`adapter.writes`; why and how: ``docs/design/conditional-writes.md``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from mappings.errors import TrialbridgeError

__all__ = ["LOCK_TIMEOUT", "STRIPES", "Backend", "LockTimeout", "hold", "lock_dir", "lock_id", "normal_key",
           "normal_scope", "stripes", "use"]

#: Number of lock files keys are hashed into.
STRIPES = 1024
#: Seconds to wait for the locks of a request before giving up.
LOCK_TIMEOUT = 120.0
#: Poll interval while waiting (seconds; jittered).
_POLL = 0.02


class LockTimeout(TrialbridgeError):
    """Another writer of the same resources on this host held them longer than the timeout."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Backend(Protocol):
    """Locks shared beyond this host: ``hold(scope, keys, timeout)`` as :func:`hold` does."""

    def hold(self, scope: str, keys: Iterable[str], timeout: float) -> AbstractContextManager[None]: ...


_backend: Backend | None = None


def use(backend: Backend | None) -> Backend | None:
    """Take the locks from ``backend`` from now on (None: this host's lock files); returns the previous."""
    global _backend
    previous, _backend = _backend, backend
    return previous


def lock_id(scope: str, key: str) -> int:
    """A signed 64-bit number for ``key`` within ``scope`` (as :func:`stripes` normalises them)."""
    digest = hashlib.sha256(f"{normal_scope(scope)}\n{normal_key(key)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_dir() -> Path:
    """The lock directory (created, mode 0700; refused when another user owns it)."""
    configured = os.environ.get("TRIALBRIDGE_LOCK_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:  # in the shared temporary directory: ours alone, or refused
        path = Path(tempfile.gettempdir()) / f"trialbridge-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        _check_owner(path)
        path /= "locks"
        path.mkdir(mode=0o700, exist_ok=True)
    _check_owner(path)
    return path


def _check_owner(path: Path) -> None:
    if path.stat().st_uid != os.getuid():
        raise TrialbridgeError(f"lock directory {path} belongs to another user; set TRIALBRIDGE_LOCK_DIR")


def stripes(scope: str, keys: Iterable[str]) -> list[int]:
    """The sorted, distinct stripe numbers of ``keys`` within ``scope`` (e.g. the server's base URL).

    Spellings of one resource key share a stripe (:func:`normal_key`, :func:`normal_scope`)."""
    found = set()
    scope = normal_scope(scope)
    for key in keys:
        digest = hashlib.sha256(f"{scope}\n{normal_key(key)}".encode()).digest()
        found.add(int.from_bytes(digest[:4], "big") % STRIPES)
    return sorted(found)


def normal_scope(scope: str) -> str:
    """A server's base URL with its scheme and host in lower case and no trailing slash."""
    parts = urlsplit(scope.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def normal_key(key: str) -> str:
    """``Type?query`` with its parameters percent-decoded and in sorted order: ``identifier=s%7Cx``
    and ``identifier=s|x`` name the same resource, so their writers must wait for each other."""
    path, _, query = key.strip().lstrip("/").partition("?")
    params = sorted(unquote(param) for param in query.split("&") if param)
    return f"{unquote(path)}?{'&'.join(params)}" if query else unquote(path)


@contextlib.contextmanager
def hold(scope: str, keys: Iterable[str], timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the locks of ``keys`` within ``scope`` for the ``with`` block; :class:`LockTimeout` when
    they cannot all be had within ``timeout`` seconds (nothing is held then)."""
    if _backend is not None:
        with _backend.hold(scope, list(keys), timeout):
            yield
        return
    numbers = stripes(scope, keys)
    if not numbers:
        yield
        return
    directory = lock_dir()
    deadline = time.monotonic() + timeout
    with contextlib.ExitStack() as held:
        for number in numbers:
            fd = os.open(directory / f"{number:04d}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            held.callback(os.close, fd)
            _acquire(fd, deadline, timeout)
            held.callback(fcntl.flock, fd, fcntl.LOCK_UN)
        yield


def _acquire(fd: int, deadline: float, timeout: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"another push of the same resources on this host has been running for over {timeout:g}s; "
                "retry later"
            )
        time.sleep(_POLL * (0.5 + random.random()))
