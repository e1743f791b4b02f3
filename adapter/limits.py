"""Bounded reads of a FHIR server's answers: a total deadline and a byte cap per call.

:func:`read_body` reads a streamed answer in chunks (at most one socket read each), checking the
clock and the byte count after each: :class:`PastDeadline`, :class:`OverCap`.  While the status
line and headers arrive no chunk loop runs, so :func:`mount` gives a session connections that
shut their socket down when the deadline set by :func:`deadline_scope` (for the calling thread)
passes: a server dripping its headers is cut too.  The client turns both into its errors.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["READ_CHUNK", "OverCap", "PastDeadline", "deadline_scope", "iter_body", "mount", "read_body"]

#: Bytes asked of the socket at a time (a read returns what has arrived, up to this).
READ_CHUNK = 64 * 1024
_local = threading.local()


class PastDeadline(Exception):
    """The answer was not complete when the deadline passed."""


class OverCap(Exception):
    """The answer is larger than the byte cap."""


@contextmanager
def deadline_scope(deadline: float) -> Iterator[None]:
    """Connections of a :func:`mount`-ed session opened in this thread stop at ``deadline``
    (``time.monotonic()``) while waiting for the status line and headers."""
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = None


def read_body(response: requests.Response, deadline: float, cap: int) -> bytes:
    """The whole decoded body of a ``stream=True`` response, within ``deadline`` and ``cap``."""
    return b"".join(iter_body(response, deadline, cap))


def iter_body(response: requests.Response, deadline: float, cap: int) -> Iterator[bytes]:
    """The decoded body of a ``stream=True`` response chunk by chunk, within ``deadline`` and ``cap``
    (checked after every chunk): for answers too large to hold, e.g. Bulk Data files."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise OverCap
    size = 0
    while chunk := _read_chunk(response):
        size += len(chunk)
        if size > cap:
            raise OverCap
        if time.monotonic() > deadline:
            raise PastDeadline
        yield chunk


def _read_chunk(response: requests.Response) -> bytes:
    """What has arrived: urllib3's errors as the ``requests`` ones the client classifies."""
    try:
        return response.raw.read1(READ_CHUNK, decode_content=True)
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from None
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from None


def mount(session: requests.Session) -> None:
    """Give ``session`` connections that honour :func:`deadline_scope` while reading headers."""
    adapter = _DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class _Watchdog:
    """Mixin for urllib3 connections: a timer shuts the socket down at the thread's deadline."""

    sock: socket.socket | None

    def getresponse(self) -> Any:
        deadline = getattr(_local, "deadline", None)
        sock = self.sock
        if deadline is None or sock is None:
            return super().getresponse()  # type: ignore[misc]
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), _shutdown, (sock,))
        timer.daemon = True
        timer.start()
        try:
            return super().getresponse()  # type: ignore[misc]
        finally:
            timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _HTTPConnection(_Watchdog, HTTPConnection):
    pass


class _HTTPSConnection(_Watchdog, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
