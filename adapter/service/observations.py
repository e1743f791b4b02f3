"""``/studies/{nct}/observations``: push lab results from the trial system's CSV export, and pull the
study's outcome labs as a stream (NDJSON or CSV, written as the server's pages arrive).

A pull that fails after its first bytes were sent cannot change its status any more: it ends with an
error line instead (an OperationOutcome in NDJSON, a ``# trialbridge error: ...`` line in CSV), never
silently short.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from flask import Blueprint, Response, request, stream_with_context

from adapter import lab_results, observations
from mappings import fhirjson
from mappings.errors import TrialbridgeError
from mappings.outcomes import parse_time_frame

from .body import csv_lines
from .errors import RequestError, fhir_response
from .outcome import operation_outcome
from .params import nct_param
from .state import state

bp = Blueprint("observations", __name__)

log = logging.getLogger("trialbridge.service")

GRACE_DAYS = re.compile(r"[0-9]{1,4}")
PULL_TYPES = {"ndjson": "application/fhir+ndjson", "csv": "text/csv"}


@bp.post("/studies/<nct>/observations")
def post_observations(nct: str) -> Response:
    """Push the results of a lab CSV for the study's enrolled subjects, in transaction chunks."""
    nct = nct_param(nct)
    server = state().server(request.args.get("server"))
    lines = csv_lines()
    result = lab_results.push_labs(state().client(server.name), nct, lines)
    body = {"nctId": nct, "server": server.name, **result.to_json()}
    return fhir_response(body, 201 if result.changed else 200)


def _tests() -> list[str] | None:
    value = request.args.get("tests")
    if value is None:
        return None
    tests = [t.strip() for t in value.split(",") if t.strip()]
    if not tests:
        raise RequestError("query parameter 'tests' is empty", parameter="tests")
    return tests


def _grace_days() -> int:
    value = request.args.get("graceDays", str(observations.DEFAULT_GRACE_DAYS))
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
    if not GRACE_DAYS.fullmatch(value) or int(value) > 3650:
        raise RequestError("query parameter 'graceDays' must be a whole number of days (0-3650)",
                           parameter="graceDays")
    return int(value)


def _skipped_lines(skipped: list[observations.Skipped], fmt: str) -> Iterator[str]:
    """After the data: the Observations that could not be read, each with its id and reason (an
    OperationOutcome of warnings in NDJSON, ``#`` lines in CSV); nothing when there are none."""
    if not skipped:
        return
    if fmt == "ndjson":
        issues = [{"severity": "warning", "code": "processing", "diagnostics": str(s)} for s in skipped]
        yield fhirjson.dumps({"resourceType": "OperationOutcome", "issue": issues}) + "\n"
    else:
        for skip in skipped:
            yield f"# trialbridge warning: {skip}\n"


@bp.get("/studies/<nct>/observations")
def get_observations(nct: str) -> Response:
    """The study's outcome labs, streamed as NDJSON (FHIR) or tidy CSV."""
    nct = nct_param(nct)
    server = state().server(request.args.get("server"))
    fmt = request.args.get("format", "ndjson")
    if fmt not in PULL_TYPES:
        raise RequestError("query parameter 'format' must be ndjson or csv", parameter="format")
    window = None
    if "timeFrame" in request.args:
        window = parse_time_frame(request.args["timeFrame"])
        if window is None:
            raise RequestError("query parameter 'timeFrame' must name a duration such as '96 weeks'",
                               parameter="timeFrame")
    tests, grace = _tests(), _grace_days()
    client = state().client(server.name)
    plan = observations.plan_pull(client, nct, tests=tests, window=window, grace_days=grace)

    def body() -> Iterator[str]:
        skipped: list[observations.Skipped] = []
        try:
            yield from observations.pull_lines(
                observations.iter_outcome_observations(client, plan, skipped=skipped), fmt)
            yield from _skipped_lines(skipped, fmt)
        except TrialbridgeError as exc:
            log.warning("pull of %s failed after the answer started: %s", nct, type(exc).__name__)
            message = "the pull failed part way; the data above is incomplete"
            if fmt == "ndjson":
                yield fhirjson.dumps(operation_outcome(502, message)) + "\n"
            else:
                yield f"# trialbridge error: {message}\n"

    headers = {"X-Trialbridge-Tests": ",".join(plan.tests),
               "X-Trialbridge-Window": f"{plan.window} + {plan.grace_days} days" if plan.window else "none"}
    return Response(stream_with_context(body()), headers=headers,
                    content_type=f"{PULL_TYPES[fmt]}; charset=utf-8")
