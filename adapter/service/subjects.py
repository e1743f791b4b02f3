"""``/studies/{nct}/subjects``: enrol subjects from the trial system's enrolments CSV (read as lines,
refused whole before anything is sent when too big or not UTF-8), and read the enrolments back."""

from __future__ import annotations

from flask import Blueprint, Response, request

from adapter import enrolments
from adapter.pull import find_study
from mappings.model import to_dict

from .body import csv_lines
from .errors import fhir_response
from .params import flag_param, nct_param
from .state import state

bp = Blueprint("subjects", __name__)


@bp.post("/studies/<nct>/subjects")
def post_subjects(nct: str) -> Response:
    """Enrol the subjects of an enrolments CSV in the study on the named server."""
    nct = nct_param(nct)
    server = state().server(request.args.get("server"))
    create = flag_param("createPatients")
    lines = csv_lines()
    result = enrolments.enrol(state().client(server.name), nct, lines, create_patients=create)
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
    for record in enrolments.study_subjects(client, study, with_patients=True):
        if record.enrolment is not None:
            subjects.append(to_dict(record.enrolment))
        else:
            unreadable.append({"reference": record.reference, "reason": record.error})
    body = {"nctId": nct, "server": server.name, "subjects": subjects, "unreadable": unreadable}
    return fhir_response(body)
