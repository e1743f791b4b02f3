"""``POST /studies/{nct}/prescreen?server=NAME``: pre-screen one patient of a configured FHIR server
against the study's eligibility criteria (:mod:`adapter.prescreen`).

Body ``{"patient": "ID"}`` (or ``"Patient/ID"``), optionally ``"asOf": "YYYY-MM-DD"`` (the
evaluation date; default today).  Answers 200 with the verdict JSON whatever the verdict; errors
are OperationOutcomes: a bad body 400, an unknown patient or study 404, a server failure 502/504.
"""

from __future__ import annotations

import datetime
from typing import Any

from flask import Blueprint, Response, request

from adapter.prescreen import check_nct, prescreen

from .body import whole_body
from .errors import RequestError, fhir_response
from .state import state

bp = Blueprint("prescreen", __name__)

JSON_TYPES = frozenset({"application/json", "application/fhir+json"})


def _body() -> dict[str, Any]:
    if request.mimetype not in JSON_TYPES:
        shown = request.mimetype or "(none)"
        raise RequestError(f"unsupported content type {shown!r}; send application/json", status=415)
    whole_body()  # 413 for an oversize body sent without a length (get_json would read it cut short)
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # silent=True only covers ValueError
        raise RequestError("the JSON body is nested too deeply", parameter="patient") from None
    if not isinstance(body, dict):
        raise RequestError('the body must be a JSON object like {"patient": "ID"}', parameter="patient")
    if not isinstance(body.get("patient"), str):
        raise RequestError("'patient' is required: the patient's id on the server (ID or Patient/ID)",
                           parameter="patient")
    unknown = set(body) - {"patient", "asOf"}
    if unknown:
        raise RequestError(f"unknown member(s) {', '.join(sorted(unknown))}; expected patient, asOf",
                           parameter=sorted(unknown)[0])
    return body


def _as_of(body: dict[str, Any]) -> datetime.date | None:
    value = body.get("asOf")
    if value is None:
        return None
    try:
        if isinstance(value, str) and len(value) == 10:
            return datetime.date.fromisoformat(value)
    except ValueError:
        pass
    raise RequestError("'asOf' must be a date YYYY-MM-DD", parameter="asOf")


@bp.post("/studies/<nct>/prescreen")
def post_prescreen(nct: str) -> Response:
    """The verdict for the posted patient (see the module docstring)."""
    check_nct(nct)
    server = state().server(request.args.get("server"))
    body = _body()
    result = prescreen(state().client(server.name), nct, body["patient"], as_of=_as_of(body))
    return fhir_response(result.to_json())
