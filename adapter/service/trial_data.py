"""``/studies/{nct}/subjects`` and ``/studies/{nct}/observations``: enrol subjects and push lab results
from the trial system's CSV exports, read the enrolments back, and pull the study's outcome labs.

The CSV bodies are read as a stream (line by line) and the pull is answered as a stream (NDJSON or
CSV, written as the server's pages arrive), so neither sits in memory whole.  A pull that fails after
its first bytes were sent cannot change its status any more: it ends with an error line instead (an
OperationOutcome in NDJSON, a ``# trialbridge error: ...`` line in CSV), never silently short.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

from flask import Blueprint, Response, request, stream_with_context

from adapter import trial_data
from adapter.pull import find_study
from mappings import fhirjson
from mappings.errors import InputError, TrialbridgeError
from mappings.model import to_dict
from mappings.outcomes import parse_time_frame

from .body import whole_body
from .errors import RequestError, fhir_response
from .outcome import operation_outcome
from .params import flag_param, nct_param
from .state import state

bp = Blueprint("trial_data", __name__)

log = logging.getLogger("trialbridge.service")

GRACE_DAYS = re.compile(r"[0-9]{1,4}")
CSV_TYPES = frozenset({"text/csv"})
PULL_TYPES = {"ndjson": "application/fhir+ndjson", "csv": "text/csv"}


def _csv_lines() -> Iterator[str]:
    """The request body (``text/csv``, UTF-8) as lines.  The whole body is read and decoded before
    the first row is pushed: a body over ``max_body_bytes`` (413) or with invalid UTF-8 (400) is
    refused before anything reaches the FHIR server, even when it came chunked, without a length."""
    if request.mimetype not in CSV_TYPES:
        raise RequestError(f"unsupported content type {request.mimetype or '(none)'!r}; send text/csv",
                           status=415)
    charset = (request.mimetype_params.get("charset") or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise RequestError(f"unsupported charset {charset!r}; send UTF-8", status=415)
    data = whole_body()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the body is not valid UTF-8 (byte {exc.start})") from exc
    return iter(io.StringIO(text, newline=""))


@bp.post("/studies/<nct>/subjects")
def post_subjects(nct: str) -> Response:
    """Enrol the subjects of an enrolments CSV in the study on the named server."""
    nct = nct_param(nct)
    server = state().server(request.args.get("server"))
    create = flag_param("createPatients")
    lines = _csv_lines()
    result = trial_data.enrol(state().client(server.name), nct, lines, create_patients=create)
    body = {"nctId": nct, "server": server.name, **result.to_json()}
    return fhir_response(body, 201 if result.changed else 200)


@bp.get("/studies/<nct>/subjects")
def get_subjects(nct: str) -> Response:
    """The study's ResearchSubjects read back as enrolments (with their Patients' birth date and sex)."""
    nct = nct_param(nct)
    server = state().server(request.args.get("server"))
    client = state().client(server.name)
    study = find_study(client, nct)
    subjects, unreadable = [], []
    for record in trial_data.study_subjects(client, study, with_patients=True):
        if record.enrolment is not None:
            subjects.append(to_dict(record.enrolment))
        else:
            unreadable.append({"reference": record.reference, "reason": record.error})
    body = {"nctId": nct, "server": server.name, "subjects": subjects, "unreadable": unreadable}
    return fhir_response(body)


@bp.post("/studies/<nct>/observations")
def post_observations(nct: str) -> Response:
    """Push the results of a lab CSV for the study's enrolled subjects, in transaction chunks."""
    nct = nct_param(nct)
    server = state().server(request.args.get("server"))
    lines = _csv_lines()
    result = trial_data.push_labs(state().client(server.name), nct, lines)
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
    value = request.args.get("graceDays", str(trial_data.DEFAULT_GRACE_DAYS))
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
    if not GRACE_DAYS.fullmatch(value) or int(value) > 3650:
        raise RequestError("query parameter 'graceDays' must be a whole number of days (0-3650)",
                           parameter="graceDays")
    return int(value)


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
    plan = trial_data.plan_pull(client, nct, tests=tests, window=window, grace_days=grace)

    def body() -> Iterator[str]:
        try:
            yield from trial_data.pull_lines(trial_data.iter_outcome_observations(client, plan), fmt)
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
