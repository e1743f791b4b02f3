"""Every error the service answers is a FHIR OperationOutcome with the right status; never HTML
and never a traceback.  This module is the one place that turns exceptions into answers."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from adapter.errors import (
    ConfigError,
    FhirClientError,
    FhirConnectionError,
    FhirHttpError,
    NotFound,
    OutcomeUnknown,
    VersionMismatch,
)
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


def fhir_response(body: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with the FHIR media type (decimals written exactly)."""
    return Response(fhirjson.dumps(body), status=status, mimetype=FHIR_JSON, headers=headers)


def outcome_response(status: int, diagnostics: str, **kwargs) -> Response:
    return fhir_response(operation_outcome(status, diagnostics, **kwargs), status)


def _status_for_upstream(exc: FhirClientError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, FhirHttpError) and exc.status is not None and 400 <= exc.status < 500:
        return 422  # the EHR server refused what we sent: the request cannot be processed as is
    if isinstance(exc, FhirConnectionError) and "timed out" in str(exc).lower():
        return 504
    if isinstance(exc, OutcomeUnknown):
        return 504
    return 502


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(RequestError)
    def _request_error(exc: RequestError) -> Response:
        return outcome_response(exc.status, str(exc), expression=exc.parameter)

    @app.errorhandler(InputError)
    def _input_error(exc: InputError) -> Response:
        return outcome_response(400, str(exc), expression=exc.field)

    @app.errorhandler(MappingError)
    def _mapping_error(exc: MappingError) -> Response:
        return outcome_response(422, str(exc))

    @app.errorhandler(VersionMismatch)
    def _version_mismatch(exc: VersionMismatch) -> Response:
        return outcome_response(502, str(exc), code="not-supported")

    @app.errorhandler(FhirClientError)
    def _upstream_error(exc: FhirClientError) -> Response:
        status = _status_for_upstream(exc)
        log.warning("upstream error %s: %s", status, type(exc).__name__)
        body = with_upstream(operation_outcome(status, str(exc)), exc.operation_outcome)
        return fhir_response(body, status)

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
