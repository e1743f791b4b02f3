"""Cohort screening as a service job (:mod:`adapter.cohort`, :mod:`adapter.service.jobs`).

* ``POST /studies/{nct}/cohort?server=NAME[&asOf=YYYY-MM-DD][&tag=SYSTEM|CODE]`` -- starts screening
  every patient of the server (or those with the tag) for the study; 202 with ``Location:
  /jobs/{id}`` and the job's status.  The study must be on the server (404 otherwise, found first).
* ``GET /jobs/{id}`` -- the status: ``running`` with ``progress`` (patients screened of the total),
  ``done`` with the summary (funnel, counts) and the result URLs, or ``failed`` with the error.
* ``GET /jobs/{id}/result?format=csv|ndjson|html|json`` -- a result file (json, the funnel, by
  default); 409 while the job runs or after it failed.
"""

from __future__ import annotations

import datetime
from typing import Any

from flask import Blueprint, Response, request, send_file

from adapter.cohort import screen
from adapter.cohort_report import FILES, CohortWriter
from adapter.prescreen import check_nct, study_criteria

from .errors import RequestError, fhir_response
from .jobs import Job, jobs
from .state import state

bp = Blueprint("cohort", __name__)


def _as_of() -> datetime.date | None:
    value = request.args.get("asOf")
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.date.fromisoformat(value)
    except ValueError:
        pass
    raise RequestError("'asOf' must be a date YYYY-MM-DD", parameter="asOf")


def _tag() -> str | None:
    value = request.args.get("tag")
    if value is None:
        return None
    system, bar, code = value.partition("|")
    if not (system and bar and code) or len(value) > 500 or any(ch.isspace() for ch in value):
        raise RequestError("'tag' must be SYSTEM|CODE", parameter="tag")
    return value


def _links(job_id: str) -> dict[str, str]:
    return {fmt: f"/jobs/{job_id}/result?format={fmt}" for fmt in FILES}


def _status(job: Job) -> dict[str, Any]:
    data = job.status()
    if data.get("status") == "done":
        data["result"] = _links(job.id)
    return data


@bp.post("/studies/<nct>/cohort")
def post_cohort(nct: str) -> Response:
    """Start the screen (see the module docstring)."""
    check_nct(nct)
    server = state().server(request.args.get("server"))
    as_of, tag = _as_of(), _tag()
    client = state().client(server.name)
    criteria = study_criteria(client, nct)  # a missing study is a 404 now, not a failed job
    day = as_of or datetime.date.today()

    def work(job: Job) -> dict[str, Any]:
        writer = CohortWriter(job.dir)

        def progress(done: int, total: int) -> None:
            job.update(progress={"done": done, "total": total})

        try:
            result = screen(
                client, nct, as_of=day, tag=tag, criteria=criteria, sink=writer, progress=progress
            )
        except BaseException:
            writer.close()
            raise
        return writer.finish(result)

    described = {"study": nct, "server": server.name, "asOf": day.isoformat(), "tag": tag}
    job = jobs().start("cohort", described, work)
    return fhir_response(_status(job), 202, {"Location": f"/jobs/{job.id}"})


@bp.get("/jobs/<id>")
def get_job(id: str) -> Response:  # noqa: A002 (the route parameter)
    """The job's status."""
    return fhir_response(_status(jobs().get(id)))


@bp.get("/jobs/<id>/result")
def get_result(id: str) -> Response:  # noqa: A002 (the route parameter)
    """One result file of a finished job."""
    fmt = request.args.get("format", "json")
    if fmt not in FILES:
        raise RequestError(f"'format' must be one of {', '.join(FILES)}", parameter="format")
    job = jobs().get(id)
    status = job.status().get("status")
    if status != "done":
        raise RequestError(f"job {job.id} is {status}: no result", status=409)
    name, media_type = FILES[fmt]
    response = send_file(job.dir / name, mimetype=media_type, max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response
