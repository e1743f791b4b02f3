"""Every error the service answers is a FHIR OperationOutcome with the right status; never HTML
and never a traceback.  This module is the one place that turns exceptions into answers."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from adapter.errors import (
    AmbiguousStudy,
    ConfigError,
    FhirClientError,
    FhirHttpError,
    FhirTimeout,
    NotFound,
    OutcomeUnknown,
    VersionMismatch,
    refuses_content,
)
from adapter.locks import LockTimeout
from adapter.registry import RegistryError, UnknownStudy
from mappings import fhirjson
from mappings.errors import InputError, MappingError, TrialbridgeError

from .outcome import operation_outcome, with_upstream

log = logging.getLogger("trialbridge.service")

FHIR_JSON = "application/fhir+json"


class RequestError(TrialbridgeError):
    """A request the service refuses (bad parameter, unknown server name...): answered 4xx."""

    def __init__(self, message: str, status: int = 400, parameter: str | None = None) -> None:
        self.status = status
        self.parameter = parameter
        super().__init__(message)


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with the FHIR media type (decimals written exactly)."""
    return Response(fhirjson.dumps(body), status=status, mimetype=FHIR_JSON, headers=headers)


def outcome_response(status: int, diagnostics: str, **kwargs: Any) -> Response:
    return fhir_response(operation_outcome(status, diagnostics, **kwargs), status)


#: The FHIR server's 4xx answers (after the client's retries) that are not a verdict on the content,
#: and what the service answers its caller instead of 422.
UPSTREAM_4XX: dict[int, int] = {
    401: 502,  # the service's own credentials for the FHIR server failed: not the caller's fault
    403: 502,
    408: 504,  # the FHIR server timed out
    409: 409,  # a concurrent writer of the same resources won (after our retries): try again
    412: 409,
    423: 503,  # locked, too early, rate limited: try again later
    425: 503,
    429: 503,
}


def _status_for_upstream(exc: FhirClientError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, FhirHttpError) and exc.status in UPSTREAM_4XX:
        return UPSTREAM_4XX[exc.status]
    if refuses_content(exc):
        return 422  # the EHR server refused what we sent: the request cannot be processed as is
    if isinstance(exc, FhirTimeout | OutcomeUnknown):
        return 504
    return 502


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""
    # Routing redirects (``//studies`` -> ``/studies``) bypass the error handlers and answer HTML;
    # no route of this API needs one, so such a path is simply not found.
    app.url_map.merge_slashes = False

    @app.before_request
    def _query_is_utf8() -> Response | None:
        # werkzeug decodes the raw query string strictly when ``request.args`` is first read; raw
        # (not percent-encoded) non-UTF-8 bytes would raise there, inside a view, as a 500.
        try:
            request.query_string.decode("utf-8")
        except UnicodeDecodeError as exc:
            return outcome_response(400, f"the query string is not valid UTF-8 (byte {exc.start})")
        return None

    @app.errorhandler(RequestError)
    def _request_error(exc: RequestError) -> Response:
        return outcome_response(exc.status, str(exc), expression=exc.parameter)

    @app.errorhandler(InputError)
    def _input_error(exc: InputError) -> Response:
        return outcome_response(400, str(exc), expression=exc.field)

    @app.errorhandler(UnknownStudy)
    def _unknown_study(exc: UnknownStudy) -> Response:
        return outcome_response(404, str(exc), code="not-found", expression=exc.field)

    @app.errorhandler(RegistryError)
    def _registry_error(exc: RegistryError) -> Response:
        log.warning("registry error: %s", exc)
        return outcome_response(502, str(exc), code="transient")

    @app.errorhandler(MappingError)
    def _mapping_error(exc: MappingError) -> Response:
        return outcome_response(422, str(exc))

    @app.errorhandler(AmbiguousStudy)
    def _ambiguous_study(exc: AmbiguousStudy) -> Response:
        # Permanent (unlike 409 ``conflict``, a race that resolves): sending again never helps.
        return outcome_response(409, str(exc), code="multiple-matches")

    @app.errorhandler(VersionMismatch)
    def _version_mismatch(exc: VersionMismatch) -> Response:
        return outcome_response(502, str(exc), code="not-supported")

    @app.errorhandler(FhirClientError)
    def _upstream_error(exc: FhirClientError) -> Response:
        status = _status_for_upstream(exc)
        log.warning("upstream error %s: %s", status, type(exc).__name__)
        body = with_upstream(operation_outcome(status, str(exc)), exc.operation_outcome)
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(max(1, round(retry_after)))} if status == 503 and retry_after else None
        return fhir_response(body, status, headers)

    @app.errorhandler(LockTimeout)
    def _lock_timeout(exc: LockTimeout) -> Response:
        response = outcome_response(503, str(exc), code="lock-error")
        response.headers["Retry-After"] = str(round(exc.retry_after))
        return response

    @app.errorhandler(ConfigError)
    def _config_error(exc: ConfigError) -> Response:
        log.error("configuration error: %s", exc)
        return outcome_response(500, "the service is misconfigured; see its log")

    @app.errorhandler(HTTPException)
    def _http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        return outcome_response(status, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return outcome_response(500, "internal error; the service log has the details")
