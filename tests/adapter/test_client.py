"""adapter.client: statuses to errors, retries, replay safety, paging, headers, If-Match."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

from adapter.client import FhirClient, Response
from adapter.config import ServerConfig
from adapter.errors import (
    FhirClientError,
    FhirConnectionError,
    FhirHttpError,
    FhirTimeout,
    NotFound,
    OutcomeUnknown,
    PagingError,
    PreconditionFailed,
    ProtocolError,
    ServerError,
    TooManyRequests,
    Unauthorized,
    VersionMismatch,
)
from mappings.errors import InputError, TrialbridgeError

BASE = "https://ehr.example.org/fhir"
NOW = 1_700_000_000.0
PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"}}
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "Resource Patient/p1 is not known"},
        {"severity": "warning", "code": "informational", "details": {"text": "second\nissue"}},
    ],
}
STUDY = {"resourceType": "ResearchStudy", "identifier": [{"system": "urn:nct", "value": "NCT1"}]}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(sleeps: list[float]) -> Any:
    def factory(base: str = BASE, **options: Any) -> FhirClient:
        return FhirClient(ServerConfig.from_url(base, **options), sleep=sleeps.append, clock=lambda: NOW)

    return factory


@pytest.fixture
def client(make: Any) -> FhirClient:
    return make()


def dropped() -> requests.ConnectionError:
    """A connection reset after the request was sent."""
    return requests.ConnectionError("Connection aborted: RemoteDisconnected")


def refused(url: str = BASE) -> requests.ConnectionError:
    """A connection that never opened: the request certainly did not leave."""
    return requests.ConnectionError(MaxRetryError(None, url, NewConnectionError(None, "refused")))  # type: ignore[arg-type]


def searchset(*resources: dict[str, Any], next_url: str | None = None, mode: str = "match") -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": mode}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "self", "url": "ignored"}, {"relation": "next", "url": next_url}]
    return bundle


def patient(n: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"p{n}"}


def query(params: dict[str, str]) -> Any:
    """Match exactly these query parameters."""
    return matchers.query_param_matcher(params)


def page_query(offset: int) -> Any:
    return query({"_getpages": "abc", "_getpagesoffset": str(offset)})


# -- capabilities -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("configured", "served"), [("R4", "4.0.1"), ("R5", "5.0.0"), ("R4", "4.0")])
@responses.activate
def test_check_version_accepts_matching_server(make: Any, configured: str, served: str) -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": served})
    assert make(fhir_version=configured).check_version() == served


@pytest.mark.parametrize(
    ("configured", "served"), [("R4", "4.3.0"), ("R4", "5.0.0"), ("R5", "4.0.1"), ("R4", None)]
)
@responses.activate
def test_check_version_refuses_other_versions(make: Any, configured: str, served: str | None) -> None:
    statement = {"resourceType": "CapabilityStatement", "fhirVersion": served}
    responses.get(f"{BASE}/metadata", json=statement)
    with pytest.raises(VersionMismatch, match=f"configured {configured}"):
        make(fhir_version=configured).check_version()


@responses.activate
def test_capabilities_must_be_a_capability_statement(client: FhirClient) -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "Patient"})
    with pytest.raises(ProtocolError, match="expected CapabilityStatement, got Patient"):
        client.capabilities()


# -- statuses to exceptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, FhirHttpError),
        (401, Unauthorized),
        (403, Unauthorized),
        (404, NotFound),
        (410, NotFound),
        (412, PreconditionFailed),
        (422, FhirHttpError),
        (429, TooManyRequests),
        (500, ServerError),
        (503, ServerError),
        (302, FhirHttpError),
    ],
)
@responses.activate
def test_status_becomes_its_exception_with_the_outcome(
    make: Any, status: int, error: type[FhirHttpError]
) -> None:
    responses.get(f"{BASE}/Patient/p1", status=status, json=OUTCOME)
    with pytest.raises(error) as caught:
        make(max_retries=0).read("Patient", "p1")
    err = caught.value
    assert type(err) is error and isinstance(err, TrialbridgeError)
    assert err.status == status and err.method == "GET" and err.url == f"{BASE}/Patient/p1"
    assert err.operation_outcome == OUTCOME
    assert err.message == str(err)
    assert str(err).startswith(f"GET {BASE}/Patient/p1 -> {status}")
    assert "error/processing: Resource Patient/p1 is not known; warning/informational: second issue" in str(
        err
    )


@responses.activate
def test_error_message_has_no_query_string_and_tolerates_html(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient", status=400, body="<html>oops</html>", content_type="text/html")
    with pytest.raises(FhirHttpError) as caught:
        list(client.search("Patient", {"identifier": "urn:mrn|123456"}))
    assert caught.value.operation_outcome is None
    assert "123456" not in str(caught.value) and "oops" not in str(caught.value)
    assert caught.value.url == f"{BASE}/Patient"


@responses.activate
def test_success_body_that_is_not_json_is_a_protocol_error(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/p1", body="<html/>")
    with pytest.raises(ProtocolError, match="not a JSON object"):
        client.read("Patient", "p1")


@responses.activate
def test_redirects_are_not_followed(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/p1", status=301, headers={"Location": "http://elsewhere.example/x"})
    with pytest.raises(FhirHttpError, match="unexpected redirect"):
        client.read("Patient", "p1")
    assert len(responses.calls) == 1


# -- retries -------------------------------------------------------------------------------------


@responses.activate
def test_503_then_success_is_retried(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=503)
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    assert client.read("Patient", "p1") == PATIENT
    assert len(responses.calls) == 2 and len(sleeps) == 1
    assert 0.25 <= sleeps[0] <= 0.5  # backoff 0.5 with equal jitter


@responses.activate
def test_retry_after_seconds_honoured(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "7"})
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    client.read("Patient", "p1")
    assert sleeps == [7.0]


@responses.activate
def test_retry_after_http_date_honoured(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(
        f"{BASE}/Patient/p1", status=503, headers={"Retry-After": formatdate(NOW + 12, usegmt=True)}
    )
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    client.read("Patient", "p1")
    assert sleeps == [12.0]


@responses.activate
def test_retry_after_in_the_past_means_now(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(
        f"{BASE}/Patient/p1", status=503, headers={"Retry-After": formatdate(NOW - 60, usegmt=True)}
    )
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    client.read("Patient", "p1")
    assert sleeps == [0.0]


@responses.activate
def test_retry_after_beyond_the_cap_is_raised_at_once(make: Any, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(TooManyRequests) as caught:
        make(max_delay=30).read("Patient", "p1")
    assert caught.value.retry_after == 3600.0
    assert len(responses.calls) == 1 and sleeps == []


@responses.activate
def test_429_retries_are_capped(make: Any, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "1"})
    with pytest.raises(TooManyRequests):
        make(max_retries=2).read("Patient", "p1")
    assert len(responses.calls) == 3 and sleeps == [1.0, 1.0]


@responses.activate
def test_backoff_grows_exponentially_within_max_delay(make: Any, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=502)
    with pytest.raises(ServerError):
        make(max_retries=5, backoff=1.0, max_delay=6.0).read("Patient", "p1")
    ceilings = [1, 2, 4, 6, 6]
    assert len(sleeps) == 5
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings))


@responses.activate
def test_500_is_not_retried(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=500, json=OUTCOME)
    with pytest.raises(ServerError):
        client.read("Patient", "p1")
    assert len(responses.calls) == 1 and sleeps == []


@responses.activate
def test_get_connection_errors_retried_then_raised(make: Any, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient/p1", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(FhirConnectionError, match="timed out: ReadTimeout"):
        make(max_retries=2).read("Patient", "p1")
    assert len(responses.calls) == 3 and len(sleeps) == 2


@pytest.mark.parametrize(("failure", "timeout"), [(requests.ReadTimeout("read timed out"), True),
                                                  (requests.ConnectTimeout("connect timed out"), True),
                                                  (dropped(), False)])
@responses.activate
def test_a_timeout_is_raised_as_its_own_class_of_connection_error(make: Any, failure: Exception,
                                                                  timeout: bool) -> None:
    responses.get(f"{BASE}/Patient/p1", body=failure)
    with pytest.raises(FhirConnectionError) as caught:
        make(max_retries=0).read("Patient", "p1")
    assert isinstance(caught.value, FhirTimeout) is timeout


@responses.activate
def test_tls_errors_are_not_retried(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/p1", body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(FhirConnectionError, match="SSLError"):
        client.read("Patient", "p1")
    assert len(responses.calls) == 1


@pytest.mark.parametrize("failure", [dropped(), requests.ReadTimeout("read timed out")])
@responses.activate
def test_plain_post_that_may_have_arrived_is_not_retried(
    client: FhirClient, sleeps: list[float], failure: Exception
) -> None:
    responses.post(f"{BASE}/ResearchStudy", body=failure)
    with pytest.raises(OutcomeUnknown, match="not retried") as caught:
        client.create(STUDY)
    assert not isinstance(caught.value, FhirConnectionError)
    assert len(responses.calls) == 1 and sleeps == []


@pytest.mark.parametrize("status", [502, 504])
@responses.activate
def test_plain_post_answered_by_a_gateway_error_is_outcome_unknown(client: FhirClient, status: int) -> None:
    responses.post(f"{BASE}/ResearchStudy", status=status)
    with pytest.raises(OutcomeUnknown, match="gateway"):
        client.create(STUDY)
    assert len(responses.calls) == 1


@responses.activate
def test_plain_post_retried_on_503_and_on_connect_failure(client: FhirClient) -> None:
    responses.post(f"{BASE}/ResearchStudy", status=503)
    responses.post(f"{BASE}/ResearchStudy", body=refused())
    responses.post(f"{BASE}/ResearchStudy", status=201, json={**STUDY, "id": "s1"})
    assert client.create(STUDY).created
    assert len(responses.calls) == 3


@responses.activate
def test_conditional_post_is_retried_after_a_drop(client: FhirClient) -> None:
    responses.post(f"{BASE}/ResearchStudy", body=dropped())
    responses.post(
        f"{BASE}/ResearchStudy",
        status=201,
        json={**STUDY, "id": "s1"},
        headers={"Location": f"{BASE}/ResearchStudy/s1/_history/1", "ETag": 'W/"1"'},
    )
    result = client.create(STUDY, if_none_exist={"identifier": "urn:nct|NCT1"})
    assert (result.created, result.id, result.version_id) == (True, "s1", "1")
    assert [c.request.headers["If-None-Exist"] for c in responses.calls] == [
        "identifier=urn%3Anct%7CNCT1"
    ] * 2


def transaction(*requests_: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": STUDY, "request": r} for r in requests_],
    }


@responses.activate
def test_transaction_of_conditional_entries_is_retried(client: FhirClient) -> None:
    bundle = transaction(
        {"method": "POST", "url": "ResearchStudy", "ifNoneExist": "identifier=urn:nct|NCT1"},
        {"method": "PUT", "url": "ResearchStudy?identifier=urn:nct|NCT2"},
    )
    responses.post(BASE, body=requests.ReadTimeout("read timed out"))
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response"})
    assert client.transaction(bundle)["type"] == "transaction-response"
    assert len(responses.calls) == 2
    assert json.loads(responses.calls[1].request.body) == bundle


@responses.activate
def test_transaction_with_a_plain_post_is_not_retried(client: FhirClient) -> None:
    bundle = transaction(
        {"method": "PUT", "url": "ResearchStudy?identifier=a|b"}, {"method": "POST", "url": "ResearchStudy"}
    )
    responses.post(BASE, body=dropped())
    with pytest.raises(OutcomeUnknown):
        client.transaction(bundle)
    assert len(responses.calls) == 1


def test_bundle_type_must_match_the_operation(client: FhirClient) -> None:
    with pytest.raises(InputError, match="transaction"):
        client.transaction({"resourceType": "Bundle", "type": "batch"})


@responses.activate
def test_batch_is_posted_to_the_base(client: FhirClient) -> None:
    responses.post(BASE, json={"resourceType": "Bundle", "type": "batch-response"})
    assert client.batch({"resourceType": "Bundle", "type": "batch", "entry": []})["type"] == "batch-response"


# -- requests as sent -------------------------------------------------------------------------------


@responses.activate
def test_every_call_has_timeout_verify_and_headers(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests swaps verify=True for these
        monkeypatch.delenv(name, raising=False)
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    responses.put(f"{BASE}/Patient/p1", json=PATIENT)
    responses.post(f"{BASE}/Patient", status=201, json=PATIENT)
    responses.delete(f"{BASE}/Patient/p1", status=204)
    responses.get(
        f"{BASE}/Patient", json=searchset(patient(1), next_url=f"{BASE}?_getpages=abc&_getpagesoffset=1")
    )
    responses.get(BASE, json=searchset(patient(2)), match=[page_query(1)])
    client = make(timeout=(3, 45))
    client.check_version()
    client.read("Patient", "p1")
    client.update(PATIENT)
    client.create(PATIENT)
    client.delete("Patient", "p1")
    list(client.search("Patient"))
    assert len(responses.calls) == 7
    for call in responses.calls:
        assert call.request.req_kwargs["timeout"] == (3.0, 45.0)
        assert call.request.req_kwargs["verify"] is True
        assert call.request.headers["Accept"] == "application/fhir+json"
        assert call.request.headers["User-Agent"].startswith("trialbridge/")
        has_body = call.request.method in ("POST", "PUT")
        assert call.request.headers.get("Content-Type") == (
            "application/fhir+json; charset=utf-8" if has_body else None
        )


@responses.activate
def test_ca_bundle_path_is_passed_through(make: Any, tmp_path: Path) -> None:
    bundle = tmp_path / "hospital-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    make(verify=str(bundle)).read("Patient", "p1")
    assert responses.calls[0].request.req_kwargs["verify"] == str(bundle)


@pytest.mark.parametrize(
    ("args", "field"), [(("Patient", "../x"), "id"), (("patient", "p1"), "resourceType")]
)
def test_type_and_id_are_validated(client: FhirClient, args: tuple[str, str], field: str) -> None:
    with pytest.raises(InputError) as caught:
        client.read(*args)
    assert caught.value.field == field


def test_update_needs_an_id(client: FhirClient) -> None:
    with pytest.raises(InputError, match="not a FHIR id"):
        client.update({"resourceType": "Patient"})


@responses.activate
def test_decimals_keep_their_exact_text(client: FhirClient) -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "valueQuantity": {"value": Decimal("3.50"), "unit": "mmol/L"},
        "component": [{"n": 19}],
    }
    responses.put(f"{BASE}/Observation/o1", body='{"resourceType":"Observation","id":"o1","v":3.50,"n":19}')
    result = client.update(observation)
    sent = responses.calls[0].request.body.decode()
    assert '"value":3.50' in sent and '"n":19' in sent
    assert result.resource == {"resourceType": "Observation", "id": "o1", "v": Decimal("3.50"), "n": 19}
    assert str(result.resource["v"]) == "3.50"


@responses.activate
def test_log_has_method_path_and_status_only(client: FhirClient, caplog: pytest.LogCaptureFixture) -> None:
    responses.get(f"{BASE}/Patient", json=searchset())
    with caplog.at_level(logging.INFO, logger="trialbridge.client"):
        list(client.search("Patient", {"identifier": "urn:mrn|123456"}))
    assert caplog.messages == ["GET /fhir/Patient -> 200"]


# -- writes ---------------------------------------------------------------------------------------


@responses.activate
def test_if_match_sent_and_412_is_precondition_failed(client: FhirClient) -> None:
    responses.put(f"{BASE}/Patient/p1", status=412, json=OUTCOME)
    with pytest.raises(PreconditionFailed, match=r'since version W/"3".*Resource Patient/p1 is not known'):
        client.update(PATIENT, if_match="3")
    assert responses.calls[0].request.headers["If-Match"] == 'W/"3"'


@responses.activate
def test_hapi_409_to_if_match_is_precondition_failed(client: FhirClient) -> None:
    responses.put(f"{BASE}/Patient/p1", status=409, json=OUTCOME)
    with pytest.raises(PreconditionFailed) as caught:
        client.update(PATIENT, if_match='W/"3"')
    assert caught.value.status == 409
    assert responses.calls[0].request.headers["If-Match"] == 'W/"3"'


@responses.activate
def test_409_without_if_match_stays_a_plain_http_error(client: FhirClient) -> None:
    responses.put(f"{BASE}/Patient/p1", status=409, json=OUTCOME)
    with pytest.raises(FhirHttpError) as caught:
        client.update(PATIENT)
    assert type(caught.value) is FhirHttpError


@responses.activate
def test_if_match_refused_after_a_dropped_attempt_is_outcome_unknown(client: FhirClient) -> None:
    responses.put(f"{BASE}/Patient/p1", body=dropped())
    responses.put(f"{BASE}/Patient/p1", status=412, json=OUTCOME)
    with pytest.raises(OutcomeUnknown, match="our own earlier attempt"):
        client.update(PATIENT, if_match=3)
    assert len(responses.calls) == 2


@responses.activate
def test_update_returns_version_and_status(client: FhirClient) -> None:
    responses.put(
        f"{BASE}/Patient/p1", json={**PATIENT, "meta": {"versionId": "4"}}, headers={"ETag": 'W/"4"'}
    )
    result = client.update(PATIENT, if_match=3)
    assert result == Response(200, {**PATIENT, "meta": {"versionId": "4"}}, None, 'W/"4"')
    assert (result.created, result.version_id, result.id) == (False, "4", "p1")


@responses.activate
def test_conditional_create_that_matched_is_not_created(client: FhirClient) -> None:
    responses.post(
        f"{BASE}/ResearchStudy", status=200, json={**STUDY, "id": "s1", "meta": {"versionId": "2"}}
    )
    result = client.create(STUDY, if_none_exist="identifier=urn:nct|NCT1")
    assert (result.created, result.id, result.version_id) == (False, "s1", "2")
    assert responses.calls[0].request.headers["If-None-Exist"] == "identifier=urn:nct|NCT1"


@responses.activate
def test_conditional_update_puts_to_the_search_url(client: FhirClient) -> None:
    responses.put(
        f"{BASE}/ResearchStudy",
        status=201,
        json={**STUDY, "id": "s9"},
        match=[query({"identifier": "urn:nct|NCT1"})],
    )
    assert client.conditional_update(STUDY, {"identifier": "urn:nct|NCT1"}).created
    with pytest.raises(InputError):
        client.conditional_update(STUDY, "")


@responses.activate
def test_delete_and_vread(client: FhirClient) -> None:
    responses.delete(f"{BASE}/Patient/p1", status=204)
    responses.get(f"{BASE}/Patient/p1/_history/2", json=PATIENT)
    assert client.delete("Patient", "p1") == Response(204, None)
    assert client.vread("Patient", "p1", 2) == PATIENT


# -- paging ---------------------------------------------------------------------------------------


@responses.activate
def test_three_pages_with_absolute_and_relative_next_links(client: FhirClient) -> None:
    params = {"_count": "2", "_lastUpdated": "gt2024-01-01", "_has": "ResearchSubject:patient:study=s1"}
    responses.get(
        f"{BASE}/Patient",
        json=searchset(patient(1), patient(2), next_url=f"{BASE}?_getpages=abc&_getpagesoffset=2"),
        match=[query(params)],
    )
    responses.get(
        BASE,
        json=searchset(patient(3), patient(4), next_url="?_getpages=abc&_getpagesoffset=4"),
        match=[page_query(2)],
    )
    responses.get(BASE, json=searchset(patient(5)), match=[page_query(4)])
    assert [p["id"] for p in client.search("Patient", params)] == ["p1", "p2", "p3", "p4", "p5"]
    assert len(responses.calls) == 3


@pytest.mark.parametrize("link", ["Patient?page=2", "/fhir/Patient?page=2", f" {BASE}/Patient?page=2 "])
@responses.activate
def test_odd_next_links_resolve_against_the_base(client: FhirClient, link: str) -> None:
    responses.get(f"{BASE}/Patient", json=searchset(patient(1), next_url=link), match=[query({})])
    responses.get(f"{BASE}/Patient", json=searchset(patient(2)), match=[query({"page": "2"})])
    assert [p["id"] for p in client.search("Patient")] == ["p1", "p2"]


@responses.activate
def test_search_bundles_yields_pages_lazily(client: FhirClient) -> None:
    responses.get(
        f"{BASE}/Patient", json=searchset(patient(1), next_url=f"{BASE}/Patient?page=2"), match=[query({})]
    )
    responses.get(f"{BASE}/Patient", json=searchset(patient(2)), match=[query({"page": "2"})])
    pages = client.search_bundles("Patient")
    assert next(pages)["entry"][0]["resource"]["id"] == "p1"
    assert len(responses.calls) == 1  # the second page is fetched only when asked for
    assert next(pages)["entry"][0]["resource"]["id"] == "p2"
    assert list(pages) == []


@responses.activate
def test_paging_loop_is_detected(client: FhirClient) -> None:
    first = f"{BASE}/Patient?name=x"
    responses.get(
        f"{BASE}/Patient",
        json=searchset(patient(1), next_url=f"{BASE}/Patient?page=2"),
        match=[query({"name": "x"})],
    )
    responses.get(f"{BASE}/Patient", json=searchset(patient(2), next_url=first), match=[query({"page": "2"})])
    seen: list[str] = []
    with pytest.raises(PagingError, match="loop"):
        seen.extend(p["id"] for p in client.search("Patient", [("name", "x")]))
    assert seen == ["p1", "p2"]
    assert len(responses.calls) == 2


@responses.activate
def test_next_link_to_the_same_page_is_a_loop(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient", json=searchset(patient(1), next_url=f"{BASE}/Patient?_count=1"))
    with pytest.raises(PagingError, match="loop"):
        list(client.search("Patient", {"_count": "1"}))
    assert len(responses.calls) == 1


@responses.activate
def test_max_pages_guard(make: Any) -> None:
    for n in range(1, 4):
        responses.get(
            f"{BASE}/Patient",
            json=searchset(patient(n), next_url=f"{BASE}/Patient?page={n + 1}"),
            match=[query({"page": str(n)} if n > 1 else {})],
        )
    with pytest.raises(PagingError, match="max_pages=2"):
        list(make(max_pages=2).search("Patient"))
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/fhir?_getpages=abc",
        "//evil.example/fhir?x=1",
        "http://ehr.example.org/fhir?x=1",
        "https://ehr.example.org:8443/fhir?x=1",
    ],
)
@responses.activate
def test_next_link_to_another_server_is_refused(client: FhirClient, link: str) -> None:
    responses.get(f"{BASE}/Patient", json=searchset(patient(1), next_url=link))
    with pytest.raises(PagingError, match="another server") as caught:
        list(client.search("Patient"))
    assert "x=1" not in str(caught.value) and "_getpages" not in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
def test_include_entries_are_yielded_outcomes_are_not(client: FhirClient) -> None:
    bundle = searchset(patient(1))
    bundle["entry"] += [
        {"resource": {"resourceType": "ResearchSubject", "id": "rs1"}, "search": {"mode": "include"}},
        {"resource": {"resourceType": "Organization", "id": "o1"}},  # no search element
        {"resource": OUTCOME, "search": {"mode": "outcome"}},
    ]
    responses.get(f"{BASE}/Patient", json=bundle)
    found = [
        (r["resourceType"], r["id"]) for r in client.search("Patient", {"_include": "Patient:organization"})
    ]
    assert found == [("Patient", "p1"), ("ResearchSubject", "rs1"), ("Organization", "o1")]


@responses.activate
def test_search_page_retried_like_any_get(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(
        f"{BASE}/Patient", json=searchset(patient(1), next_url=f"{BASE}/Patient?page=2"), match=[query({})]
    )
    responses.get(f"{BASE}/Patient", body=dropped(), match=[query({"page": "2"})])
    responses.get(f"{BASE}/Patient", json=searchset(patient(2)), match=[query({"page": "2"})])
    assert [p["id"] for p in client.search("Patient")] == ["p1", "p2"]
    assert len(sleeps) == 1


def test_all_errors_share_the_project_base() -> None:
    for error in (FhirConnectionError, OutcomeUnknown, PagingError, VersionMismatch):
        assert issubclass(error, FhirClientError) and issubclass(error, TrialbridgeError)
