"""adapter.bulk: the Bulk Data export protocol (kick-off, polling, manifest, NDJSON files, cancel),
its URL policy, and the observations pull's choice between an export and paged searches."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import responses
from responses import matchers

from adapter import bulk, observations
from adapter.bulk import ExportRequest, export_resources, offers_export, start
from adapter.client import FhirClient
from adapter.config import AuthConfig, ServerConfig, load_config
from adapter.errors import (
    ConfigError,
    ExportRefused,
    FhirTimeout,
    MalformedResponse,
    ProtocolError,
    ServerError,
    Unauthorized,
)
from adapter.observations import PullPlan, SubjectWindow
from mappings import fhirjson
from mappings.errors import InputError

BASE = "https://ehr.example.org/fhir"
KICK_OFF = f"{BASE}/Patient/$export"
STATUS = f"{BASE}/$export-poll-status?_jobId=j1"
FILE1, FILE2 = f"{BASE}/Binary/f1", f"{BASE}/Binary/f2"
ALB_FILTER = "Observation?code=http%3A%2F%2Floinc.org%7C1751-7"
REQUEST = ExportRequest(types=("Observation",), type_filters=(ALB_FILTER,),
                        patients=("Patient/p1", "Patient/p2"))
LOINC = "http://loinc.org"


def observation(oid: str, patient: str = "p1", day: str = "2020-02-01",
                code: str = "1751-7") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": f"{day}T08:00:00+08:00",
            "valueQuantity": {"value": Decimal("41.50"), "unit": "g/L", "system": "http://unitsofmeasure.org",
                              "code": "g/L"}}


def ndjson(*resources: dict[str, Any]) -> str:
    return "".join(fhirjson.dumps(r) + "\n" for r in resources)


def manifest(*urls: str, error: tuple[str, ...] = (), token: bool = True) -> dict[str, Any]:
    return {"transactionTime": "2026-01-01T00:00:00Z", "request": KICK_OFF, "requiresAccessToken": token,
            "output": [{"type": "Observation", "url": u} for u in urls],
            "error": [{"type": "OperationOutcome", "url": u} for u in error]}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> FhirClient:
    return FhirClient(ServerConfig.from_url(BASE, max_retries=0), sleep=sleeps.append)


def kick_off(rsps: responses.RequestsMock, location: str = "$export-poll-status?_jobId=j1") -> None:
    rsps.add(responses.POST, KICK_OFF, status=202, headers={"Content-Location": location})


def complete(rsps: responses.RequestsMock, *files: tuple[str, str], **options: Any) -> None:
    rsps.add(responses.GET, STATUS, json=manifest(*(u for u, _ in files), **options))
    for url, body in files:
        rsps.add(responses.GET, url, body=body, content_type="application/fhir+ndjson")


def deletes(rsps: responses.RequestsMock) -> list[Any]:
    return [c for c in rsps.calls if c.request.method == "DELETE"]


# -- capability -----------------------------------------------------------------------------------


def capabilities(**where: list[str]) -> dict[str, Any]:
    rest: dict[str, Any] = {"mode": "server", "operation": [{"name": n} for n in where.get("system", [])],
                            "resource": [{"type": t, "operation": [{"name": n} for n in where.get(t, [])]}
                                         for t in ("Patient", "Group", "Observation")]}
    return {"resourceType": "CapabilityStatement", "rest": [rest]}


def test_export_is_offered_where_the_capability_statement_lists_it() -> None:
    assert offers_export(capabilities(Patient=["export", "everything"]), "patient")
    assert not offers_export(capabilities(Patient=["everything"], system=["export"]), "patient")
    assert offers_export(capabilities(system=["export"]), "system")
    assert offers_export(capabilities(Group=["export"]), "group")
    assert not offers_export(capabilities(Observation=["export"]), "group")
    assert not offers_export({"resourceType": "CapabilityStatement", "rest": "nonsense"}, "patient")


def test_a_request_names_types_and_whose_data() -> None:
    with pytest.raises(InputError):
        ExportRequest(types=())
    with pytest.raises(InputError):
        ExportRequest(types=("Observation",), level="system", patients=("Patient/p1",))
    with pytest.raises(InputError):
        ExportRequest(types=("Observation",), level="group")
    assert ExportRequest(types=("Observation",), level="group", group_id="g1").path == "Group/g1/$export"
    assert ExportRequest(types=("Observation",), level="system").path == "$export"


# -- the protocol ----------------------------------------------------------------------------------


@responses.activate
def test_kick_off_poll_with_retry_after_and_progress_then_stream_every_file(
        client: FhirClient, sleeps: list[float]) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "_type", "valueString": "Observation"},
        {"name": "_typeFilter", "valueString": REQUEST.type_filters[0]},
        {"name": "_since", "valueInstant": "2026-01-01T00:00:00Z"},
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
        {"name": "patient", "valueReference": {"reference": "Patient/p2"}}]}
    responses.add(responses.POST, KICK_OFF, status=202, headers={"Content-Location": STATUS}, match=[
        matchers.json_params_matcher(body), matchers.header_matcher({"Prefer": "respond-async"})])
    responses.add(responses.GET, STATUS, status=202,
                  headers={"Retry-After": "7", "X-Progress": "50%\x1b done"})
    responses.add(responses.GET, STATUS, status=202)  # no Retry-After: the client's own backoff
    responses.add(responses.GET, STATUS, status=202)
    complete(responses.mock, (FILE1, ndjson(observation("o1"), observation("o2"))),
             (FILE2, ndjson(observation("o3"))))
    responses.add(responses.DELETE, STATUS, status=202)
    progress: list[str] = []
    request = ExportRequest(**{**REQUEST.__dict__, "since": "2026-01-01T00:00:00Z"})
    got = list(export_resources(client, request, on_progress=progress.append, sleep=sleeps.append))
    assert [r["id"] for r in got] == ["o1", "o2", "o3"]
    assert got[0]["valueQuantity"]["value"] == Decimal("41.50")  # exact decimals, as every read
    assert sleeps == [7.0, bulk.FIRST_POLL, bulk.FIRST_POLL * 2]
    assert progress == ["50% done"]  # control characters dropped
    assert [c.request.headers["Accept"] for c in responses.calls if c.request.url in (FILE1, FILE2)] \
        == ["application/fhir+ndjson"] * 2
    assert len(deletes(responses.mock)) == 1  # the server may drop the files now


@responses.activate
def test_lines_spanning_chunks_and_blank_lines_are_read_one_by_one(client: FhirClient) -> None:
    many = [observation(f"o{i}", day="2020-03-01") for i in range(3000)]  # ~1 MB: many 64 KiB chunks
    kick_off(responses.mock)
    complete(responses.mock, (FILE1, "\n" + ndjson(*many) + "\n\n"))
    responses.add(responses.DELETE, STATUS, status=404)  # HAPI: a completed job is "already gone"
    assert [r["id"] for r in export_resources(client, REQUEST)] == [f"o{i}" for i in range(3000)]


@pytest.mark.parametrize("status", [400, 404, 405, 422, 501])
@responses.activate
def test_a_refused_kick_off_is_export_refused(client: FhirClient, status: int) -> None:
    responses.add(responses.POST, KICK_OFF, status=status, json={
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "no export here"}]})
    with pytest.raises(ExportRefused) as refused:
        start(client, REQUEST)
    assert refused.value.status == status and "no export here" in str(refused.value)


@responses.activate
def test_a_kick_off_without_a_status_url_is_refused_and_unauthorized_is_not(client: FhirClient) -> None:
    responses.add(responses.POST, KICK_OFF, status=200, json={"resourceType": "Bundle"})
    with pytest.raises(ExportRefused):
        start(client, REQUEST)
    responses.replace(responses.POST, KICK_OFF, status=401)
    with pytest.raises(Unauthorized):  # not "no export": the caller must not quietly page instead
        start(client, REQUEST)


@responses.activate
def test_a_status_url_on_another_server_is_refused(client: FhirClient) -> None:
    kick_off(responses.mock, "https://elsewhere.example.net/status/j1")
    with pytest.raises(ProtocolError, match="another server"):
        start(client, REQUEST)


@responses.activate
def test_a_failed_job_raises_the_servers_outcome_and_is_deleted(client: FhirClient) -> None:
    kick_off(responses.mock)
    responses.add(responses.GET, STATUS, status=500, json={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "exception", "diagnostics": "job failed"}]})
    responses.add(responses.DELETE, STATUS, status=202)
    with pytest.raises(ServerError, match="job failed"):
        list(export_resources(client, REQUEST))
    assert len(deletes(responses.mock)) == 1


@responses.activate
def test_an_error_file_with_errors_fails_before_any_resource(client: FhirClient) -> None:
    kick_off(responses.mock)
    errors = ndjson({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "Observation/o9 could not be exported"}]})
    complete(responses.mock, (FILE1, ndjson(observation("o1"))), (FILE2, errors))
    responses.replace(responses.GET, STATUS, json=manifest(FILE1, error=(FILE2,)))
    responses.add(responses.DELETE, STATUS, status=202)
    got: list[dict[str, Any]] = []
    with pytest.raises(ProtocolError, match="incomplete"):
        got.extend(export_resources(client, REQUEST))
    assert got == []


@responses.activate
def test_informational_error_files_are_fine(client: FhirClient) -> None:
    kick_off(responses.mock)
    note = ndjson({"resourceType": "OperationOutcome",
                   "issue": [{"severity": "information", "code": "informational"}]})
    complete(responses.mock, (FILE1, ndjson(observation("o1"))), (FILE2, note))
    responses.replace(responses.GET, STATUS, json=manifest(FILE1, error=(FILE2,)))
    responses.add(responses.DELETE, STATUS, status=202)
    assert [r["id"] for r in export_resources(client, REQUEST)] == ["o1"]


@responses.activate
def test_a_retry_after_beyond_the_bulk_deadline_gives_up_and_cancels(sleeps: list[float]) -> None:
    client = FhirClient(ServerConfig.from_url(BASE, max_retries=0, bulk_deadline=60), sleep=sleeps.append)
    kick_off(responses.mock)
    responses.add(responses.GET, STATUS, status=202, headers={"Retry-After": "120"})
    responses.add(responses.DELETE, STATUS, status=202)
    with pytest.raises(FhirTimeout, match="bulk_deadline=60s"):
        list(export_resources(client, REQUEST, sleep=sleeps.append))
    assert sleeps == [] and len(deletes(responses.mock)) == 1


@responses.activate
def test_closing_the_reader_early_cancels_the_job(client: FhirClient) -> None:
    kick_off(responses.mock)
    complete(responses.mock, (FILE1, ndjson(observation("o1"), observation("o2"))),
             (FILE2, ndjson(observation("o3"))))
    responses.add(responses.DELETE, STATUS, status=202)
    reader = export_resources(client, REQUEST)
    assert next(reader)["id"] == "o1"
    assert deletes(responses.mock) == []
    reader.close()
    assert len(deletes(responses.mock)) == 1
    assert FILE2 not in [c.request.url for c in responses.calls]


@responses.activate
def test_an_exception_in_the_caller_cancels_the_job(client: FhirClient) -> None:
    kick_off(responses.mock)
    complete(responses.mock, (FILE1, ndjson(observation("o1"), observation("o2"))))
    responses.add(responses.DELETE, STATUS, status=202)
    with pytest.raises(RuntimeError), start(client, REQUEST) as export:
        for _ in export.resources():
            raise RuntimeError("the caller gives up")
    assert len(deletes(responses.mock)) == 1


@responses.activate
def test_a_broken_line_is_a_malformed_response(client: FhirClient) -> None:
    kick_off(responses.mock)
    complete(responses.mock, (FILE1, ndjson(observation("o1")) + '{"resourceType": "Observ\n'))
    responses.add(responses.DELETE, STATUS, status=202)
    with pytest.raises(MalformedResponse, match="not a FHIR resource"):
        list(export_resources(client, REQUEST))


@responses.activate
def test_a_file_over_the_byte_cap_is_refused(sleeps: list[float]) -> None:
    config = ServerConfig.from_url(BASE, max_retries=0, max_response_bytes=10_000)
    client = FhirClient(config, sleep=sleeps.append)
    kick_off(responses.mock)
    complete(responses.mock, (FILE1, ndjson(*[observation(f"o{i}") for i in range(200)])))
    responses.add(responses.DELETE, STATUS, status=202)
    with pytest.raises(MalformedResponse, match="max_response_bytes=10000"):
        list(export_resources(client, REQUEST))


# -- credentials only to the configured origin ------------------------------------------------------


@pytest.fixture
def bearer(tmp_path: Path, sleeps: list[float]) -> FhirClient:
    (tmp_path / "token").write_text("s3cret")
    auth = AuthConfig(kind="bearer", token_file=str(tmp_path / "token"))
    return FhirClient(ServerConfig.from_url(BASE, max_retries=0, auth=auth), sleep=sleeps.append)


@responses.activate
def test_files_on_the_servers_origin_get_the_token(bearer: FhirClient) -> None:
    kick_off(responses.mock)
    complete(responses.mock, (FILE1, ndjson(observation("o1"))))
    responses.add(responses.DELETE, STATUS, status=202)
    list(export_resources(bearer, REQUEST))
    assert {c.request.headers.get("Authorization") for c in responses.calls} == {"Bearer s3cret"}


@responses.activate
def test_a_file_elsewhere_needing_the_token_is_not_fetched(bearer: FhirClient) -> None:
    elsewhere = "https://files.example.net/f1"
    kick_off(responses.mock)
    responses.add(responses.GET, STATUS, json=manifest(elsewhere, token=True))
    responses.add(responses.DELETE, STATUS, status=202)
    with pytest.raises(ProtocolError, match="only to the configured server"):
        list(export_resources(bearer, REQUEST))
    assert elsewhere not in [c.request.url for c in responses.calls]


@responses.activate
def test_a_file_elsewhere_without_the_token_is_fetched_without_credentials(bearer: FhirClient) -> None:
    elsewhere = "https://files.example.net/f1?sig=abc"
    kick_off(responses.mock)
    responses.add(responses.GET, STATUS, json=manifest(elsewhere, token=False))
    responses.add(responses.GET, elsewhere, body=ndjson(observation("o1")))
    responses.add(responses.DELETE, STATUS, status=202)
    assert [r["id"] for r in export_resources(bearer, REQUEST)] == ["o1"]
    (download,) = [c for c in responses.calls if c.request.url == elsewhere]
    assert "Authorization" not in download.request.headers


# -- the configuration switch --------------------------------------------------------------------


def test_the_bulk_switch_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[servers.ehr]\nbase_url = "https://ehr.example.org/fhir"\nbulk = "never"\n')
    assert load_config(path, environ={}).server("ehr").bulk == "never"
    path.write_text('[servers.ehr]\nbase_url = "https://ehr.example.org/fhir"\nbulk = "sometimes"\n')
    with pytest.raises(ConfigError, match="bulk must be one of auto, never, always"):
        load_config(path, environ={})
    assert ServerConfig.from_url(BASE).bulk == "auto"


# -- the observations pull chooses --------------------------------------------------------------


PLAN = PullPlan(study={"resourceType": "ResearchStudy", "id": "s1"}, tests=("ALB",), loinc_codes=("1751-7",),
                window=None, grace_days=0)
SUBJECTS = [SubjectWindow("S1", "A", "Patient/p1", date(2020, 1, 1), date(2020, 6, 30)),
            SubjectWindow("S2", "B", "Patient/p2", date(2020, 3, 1), None),
            SubjectWindow("S1b", "A", "Patient/p1", date(2020, 2, 15), None)]


@pytest.fixture
def subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observations, "subject_windows", lambda client, plan: iter(SUBJECTS))


def metadata(rsps: responses.RequestsMock, offered: bool) -> None:
    rsps.add(responses.GET, f"{BASE}/metadata", json=capabilities(Patient=["export"] if offered else []))


def searches(rsps: responses.RequestsMock) -> None:
    """The paged pull's searches: one per subject."""
    for subject in SUBJECTS:
        rsps.add(responses.GET, f"{BASE}/Observation", match=[matchers.query_param_matcher(
            {"subject": subject.patient_ref}, strict_match=False)],
            body=fhirjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": observation("o1", day="2020-02-01")},
                {"resource": observation("o2", day="2020-04-01")}]}))


def rows(items: Any) -> list[tuple[str, str]]:
    return [(i.subject.subject_id, i.resource["id"]) for i in items]


@responses.activate
def test_no_export_offered_means_paged_searches(client: FhirClient, subjects: None) -> None:
    metadata(responses.mock, offered=False)
    searches(responses.mock)
    assert rows(observations.iter_outcome_observations(client, PLAN)) == [
        ("S1", "o1"), ("S1", "o2"), ("S2", "o2"), ("S1b", "o2")]
    assert not [c for c in responses.calls if "$export" in c.request.url]


@responses.activate
def test_a_refused_export_falls_back_to_paged_searches_unless_always(
        client: FhirClient, subjects: None) -> None:
    metadata(responses.mock, offered=True)
    responses.add(responses.POST, KICK_OFF, status=400)
    searches(responses.mock)
    assert len(rows(observations.iter_outcome_observations(client, PLAN))) == 4
    with pytest.raises(ExportRefused):
        list(observations.iter_outcome_observations(client, PLAN, bulk="always"))


@responses.activate
def test_the_export_gives_the_rows_of_the_searches(client: FhirClient, subjects: None) -> None:
    metadata(responses.mock, offered=True)
    kick_off(responses.mock)
    other_code = observation("o9", code="2345-7")  # the export filters on dates only: dropped here
    elsewhere = observation("o8", patient="p3")  # not a subject's patient
    complete(responses.mock, (FILE1, ndjson(observation("o2", patient="p2", day="2020-04-01"), other_code,
                                            observation("o1", day="2020-02-01"), elsewhere,
                                            observation("o2", day="2020-04-01"))))
    responses.add(responses.DELETE, STATUS, status=202)
    got = rows(observations.iter_outcome_observations(client, PLAN))
    assert sorted(got) == sorted([("S1", "o1"), ("S1", "o2"), ("S2", "o2"), ("S1b", "o2")])
    (kick,) = [c for c in responses.calls if c.request.url == KICK_OFF]
    params = {p["name"]: p for p in json.loads(kick.request.body)["parameter"]}
    assert params["_typeFilter"]["valueString"] == "Observation?date=ge2019-12-31"  # one subject has no end
    patients = [p["valueReference"]["reference"] for p in json.loads(kick.request.body)["parameter"]
                if p["name"] == "patient"]
    assert patients == ["Patient/p1", "Patient/p2"]
    assert len(deletes(responses.mock)) == 1


def test_the_export_window_spans_every_subjects_window() -> None:
    closed = [SUBJECTS[0], SubjectWindow("S3", None, "Patient/p3", date(2021, 1, 1), date(2021, 3, 1))]
    request = observations.export_request(PLAN, closed)
    assert request.type_filters == ("Observation?date=ge2019-12-31&date=le2021-03-02",)
    assert request.patients == ("Patient/p1", "Patient/p3") and request.types == ("Observation",)


@responses.activate
def test_a_pull_closed_after_its_first_row_cancels_the_export(client: FhirClient, subjects: None) -> None:
    metadata(responses.mock, offered=True)
    kick_off(responses.mock)
    complete(responses.mock, (FILE1, ndjson(observation("o1"), observation("o2", day="2020-04-01"))))
    responses.add(responses.DELETE, STATUS, status=202)
    pull = observations.iter_outcome_observations(client, PLAN)
    assert next(pull).resource["id"] == "o1"
    pull.close()
    assert len(deletes(responses.mock)) == 1
