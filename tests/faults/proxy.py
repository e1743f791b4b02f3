"""A fault-injecting HTTP/1.1 proxy on the loopback interface, for trialbridge's reliability tests.

``FaultProxy(upstream)`` listens on ``127.0.0.1:<free port>`` and forwards every request to the
upstream server (the local HAPI FHIR server), except that a seeded random schedule picks a share of
the requests (``rate``, default 20 %) and breaks each in one of six ways (:class:`FaultKind`):

=====================  =========================================================  ===============
kind                   what the client sees                                       reached HAPI?
=====================  =========================================================  ===============
``http_500``           ``500`` with an OperationOutcome                           no
``http_503``           ``503`` with an OperationOutcome                           no
``http_429``           ``429`` with ``Retry-After: 1``                            no
``slow``               nothing for ``slow_seconds`` (> the client's read          yes: HAPI did
                       timeout), then the connection closes                       the write
``reset_mid_response`` status line, headers and part of the body, then a TCP RST  yes
                       (``SO_LINGER`` 0)
``drop_after_forward`` the connection closes without an answer; the request was   yes
                       forwarded in full.  Half of them (seeded) close at once,
                       while HAPI is still working on it ("early": the write
                       lands after the client gave up and races with its retry),
                       the other half once HAPI has answered ("late")
=====================  =========================================================  ===============

The schedule is a :class:`random.Random` seeded by ``seed``: request *n* (in arrival order) is a
fault with probability ``rate``; the kind comes from a shuffled deck holding each kind once, so
after *k* faults every kind has been injected ``k // len(kinds)`` or one more times.  Same seed and
same arrival order, same faults.

Everything is counted (:meth:`FaultProxy.stats`): requests read, requests forwarded to HAPI,
complete answers relayed, faults by kind, early drops.  The proxy is bounded: at most
``max_connections`` connections are served at once (one thread each; further connections wait for
a slot, then are refused), request bodies above ``max_body`` are refused with 413, and it stops
itself after ``max_requests`` requests or ``max_seconds`` seconds (``expired`` in the stats), so a
runaway test cannot keep it alive.  It binds to 127.0.0.1 only and forwards only to a loopback
upstream.  Standard library only; use it as a context manager::

    with FaultProxy("http://127.0.0.1:18080/fhir", seed=7, slow_seconds=3) as proxy:
        client = FhirClient(ServerConfig.from_url(proxy.url, timeout=(2, 2)))
        ...
        print(proxy.stats().faults)

Why not toxiproxy: its toxics work on TCP streams (latency, bandwidth, reset after N bytes, slow
close); they cannot answer ``429`` with ``Retry-After`` or ``503``, and they cannot drop a
connection *after* the request was forwarded, which is the fault that matters most for replay
safety.  That needs an HTTP-aware proxy anyway, and a small one in Python keeps CI free of a Go
binary and a second process to manage.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import ipaddress
import json
import random
import socket
import struct
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ALL_KINDS", "FaultKind", "FaultProxy", "FaultStats"]

LOOPBACK = "127.0.0.1"


class FaultKind(enum.StrEnum):
    """The ways the proxy breaks a request (see the module docstring)."""

    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    SLOW = "slow"
    RESET = "reset_mid_response"
    DROP = "drop_after_forward"


ALL_KINDS: tuple[FaultKind, ...] = tuple(FaultKind)

#: Headers that belong to one connection and are not forwarded (RFC 9110 section 7.6.1), plus the
#: framing headers the proxy sets itself and Accept-Encoding (bodies stay uncompressed, so "part of
#: the body" is part of the resource bytes).
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
    }
)
_STATUS_TEXT = {500: "Internal Server Error", 503: "Service Unavailable", 429: "Too Many Requests"}


@dataclass(frozen=True)
class FaultStats:
    """A snapshot of the proxy's counters."""

    #: Requests read from clients (faulted or not).
    requests: int = 0
    #: Requests sent on to the upstream server (clean ones and slow/reset/drop faults).
    forwarded: int = 0
    #: Complete upstream answers relayed to the client.
    answered: int = 0
    #: Faults injected, by :class:`FaultKind` value.
    faults: dict[str, int] = field(default_factory=dict)
    #: ``drop_after_forward`` faults that closed before the upstream answered.
    early_drops: int = 0
    #: Requests the upstream could not be asked or did not answer (the client got a 502).
    upstream_errors: int = 0
    #: Connections refused because all ``max_connections`` slots stayed busy.
    refused: int = 0
    #: True once ``max_requests`` or ``max_seconds`` ran out (the proxy stops itself).
    expired: bool = False

    @property
    def total_faults(self) -> int:
        """Faults of every kind."""
        return sum(self.faults.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a report."""
        return {
            "requests": self.requests,
            "forwarded": self.forwarded,
            "answered": self.answered,
            "faults": dict(sorted(self.faults.items())),
            "total_faults": self.total_faults,
            "early_drops": self.early_drops,
            "upstream_errors": self.upstream_errors,
            "refused": self.refused,
            "expired": self.expired,
        }


@dataclass(frozen=True)
class _Answer:
    """An upstream response, read in full."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _Schedule:
    """Seeded choice of the fault (if any) for each request, in arrival order; not thread-safe."""

    def __init__(self, rate: float, kinds: tuple[FaultKind, ...], seed: int) -> None:
        self._rate = rate
        self._kinds = kinds
        self._random = random.Random(seed)
        self._deck: list[FaultKind] = []

    def next(self) -> tuple[FaultKind | None, bool]:
        """The fault for the next request (None: forward it cleanly) and, for a drop, whether early."""
        if self._random.random() >= self._rate:
            return None, False
        if not self._deck:
            self._deck = list(self._kinds)
            self._random.shuffle(self._deck)
        kind = self._deck.pop()
        return kind, kind is FaultKind.DROP and self._random.random() < 0.5


class FaultProxy:
    """A loopback HTTP proxy in front of ``upstream`` that injects faults (see the module docstring)."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.2,
        seed: int = 0,
        kinds: tuple[FaultKind, ...] = ALL_KINDS,
        slow_seconds: float = 3.0,
        retry_after: int = 1,
        max_connections: int = 32,
        max_requests: int = 100_000,
        max_seconds: float = 3600.0,
        max_body: int = 64 * 1024 * 1024,
        upstream_timeout: float = 120.0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not _is_loopback(parts.hostname):
            raise ValueError(f"upstream must be a plain http URL on the loopback interface: {upstream!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate!r}")
        if rate > 0 and not kinds:
            raise ValueError("a positive fault rate needs at least one fault kind")
        positive = {
            "slow_seconds": slow_seconds,
            "max_connections": max_connections,
            "max_requests": max_requests,
            "max_seconds": max_seconds,
            "max_body": max_body,
            "upstream_timeout": upstream_timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.path = parts.path.rstrip("/")
        self.slow_seconds = float(slow_seconds)
        self.retry_after = int(retry_after)
        self.max_requests = int(max_requests)
        self.max_seconds = float(max_seconds)
        self.max_body = int(max_body)
        self.upstream_timeout = float(upstream_timeout)
        self._schedule = _Schedule(rate, tuple(kinds), seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._expired = False
        self._stop_requested = False
        self._stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._live: set[socket.socket] = set()
        self._idle = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind a free loopback port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = _Server(self)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.max_seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop serving, close every live connection, wait (at most ``grace`` s) for handlers to end."""
        self._stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            for sock in self._live:
                _quietly(sock.shutdown, socket.SHUT_RDWR)
            self._idle.wait_for(lambda: not self._live, timeout=grace)
        if self._thread is not None:
            self._thread.join(grace)

    @property
    def port(self) -> int:
        """The port the proxy listens on (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the proxy was never started")
        return self._port

    @property
    def url(self) -> str:
        """The upstream base URL as seen through the proxy: same path, the proxy's port."""
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    def stats(self) -> FaultStats:
        """A snapshot of the counters.  A request's counts are final once its handler is done, which
        can be just after the client read its answer: after :meth:`stop` the totals are exact."""
        with self._lock:
            return FaultStats(
                requests=self._counts["requests"],
                forwarded=self._counts["forwarded"],
                answered=self._counts["answered"],
                faults={kind.value: self._faults[kind.value] for kind in FaultKind},
                early_drops=self._counts["early_drops"],
                upstream_errors=self._counts["upstream_errors"],
                refused=self._counts["refused"],
                expired=self._expired,
            )

    # -- used by the server and its handlers -------------------------------------------------

    def _expire(self) -> None:
        """The budget (time or requests) is spent: stop, once, from a thread of its own (stop()
        waits for the serving thread and the handlers, so neither may call it)."""
        with self._lock:
            self._expired = True
            if self._stop_requested:
                return
            self._stop_requested = True
        threading.Thread(target=self.stop, name="fault-proxy-stop", daemon=True).start()

    def _next_fault(self) -> tuple[FaultKind | None, bool, bool]:
        """(fault, early drop, budget exhausted) for a request just read."""
        with self._lock:
            self._counts["requests"] += 1
            if self._counts["requests"] > self.max_requests:
                self._expired = True
                return None, False, True
            kind, early = self._schedule.next()
            if kind is not None:
                self._faults[kind.value] += 1
                self._counts["early_drops"] += early
            return kind, early, False

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _enter(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.add(sock)

    def _leave(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)
            self._idle.notify_all()

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` unless the proxy stops first."""
        self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` at once, on 127.0.0.1 only."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__((LOOPBACK, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # A slot per connection; waiting here holds back accept(), the natural back-pressure.
        if not self.proxy._slots.acquire(timeout=30):
            self.proxy._count("refused")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.proxy._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self.proxy._enter(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.proxy._leave(request)
            self.proxy._slots.release()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return _is_loopback(str(client_address[0]))

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is expected here; anything else is printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time (keep-alive), forwards it or breaks it as the schedule says."""

    protocol_version = "HTTP/1.1"
    server: _Server
    #: Idle keep-alive connections end after this many seconds.
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the counters are the record."""

    def do_GET(self) -> None:
        """Every method is proxied the same way."""
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- one request ---------------------------------------------------------------------------

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        if body is None:
            return
        kind, early, exhausted = proxy._next_fault()
        if exhausted:
            self._synthetic(503, "fault proxy budget exhausted", close=True)
            proxy._expire()  # after the answer: stop() cuts every live connection
        elif kind in (FaultKind.HTTP_500, FaultKind.HTTP_503, FaultKind.HTTP_429):
            self._synthetic(int(kind.value[-3:]), f"injected fault {kind.value}")
        else:
            self._forward_with(kind, early, body)

    def _forward_with(self, kind: FaultKind | None, early: bool, body: bytes) -> None:
        proxy = self.server.proxy
        try:
            upstream = self._send_upstream(body)
            if kind is FaultKind.DROP and early:
                self._abort(reset=False)  # HAPI is still working on it
            answer = self._read_upstream(upstream)
        except (OSError, http.client.HTTPException):
            proxy._count("upstream_errors")
            if not self.close_connection:
                self._synthetic(502, "fault proxy: the upstream server did not answer", close=True)
            return
        if kind is None:
            self._relay(answer)
            proxy._count("answered")
        elif kind is FaultKind.SLOW:
            proxy._wait(proxy.slow_seconds)
            self._abort(reset=False)
        elif kind is FaultKind.RESET:
            self._relay(answer, partial=True)
            self._abort(reset=True)
        elif kind is FaultKind.DROP and not early:
            self._abort(reset=False)

    def _read_body(self) -> bytes | None:
        """The request body; None after answering 411/413 for a body we will not read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._synthetic(411, "fault proxy: chunked request bodies are not supported", close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= self.server.proxy.max_body:
            self._synthetic(413, "fault proxy: request body too large or bad Content-Length", close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _send_upstream(self, body: bytes) -> http.client.HTTPConnection:
        proxy = self.server.proxy
        connection = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout
        )
        # Host is kept: HAPI builds Location and paging links from it, so they point at the proxy.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
        except BaseException:
            connection.close()
            raise
        proxy._count("forwarded")
        return connection

    def _read_upstream(self, connection: http.client.HTTPConnection) -> _Answer:
        try:
            response = connection.getresponse()
            body = response.read()
            return _Answer(response.status, response.reason, response.getheaders(), body)
        finally:
            connection.close()

    # -- answers -------------------------------------------------------------------------------

    def _relay(self, answer: _Answer, *, partial: bool = False) -> None:
        """Send ``answer`` (with ``partial``: headers and only the first half of the body)."""
        self.send_response_only(answer.status, answer.reason)
        for name, value in answer.headers:
            if name.lower() not in _NOT_FORWARDED:
                self.send_header(name, value)
        head = self.command == "HEAD"
        length = dict((k.lower(), v) for k, v in answer.headers).get("content-length", "0")
        self.send_header("Content-Length", length if head else str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(answer.body[: len(answer.body) // 2] if partial else answer.body)
            self.wfile.flush()

    def _synthetic(self, status: int, text: str, *, close: bool = False) -> None:
        """An error answer of the proxy's own (never forwarded): an OperationOutcome."""
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "transient", "diagnostics": text}],
        }
        body = json.dumps(outcome).encode("utf-8")
        self.send_response_only(status, _STATUS_TEXT.get(status))
        self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if status == 429:
            self.send_header("Retry-After", str(self.server.proxy.retry_after))
        if close:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _abort(self, *, reset: bool) -> None:
        """Close the client connection now: a TCP RST (``SO_LINGER`` 0) with ``reset``, else a FIN."""
        self.close_connection = True
        sock = self.connection
        if reset:
            _quietly(sock.setsockopt, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            _quietly(sock.shutdown, socket.SHUT_RDWR)
        # The buffered reader holds a reference to the socket: close it first so close() is real.
        _quietly(self.rfile.close)
        _quietly(sock.close)


def _is_loopback(host: str) -> bool:
    """True for a loopback literal (127.0.0.0/8, ::1) or a name that resolves only to loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _quietly(function: Any, *args: Any) -> None:
    """Call ``function``; a socket already closed by the peer is not an error here."""
    with contextlib.suppress(OSError):
        function(*args)
