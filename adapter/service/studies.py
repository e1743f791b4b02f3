"""``/studies``: push a ClinicalTrials.gov record to a named FHIR server, pull a study back."""

from __future__ import annotations

from flask import Blueprint, Response, request

from adapter.config import ServerConfig
from adapter.pull import pull_study
from adapter.push import push_protocol
from mappings import fhirjson
from mappings.errors import combine_issues
from mappings.fhir import read_bundle, write_bundle
from mappings.model import to_dict
from mappings.sources import ReadResult, read_protocol

from .body import whole_body
from .errors import RequestError, fhir_response
from .params import flag_param, nct_param
from .state import state

bp = Blueprint("studies", __name__)

#: Media types a protocol record may be posted as.
RECORD_TYPES = frozenset(
    {
        "application/json",
        "application/fhir+json",
        "application/xml",
        "text/xml",
        "text/plain",
    }
)


def _record_body() -> bytes:
    if request.mimetype not in RECORD_TYPES:
        raise RequestError(
            f"unsupported content type {request.mimetype or '(none)'!r}; send one of "
            f"{', '.join(sorted(RECORD_TYPES))}",
            status=415,
        )
    return whole_body()


@bp.post("/studies")
def post_study() -> Response:
    """Map the posted record for the named server's FHIR version; push it unless ``dryRun``, merged
    into the server's study unless ``replace``."""
    server = state().server(request.args.get("server"))
    dry_run = flag_param("dryRun")
    return _map_and_push(read_protocol(_record_body()), server, dry_run)


def _map_and_push(read: ReadResult, server: ServerConfig, dry_run: bool, **extra: str) -> Response:
    """The Bundle of a record read (``dry_run``), or the answer of its push; one list of issues."""
    if dry_run:
        written = write_bundle(read.protocol, server.fhir_version)
        headers = {"X-Trialbridge-Issues": str(len(combine_issues(read.issues, written.issues)))}
        return fhir_response(written.bundle, 200, headers)
    result = push_protocol(state().client(server.name), read.protocol, replace=flag_param("replace"))
    result.issues = combine_issues(read.issues, result.issues)
    body = {"nctId": read.protocol.nct_id, "server": server.name, **extra, **result.to_json()}
    return fhir_response(body, 201 if result.changed else 200)


@bp.get("/studies/<nct>")
def get_study(nct: str) -> Response:
    """Pull the study and what it references, as FHIR (a collection Bundle) or the protocol model."""
    nct_param(nct)
    server = state().server(request.args.get("server"))
    fmt = request.args.get("format", "fhir")
    if fmt not in ("fhir", "protocol"):
        raise RequestError("query parameter 'format' must be fhir or protocol", parameter="format")
    bundle = pull_study(state().client(server.name), nct)
    if fmt == "fhir":
        return fhir_response(bundle)
    read = read_bundle(bundle, server.fhir_version)
    body = to_dict(read.protocol)
    if read.issues:
        body["warnings"] = [str(i) for i in read.issues]
    # The protocol model is not FHIR: plain JSON, with the reader's warnings (each naming its path).
    return Response(fhirjson.dumps(body), status=200, mimetype="application/json",
                    headers={"X-Trialbridge-Issues": str(len(read.issues))})


@bp.post("/studies/<nct>")
def post_study_from_registry(nct: str) -> Response:
    """Fetch the study's record from ClinicalTrials.gov (adapter/registry.py; no body is sent) and
    push it to the named server, or answer its Bundle with ``dryRun``: like ``POST /studies``."""
    nct_param(nct)
    server = state().server(request.args.get("server"))
    dry_run = flag_param("dryRun")
    if request.content_length or request.headers.get("Transfer-Encoding"):
        raise RequestError("POST /studies/{nct} takes no body (the record comes from the registry); "
                           "send a record to POST /studies")
    read = read_protocol(state().registry().record(nct))
    return _map_and_push(read, server, dry_run, source="ClinicalTrials.gov")
