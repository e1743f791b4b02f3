"""The adapter's exceptions: every failure talking to a FHIR server, as one tree.

    TrialbridgeError                       (mappings.errors: the project's one base)
     ├── ConfigError                       bad or missing configuration, literal secret in a file
     └── FhirClientError                   status, operation_outcome, method, url
          ├── FhirHttpError                the server answered 3xx/4xx/5xx
          │    ├── Unauthorized            401, 403
          │    ├── NotFound                404, 410
          │    ├── PreconditionFailed      412 (and 409 on a request carrying If-Match: HAPI's answer)
          │    ├── TooManyRequests         429 (``retry_after`` in seconds when the server said)
          │    └── ServerError             5xx
          ├── FhirConnectionError          network failure, timeout, TLS failure
          │    └── FhirTimeout             no answer in time (connect or read timeout)
          ├── OutcomeUnknown               a write that may or may not have happened; NOT retried
          ├── ProtocolError                an answer that breaks the protocol (body not JSON...)
          │    ├── ExportRefused           no Bulk Data ``$export`` offered, or its kick-off refused
          │    ├── PagingError             a ``next`` link that loops, leaves the server, never ends
          │    └── MalformedResponse       a body that cannot be read: bad JSON, wrong shape, too large
          ├── AmbiguousStudy               several studies carry one NCT id: permanent, never retried
          ├── VersionMismatch              the server's fhirVersion is not the configured one
          └── AuthError                    the token endpoint refused us or answered nonsense

``OutcomeUnknown`` is deliberately not a :class:`FhirConnectionError`: code that catches connection
errors to try again must not resend a non-idempotent request that may already have been applied.

Messages carry the method, the URL without its query string, the status and a one-line summary of
the OperationOutcome's issues; never a request body, a header or a query string (they carry patient
identifiers and secrets).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mappings.errors import TrialbridgeError

__all__ = [
    "AmbiguousStudy",
    "AuthError",
    "ConfigError",
    "ExportRefused",
    "FhirClientError",
    "FhirConnectionError",
    "FhirHttpError",
    "FhirTimeout",
    "MalformedResponse",
    "NotFound",
    "OutcomeUnknown",
    "PagingError",
    "PreconditionFailed",
    "ProtocolError",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "VersionMismatch",
    "summarize_outcome",
    "strip_query",
]

_MAX_ISSUES = 5
_MAX_DIAGNOSTICS = 200


class ConfigError(TrialbridgeError):
    """The configuration is invalid, incomplete, or holds a literal secret."""


class FhirClientError(TrialbridgeError):
    """Base of every error raised while talking to a FHIR server (or its token endpoint)."""

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        operation_outcome: dict[str, Any] | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.operation_outcome = operation_outcome
        self.method = method
        self.url = strip_query(url) if url else None
        self.message = _compose(message, status, operation_outcome, method, self.url)
        super().__init__(self.message)


class FhirHttpError(FhirClientError):
    """The server answered with an error status (``status`` says which)."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)

    @classmethod
    def for_status(cls, message: str = "", *, status: int, **kwargs: Any) -> FhirHttpError:
        """An error of the most specific class for ``status``."""
        return _class_for_status(status)(message, status=status, **kwargs)


class Unauthorized(FhirHttpError):
    """401 or 403: missing, expired or insufficient credentials."""


class NotFound(FhirHttpError):
    """404 or 410: no such resource (410: it was deleted)."""


class PreconditionFailed(FhirHttpError):
    """412 (or 409 answering If-Match): the resource changed since the version we hold."""


class TooManyRequests(FhirHttpError):
    """429: rate limited; ``retry_after`` holds the server's requested wait in seconds, if any."""


class ServerError(FhirHttpError):
    """5xx: the server failed."""


class FhirConnectionError(FhirClientError):
    """No usable answer: connection refused or dropped, timeout, TLS failure."""


class FhirTimeout(FhirConnectionError):
    """The server did not answer in time (connect or read timeout); still a connection error."""


class OutcomeUnknown(FhirClientError):
    """A non-idempotent, non-conditional write may have reached the server; it was not retried."""


class ProtocolError(FhirClientError):
    """The server's answer breaks the protocol (not JSON, not the expected resource, a redirect)."""


class ExportRefused(ProtocolError):
    """The server offers no Bulk Data ``$export`` or refused its kick-off (a 4xx, 501, or no 202 with a
    status URL): the caller may read the same data with paged searches (adapter/bulk.py)."""


class PagingError(ProtocolError):
    """Search paging stopped: a ``next`` link looped, left the server, or pages never ended."""


class MalformedResponse(ProtocolError):
    """The answer cannot be read: not JSON (or not UTF-8), nested too deep, the wrong shape, over
    ``max_response_bytes``."""


class AmbiguousStudy(FhirClientError):
    """Several ResearchStudy resources on the server carry one NCT id (``ids``: theirs, sorted).

    Permanent until someone on the server merges or retires the duplicates: sending again never helps.
    """

    def __init__(self, nct: str, ids: list[str], *, server: str | None = None) -> None:
        self.nct = nct
        self.ids = sorted(ids)
        where = f" on server {server}" if server else ""
        super().__init__(f"{len(self.ids)} ResearchStudy resources carry identifier {nct}{where} "
                         f"({', '.join(f'ResearchStudy/{i}' for i in self.ids)}); expected exactly one: "
                         "merge or retire the duplicates on the server")


class VersionMismatch(FhirClientError):
    """The server's CapabilityStatement.fhirVersion is not the FHIR version configured for it."""


class AuthError(FhirClientError):
    """Obtaining an access token failed (token endpoint error, unusable answer)."""


_STATUS_CLASSES: dict[int, type[FhirHttpError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    410: NotFound,
    412: PreconditionFailed,
    429: TooManyRequests,
}


#: 4xx answers that say "not now" (timeout, conflict with a concurrent writer, locked, too early,
#: rate limited), not "not this content": the same request may succeed later.
RETRY_LATER_STATUSES = frozenset({408, 409, 423, 425, 429})


def refuses_content(exc: BaseException) -> bool:
    """Is ``exc`` the server's verdict on what was sent: a 4xx that is neither "not now"
    (:data:`RETRY_LATER_STATUSES`) nor "not you" (401/403, :class:`Unauthorized`)?"""
    return (isinstance(exc, FhirHttpError) and not isinstance(exc, Unauthorized)
            and exc.status is not None and 400 <= exc.status < 500
            and exc.status not in RETRY_LATER_STATUSES)


def _class_for_status(status: int) -> type[FhirHttpError]:
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    return ServerError if status >= 500 else FhirHttpError


def strip_query(url: str) -> str:
    """``url`` without query string, fragment or user info: safe to log and to show."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def summarize_outcome(outcome: dict[str, Any] | None) -> str:
    """One line from an OperationOutcome: ``severity/code: diagnostics`` per issue, ``; `` joined."""
    if not isinstance(outcome, dict):
        return ""
    issues = [i for i in outcome.get("issue") or [] if isinstance(i, dict)]
    parts = [_summarize_issue(issue) for issue in issues[:_MAX_ISSUES]]
    if len(issues) > _MAX_ISSUES:
        parts.append(f"(+{len(issues) - _MAX_ISSUES} more issues)")
    return "; ".join(parts)


def _summarize_issue(issue: dict[str, Any]) -> str:
    head = f"{issue.get('severity', '?')}/{issue.get('code', '?')}"
    text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
    text = " ".join(str(text).split())
    if len(text) > _MAX_DIAGNOSTICS:
        text = text[: _MAX_DIAGNOSTICS - 1] + "…"
    return f"{head}: {text}" if text else head


def _compose(
    message: str,
    status: int | None,
    outcome: dict[str, Any] | None,
    method: str | None,
    url: str | None,
) -> str:
    head = " ".join(part for part in (method, url) if part)
    if status is not None:
        head = f"{head} -> {status}" if head else f"HTTP {status}"
    body = "; ".join(part for part in (message, summarize_outcome(outcome)) if part)
    return f"{head}: {body}" if head and body else head or body
