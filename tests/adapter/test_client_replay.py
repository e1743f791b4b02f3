"""adapter.client: replays that overlap our own earlier attempts, still running at the server.

Found by the fault run (tests/integration/test_faults.py):

* a transaction of conditional PUTs whose connection drops after HAPI received it is replayed
  while HAPI is still writing the first attempt; HAPI refuses the overlapping conditional create
  with 409 (HAPI-2745) and rolls the replay back, while the first attempt commits.  The push had
  succeeded, but the client reported a conflict: now the 409 is retried;
* with two attempts in doubt still running, a third one that updates the new resource releases
  HAPI's duplicate guard and the slower attempt creates a second copy: now a request that creates
  through a search is not replayed after a second attempt in doubt.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirConnectionError, FhirHttpError, OutcomeUnknown, PreconditionFailed, ServerError

BASE = "https://ehr.example.org/fhir"
CONFLICT = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "processing",
            "diagnostics": "HAPI-0550: HAPI-2745: The operation has failed with a conditional constraint "
            "failure. This generally means that two clients/threads were trying to perform a "
            "conditional create or update at the same time",
        }
    ],
}
STUDY = {"resourceType": "ResearchStudy", "identifier": [{"system": "urn:nct", "value": "NCT1"}]}
PATIENT = {"resourceType": "Patient", "id": "p1"}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {"resource": STUDY, "request": {"method": "PUT", "url": "ResearchStudy?identifier=urn:nct|NCT1"}}
    ],
}
ANSWER = {
    "resourceType": "Bundle",
    "type": "transaction-response",
    "entry": [{"response": {"status": "200 OK"}}],
}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(sleeps: list[float]) -> Any:
    def factory(**options: Any) -> FhirClient:
        return FhirClient(ServerConfig.from_url(BASE, **options), sleep=sleeps.append)

    return factory


def dropped() -> requests.ConnectionError:
    """A connection dropped after the request was sent."""
    return requests.ConnectionError("Connection aborted: RemoteDisconnected")


@pytest.mark.parametrize(
    "first",
    [
        {"body": dropped()},
        {"body": requests.ReadTimeout("read timed out")},
        {"status": 504},
        {"status": 502},
    ],
    ids=["dropped", "read-timeout", "504", "502"],
)
@responses.activate
def test_conflict_after_an_attempt_that_may_have_landed_is_retried(
    make: Any, sleeps: list[float], first: dict[str, Any]
) -> None:
    responses.post(BASE, **first)
    responses.post(BASE, status=409, json=CONFLICT)
    responses.post(BASE, json=ANSWER)
    assert make().transaction(BUNDLE) == ANSWER
    assert len(responses.calls) == 3 and len(sleeps) == 2


@responses.activate
def test_conflict_to_a_first_attempt_stays_an_error(make: Any, sleeps: list[float]) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    with pytest.raises(FhirHttpError) as caught:
        make().transaction(BUNDLE)
    assert caught.value.status == 409
    assert len(responses.calls) == 1 and sleeps == []


@responses.activate
def test_conflict_after_a_503_is_not_retried(make: Any) -> None:
    """A 503 says the server did not process the request: nothing of ours is in flight."""
    responses.post(BASE, status=503)
    responses.post(BASE, status=409, json=CONFLICT)
    with pytest.raises(FhirHttpError) as caught:
        make().transaction(BUNDLE)
    assert caught.value.status == 409 and len(responses.calls) == 2


@responses.activate
def test_a_lasting_conflict_is_raised_after_max_retries(make: Any, sleeps: list[float]) -> None:
    responses.post(BASE, body=dropped())
    responses.post(BASE, status=409, json=CONFLICT)
    with pytest.raises(FhirHttpError, match="HAPI-2745") as caught:
        make(max_retries=3).transaction(BUNDLE)
    assert caught.value.status == 409
    assert len(responses.calls) == 4 and len(sleeps) == 3


@responses.activate
def test_unsafe_post_is_still_not_replayed(make: Any) -> None:
    responses.post(f"{BASE}/ResearchStudy", body=dropped())
    with pytest.raises(OutcomeUnknown):
        make().create(STUDY)
    assert len(responses.calls) == 1


@pytest.mark.parametrize("refusal", [409, 412])
@responses.activate
def test_if_match_refused_after_a_gateway_error_is_outcome_unknown(make: Any, refusal: int) -> None:
    """After a 504 our first attempt may have moved the version on: not a plain precondition failure."""
    responses.put(f"{BASE}/Patient/p1", status=504)
    responses.put(f"{BASE}/Patient/p1", status=refusal, json=CONFLICT)
    with pytest.raises(OutcomeUnknown, match="our own earlier attempt"):
        make().update(PATIENT, if_match=3)
    assert len(responses.calls) == 2


@responses.activate
def test_if_match_refused_on_a_first_attempt_is_precondition_failed(make: Any) -> None:
    responses.put(f"{BASE}/Patient/p1", status=412, json=CONFLICT)
    with pytest.raises(PreconditionFailed):
        make().update(PATIENT, if_match=3)


# -- no third overlapping attempt of a request that creates through a search ---------------------


def timed_out() -> requests.ReadTimeout:
    return requests.ReadTimeout("read timed out")


@pytest.mark.parametrize("second", [dropped(), timed_out()], ids=["dropped", "read-timeout"])
@responses.activate
def test_a_second_attempt_in_doubt_is_not_replayed(make: Any, sleeps: list[float], second: Exception) -> None:
    responses.post(BASE, body=dropped())
    responses.post(BASE, body=second)
    responses.post(BASE, json=ANSWER)
    with pytest.raises(
        FhirConnectionError, match="may still be running at the server.*retry later"
    ) as caught:
        make(max_retries=5).transaction(BUNDLE)
    assert not isinstance(caught.value, OutcomeUnknown)
    assert len(responses.calls) == 2 and len(sleeps) == 1


@responses.activate
def test_conditional_update_and_create_are_not_replayed_twice(make: Any) -> None:
    responses.put(f"{BASE}/ResearchStudy", body=timed_out())
    responses.post(f"{BASE}/ResearchStudy", body=dropped())
    client = make(max_retries=5)
    with pytest.raises(FhirConnectionError, match="may still be running"):
        client.conditional_update(STUDY, {"identifier": "urn:nct|NCT1"})
    with pytest.raises(FhirConnectionError, match="may still be running"):
        client.create(STUDY, if_none_exist={"identifier": "urn:nct|NCT1"})
    assert len(responses.calls) == 4


@pytest.mark.parametrize("first", [{"status": 504}, {"body": dropped()}], ids=["504", "dropped"])
@responses.activate
def test_a_gateway_error_after_an_attempt_in_doubt_is_raised(make: Any, first: dict[str, Any]) -> None:
    responses.post(BASE, **first)
    responses.post(BASE, status=504)
    responses.post(BASE, json=ANSWER)
    with pytest.raises(ServerError) as caught:
        make(max_retries=5).transaction(BUNDLE)
    assert caught.value.status == 504 and len(responses.calls) == 2


@responses.activate
def test_answers_that_were_not_processed_do_not_count(make: Any) -> None:
    """503 and 429 say the server did not process the attempt: nothing of it is running."""
    responses.post(BASE, body=dropped())
    responses.post(BASE, status=503)
    responses.post(BASE, status=429)
    responses.post(BASE, json=ANSWER)
    assert make(max_retries=5).transaction(BUNDLE) == ANSWER
    assert len(responses.calls) == 4


@pytest.mark.parametrize(
    ("method", "url", "call"),
    [
        ("GET", f"{BASE}/Patient/p1", lambda c: c.read("Patient", "p1")),
        ("PUT", f"{BASE}/Patient/p1", lambda c: c.update(PATIENT)),
        ("DELETE", f"{BASE}/Patient/p1", lambda c: c.delete("Patient", "p1")),
        (
            "POST",
            BASE,
            lambda c: c.transaction(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [{"resource": PATIENT, "request": {"method": "PUT", "url": "Patient/p1"}}],
                }
            ),
        ),
    ],
    ids=["read", "update-by-id", "delete", "transaction-by-id"],
)
@responses.activate
def test_requests_that_cannot_create_a_second_copy_are_replayed_as_before(
    make: Any, method: str, url: str, call: Any
) -> None:
    body = ANSWER if method == "POST" else PATIENT
    responses.add(method, url, body=dropped())
    responses.add(method, url, body=timed_out())
    responses.add(method, url, body=dropped())
    responses.add(method, url, json=body)
    call(make(max_retries=5))
    assert len(responses.calls) == 4
