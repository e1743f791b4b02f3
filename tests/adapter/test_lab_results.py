"""Lab results pushed as Observations (adapter.lab_results) against a server faked with ``responses``:
what a refusal becomes -- an error for the caller (401/403/408/409/429, a 5xx) or rejected rows
(a 4xx verdict on the content: 400/422) -- and the batch fallback's 409 policy and locks.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import responses

from adapter import locks
from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirHttpError, TooManyRequests, Unauthorized
from adapter.lab_results import push_observations
from mappings.enrolments import PatientIdentifier
from mappings.lab_results import LabResult

BASE = "http://fhir.test/fhir"
NCT = "NCT03945487"
MRN = "https://hospital.example.org/mrn"
SUBJECTS = {"S001": "Patient/p1"}
OUTCOME = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-2745: conflict"}]}
INVALID = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad value"}]}


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch) -> Any:
    monkeypatch.setenv("TRIALBRIDGE_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


@pytest.fixture
def client() -> FhirClient:
    return FhirClient(ServerConfig.from_url(BASE, max_retries=0, conflict_pause=0))


def lab(result_id: str) -> LabResult:
    return LabResult(study=NCT, subject_id="S001", patient=PatientIdentifier("MRN-900105", MRN),
                     result_id=result_id, test_code="TBIL", loinc_code="14631-6", loinc_display="x",
                     value=Decimal("20.5"), effective="2019-06-08T08:45:00+08:00", status="final",
                     unit="umol/L", unit_text="umol/L")


def created(n: int) -> dict[str, Any]:
    return {"response": {"status": "201 Created", "location": f"Observation/{n}/_history/1"}}


def conflict() -> dict[str, Any]:
    return {"response": {"status": "409 Conflict", "outcome": OUTCOME}}


def batch_response(*entries: dict[str, Any]) -> tuple[int, dict, str]:
    return 200, {}, json.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": list(entries)})


def push(client: FhirClient, *ids: str):
    return push_observations(client, [lab(i) for i in ids], study_ref="ResearchStudy/s1",
                             subject_refs=SUBJECTS)


def no_later_states() -> None:
    responses.get(f"{BASE}/Observation", json={"resourceType": "Bundle", "type": "searchset", "entry": []})


def sent_bundles() -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_a_409_inside_the_batch_fallback_is_retried_not_a_rejected_row(client: FhirClient) -> None:
    """Regression: a 409 answering one batch entry was recorded as a rejected row."""
    no_later_states()
    answers = iter([
        (400, {}, json.dumps(INVALID)),          # the transaction: one entry refused, all rolled back
        batch_response(created(1), conflict()),  # the batch: the second races a concurrent writer
        batch_response(created(2)),              # sent again on its own: it passes
    ])
    responses.add_callback(responses.POST, BASE, callback=lambda request: next(answers))
    result = push(client, "LIS-1", "LIS-2")
    assert result.rejected == [] and result.counts == {"created": 2}
    bundles = sent_bundles()
    assert [b["type"] for b in bundles] == ["transaction", "batch", "batch"]
    assert len(bundles[2]["entry"]) == 1 and bundles[2]["entry"][0] == bundles[1]["entry"][1]


@responses.activate
def test_a_lasting_409_inside_the_batch_is_an_error_for_the_caller(client: FhirClient) -> None:
    no_later_states()
    answers = iter([(400, {}, json.dumps(INVALID)), batch_response(created(1), conflict())])
    responses.add_callback(responses.POST, BASE,
                           callback=lambda request: next(answers, None) or batch_response(conflict()))
    with pytest.raises(FhirHttpError, match="HAPI-2745") as caught:
        push(client, "LIS-1", "LIS-2")
    assert caught.value.status == 409
    assert len(sent_bundles()) == 2 + client.config.conflict_retries


@responses.activate
def test_the_batch_fallback_holds_this_hosts_locks(client: FhirClient, monkeypatch) -> None:
    no_later_states()
    held: list[list[str]] = []
    real_hold = locks.hold

    def spy(scope: str, keys: Any, timeout: float = locks.LOCK_TIMEOUT) -> Any:
        held.append(sorted(keys))
        return real_hold(scope, keys, timeout)

    monkeypatch.setattr("adapter.writes.locks.hold", spy)
    answers = iter([(400, {}, json.dumps(INVALID)), batch_response(created(1), created(2))])
    responses.add_callback(responses.POST, BASE, callback=lambda request: next(answers))
    push(client, "LIS-1", "LIS-2")
    assert len(held) == 2 and held[0] == held[1] and len(held[1]) == 2
    assert all(key.startswith("Observation?identifier=") for key in held[1])


@pytest.mark.parametrize("status", [400, 422])
@responses.activate
def test_a_content_refusal_rejects_exactly_the_bad_rows(client: FhirClient, status: int) -> None:
    no_later_states()
    bad = {"response": {"status": f"{status} Refused", "outcome": INVALID}}
    answers = iter([(status, {}, json.dumps(INVALID)), batch_response(created(1), bad)])
    responses.add_callback(responses.POST, BASE, callback=lambda request: next(answers))
    result = push(client, "LIS-1", "LIS-2")
    assert result.counts == {"created": 1, "rejected": 1}
    assert [(r.key, r.reason) for r in result.rejected] == [("LIS-2", "error/invalid: bad value")]


@pytest.mark.parametrize(("status", "error"), [(401, Unauthorized), (403, Unauthorized),
                                                (408, FhirHttpError), (409, FhirHttpError),
                                                (429, TooManyRequests)])
@responses.activate
def test_a_not_now_or_not_you_answer_is_an_error_not_rejected_rows(client: FhirClient, status: int,
                                                                   error: type[Exception]) -> None:
    no_later_states()
    responses.post(BASE, status=status, json=OUTCOME)
    with pytest.raises(error) as caught:
        push(client, "LIS-1", "LIS-2")
    assert caught.value.status == status
    assert all(b["type"] == "transaction" for b in sent_bundles())  # no batch "to find the bad row"
