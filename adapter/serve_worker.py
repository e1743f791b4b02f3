"""The gunicorn worker of ``trialbridge serve``: gevent, and gunicorn's own refusals as OperationOutcomes.

gevent: every connection is a greenlet, so clients that send their headers slowly (slowloris) hold
greenlets, not the worker's few threads, and ``/health`` keeps answering (design:
``docs/design/serve-workers.md``).

A request that gunicorn refuses before the app sees it (a malformed request line, header or chunk, a
header block over ``limit_request_field_size``, a ``SCRIPT_NAME`` header that does not prefix the path,
an unknown ``Transfer-Encoding``) is answered with a FHIR OperationOutcome
(``application/fhir+json``) instead of gunicorn's HTML page, and logged as one fixed line naming the
error class and status -- never the request's text (gunicorn's own line quotes the request line or
header verbatim).  :data:`REFUSALS` is the table: error class -> status, issue type and fixed message.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from gunicorn import util
from gunicorn.http import errors as http
from gunicorn.workers.ggevent import GeventWorker

__all__ = ["INTERNAL", "REFUSALS", "Refusal", "Worker", "refusal"]

class Refusal(NamedTuple):
    """How one kind of error is answered: HTTP status, reason phrase, issue type, fixed diagnostics."""

    status: int
    reason: str
    code: str
    diagnostics: str


#: The app's fault (a header it tried to send), or anything gunicorn raised outside the table.
INTERNAL = Refusal(500, "Internal Server Error", "exception", "internal error")

#: gunicorn's request errors -> how they are answered; the first match wins.
REFUSALS: tuple[tuple[tuple[type[BaseException], ...], Refusal], ...] = (
    ((http.InvalidResponseHeader, http.InvalidResponseHeaderName), INTERNAL),
    ((http.LimitRequestHeaders,),
     Refusal(431, "Request Header Fields Too Large", "too-long", "request headers too large")),
    ((http.LimitRequestLine,), Refusal(414, "URI Too Long", "too-long", "request line too long")),
    ((http.UnsupportedTransferCoding,),
     Refusal(501, "Not Implemented", "not-supported", "unsupported Transfer-Encoding")),
    ((http.ExpectationFailed,), Refusal(417, "Expectation Failed", "not-supported", "unsupported Expect")),
    ((http.ForbiddenProxyRequest,), Refusal(403, "Forbidden", "forbidden", "proxy request refused")),
    ((http.InvalidRequestLine, http.InvalidRequestMethod, http.InvalidHTTPVersion),
     Refusal(400, "Bad Request", "invalid", "malformed request line")),
    ((http.InvalidHeader, http.InvalidHeaderName, http.ObsoleteFolding, http.InvalidSchemeHeaders,
      http.ConfigurationProblem),
     Refusal(400, "Bad Request", "invalid", "malformed or refused request header")),
    ((http.InvalidChunkSize, http.ChunkMissingTerminator, http.InvalidChunkExtension),
     Refusal(400, "Bad Request", "invalid", "malformed chunked body")),
    ((http.ParseException,), Refusal(400, "Bad Request", "invalid", "malformed request")),
)


def refusal(exc: BaseException) -> Refusal:
    """How an error gunicorn raised is answered (:data:`INTERNAL` for anything not in the table)."""
    for classes, answer in REFUSALS:
        if isinstance(exc, classes):
            return answer
    return INTERNAL


def _answer(refused: Refusal) -> bytes:
    from adapter.service.outcome import operation_outcome  # loaded by then: the worker runs the app

    body = json.dumps(operation_outcome(refused.status, refused.diagnostics, code=refused.code)).encode()
    head = (f"HTTP/1.1 {refused.status} {refused.reason}\r\nConnection: close\r\n"
            f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


class Worker(GeventWorker):
    """gunicorn's gevent worker, answering and logging its own refusals as above."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        refused = refusal(exc)
        if refused is INTERNAL:  # not the client's fault; the error's text may still quote the request
            self.log.error("request failed outside the app: %s", type(exc).__name__)
        else:
            name = type(exc).__name__
            self.log.warning("request refused by the HTTP parser: %s (%d)", name, refused.status)
        try:
            util.write_nonblock(client, _answer(refused))
        except Exception:  # the client went away: nothing to answer
            self.log.debug("could not send the error answer")
