"""Small real HTTP listeners on 127.0.0.1 for the hostile-server tests: each records what reaches it
(connections, request lines, headers) and answers with a function the test gives."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Respond = Callable[[BaseHTTPRequestHandler], None]


class Listener:
    """A listener: ``url`` is its ``/fhir`` base; ``received`` the (method, path, headers) it read."""

    def __init__(self, respond: Respond | None = None) -> None:
        self.respond = respond or (lambda handler: send_json(handler, b"{}"))
        self.received: list[tuple[str, str, dict[str, str]]] = []
        self.connections = 0
        self.stop = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                listener.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                listener.received.append((self.command, self.path, dict(self.headers)))
                listener.respond(self)

            do_POST = do_PUT = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/fhir"

    @property
    def authorizations(self) -> list[str]:
        """Every Authorization header that reached this listener."""
        return [h[k] for _, _, h in self.received for k in h if k.lower() == "authorization"]


@contextmanager
def listening(respond: Respond | None = None) -> Iterator[Listener]:
    """A started :class:`Listener`, shut down (and its dripping answers stopped) afterwards."""
    listener = Listener(respond)
    thread = threading.Thread(target=listener.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.stop.set()
        listener.server.shutdown()
        listener.server.server_close()


def send_json(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200) -> None:
    """Answer ``body`` as FHIR JSON with a Content-Length."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/fhir+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def fhir_server(body: bytes) -> Respond:
    """Answer ``/metadata`` with an R4 CapabilityStatement and anything else with ``body``."""
    capability = b'{"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}'
    return lambda handler: send_json(handler, capability if "/metadata" in handler.path else body)


def searchset(next_url: str | None = None) -> bytes:
    """A searchset Bundle with one ResearchStudy and, if given, a ``next`` link."""
    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    bundle["entry"] = [{"resource": {"resourceType": "ResearchStudy", "id": "s1"}}]
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return json.dumps(bundle).encode()
