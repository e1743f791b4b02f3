"""Pre-screening against the real local HAPI servers, R4 and R5: the seed study pushed with its
computable criteria (validated by HAPI), the SYNTHETIC fixture patients loaded (idempotently), and
each patient's verdict with its evidence through the library, the CLI and the service."""

from __future__ import annotations

import copy
import datetime
import importlib.util
import json
from collections.abc import Iterator

import pytest

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.prescreen import PrescreenResult, prescreen, study_criteria
from adapter.pull import find_study
from adapter.push import push_protocol
from adapter.service import create_app
from mappings.fhir.criteria import is_derived
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED
from tests.service_keys import KEY_ENV, keyed_client

pytestmark = pytest.mark.hapi

NCT = "NCT03945487"
FIXTURES = ROOT / "fixtures" / "prescreen"
_spec = importlib.util.spec_from_file_location("prescreen_fixtures", FIXTURES / "generate.py")
assert _spec and _spec.loader
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
AS_OF = datetime.date.fromisoformat(fixtures.AS_OF)
KEYS = list(fixtures.PATIENTS)


def load_patients(client: FhirClient) -> dict:
    return client.transaction(copy.deepcopy(json.loads((FIXTURES / "patients.json").read_text("utf-8"))))


def patient_ids(client: FhirClient) -> dict[str, str]:
    out = {}
    for key in KEYS:
        ident = f"{fixtures.PATIENT_SYSTEM}|{fixtures.patient_key(key)}"
        found = list(client.search("Patient", {"identifier": ident}))
        assert len(found) == 1, key
        out[key] = found[0]["id"]
    return out


@pytest.fixture(scope="session")
def loaded(server_config: ServerConfig) -> Iterator[dict[str, str]]:
    """The seed study pushed and the fixture patients loaded on this server: key -> Patient id."""
    with FhirClient(server_config) as c:
        push_protocol(c, read_protocol(SEED.read_bytes()).protocol)
        load_patients(c)
        yield patient_ids(c)


def test_the_fixture_file_is_what_the_generator_writes():
    assert (FIXTURES / "patients.json").read_text("utf-8") == fixtures.text()


def test_loading_the_patients_again_changes_nothing(client, loaded):
    answer = load_patients(client)
    assert {e["response"]["status"].split()[0] for e in answer["entry"]} == {"200"}
    assert patient_ids(client) == loaded


def test_the_fixture_resources_pass_hapi_validation(client, loaded):
    errors = []
    for pid in loaded.values():
        stored = [client.read("Patient", pid),
                  *client.search("Condition", {"subject": f"Patient/{pid}"}),
                  *client.search("Observation", {"subject": f"Patient/{pid}"})]
        for resource in stored:
            errors += [f"{resource['resourceType']}/{resource['id']}: {i.get('diagnostics')}"
                       for i in client.validate(resource).get("issue", [])
                       if i.get("severity") in ("error", "fatal")]
    assert errors == []


def test_the_stored_group_carries_the_computable_criteria_and_validates(client, loaded):
    study = find_study(client, NCT)
    ref = (study.get("enrollment") or [None])[0] or study["recruitment"]["eligibility"]
    group = client.read("Group", ref["reference"].split("/")[-1])
    if client.config.fhir_version == "R4":
        derived = [c for c in group["characteristic"] if is_derived(c)]
        assert len(derived) == 6
    else:
        (ev,) = group["contained"]
        assert ev["resourceType"] == "EvidenceVariable"
        assert [c["linkId"] for c in ev["characteristic"]] == [
            "inclusion-1", "inclusion-2", "inclusion-3", "exclusion-1", "exclusion-2", "exclusion-3"]
        (link,) = [c for c in group["characteristic"] if is_derived(c)]
        assert link["valueReference"]["reference"] == "#" + ev["id"]
    issues = client.validate(group).get("issue", [])
    assert [i for i in issues if i.get("severity") in ("error", "fatal")] == []


# --- the library ---------------------------------------------------------------------------------


def results_by_label(result: PrescreenResult) -> dict[str, dict]:
    return {row["criterion"]: row for row in result.to_json()["results"]}


def references(row: dict) -> list[str]:
    return [e["reference"] for e in row["evidence"] if "reference" in e]


@pytest.fixture(scope="session")
def criteria(server_config: ServerConfig, loaded) -> list:
    with FhirClient(server_config) as c:
        return study_criteria(c, NCT)


@pytest.mark.parametrize("key", KEYS)
def test_each_patient_gets_the_expected_verdict_with_evidence(client, loaded, key):
    pid = loaded[key]
    result = prescreen(client, NCT, pid, as_of=AS_OF)
    data = result.to_json()
    assert data["verdict"] == fixtures.EXPECTED[key]
    assert (data["patient"], data["study"], data["asOf"]) == (f"Patient/{pid}", NCT, fixtures.AS_OF)
    rows = results_by_label(result)
    against = data["failedInclusion"] + data["metExclusion"]
    decisive = {r["criterion"] for r in data["results"] if r["n"] in against}
    assert set(rows["inclusion 4"]["text"].split()) == {"Written", "consent."}
    assert rows["inclusion 4"]["n"] in data["toConfirm"]
    if key == "eligible":
        assert decisive == set() and data["unknown"] == [] and data["review"] == []
        hbsag = rows["inclusion 3"]
        assert hbsag["outcome"] == "met"
        assert any(r.startswith("Observation/") for r in references(hbsag))
        assert any(r.startswith("Condition/") for r in references(rows["inclusion 2"]))
    elif key == "too-old":
        assert decisive == {"age", "inclusion 1"}
        assert rows["age"]["evidence"] == [{"description": "birth date", "reference": f"Patient/{pid}",
                                            "value": "1948-02-20", "date": "1948-02-20"}]
        assert "age 77 years" in rows["age"]["reason"]
    elif key == "hcc":
        assert decisive == {"exclusion 1"}
        (ref,) = references(rows["exclusion 1"])
        condition = client.read("Condition", ref.split("/")[1])
        assert condition["code"]["coding"][0]["code"] == "25370001"
        assert rows["exclusion 1"]["evidence"][0]["date"] == "2025-05-14"
    elif key == "pregnant":
        assert decisive == {"exclusion 3"}
        (evidence,) = rows["exclusion 3"]["evidence"]
        assert evidence["reference"].startswith("Observation/")
        assert (evidence["value"], evidence["date"]) == ("pregnant", "2025-06-20")
    elif key == "hbsag-negative":
        assert decisive == {"inclusion 3"}
        values = {e.get("value") for e in rows["inclusion 3"]["evidence"]}
        assert values == {"negative"}
        assert all(r.startswith("Observation/") for r in references(rows["inclusion 3"]))
    else:
        assert decisive == set()
        unknown = {r["criterion"] for r in data["results"] if r["n"] in data["unknown"]}
        assert {"healthy_volunteers", "inclusion 2", "inclusion 3", "exclusion 1", "exclusion 3"} <= unknown
        assert rows["inclusion 2"]["evidence"] == []


def test_criteria_read_once_give_the_same_verdicts(client, loaded, criteria):
    for key, pid in loaded.items():
        result = prescreen(client, NCT, f"Patient/{pid}", as_of=AS_OF, criteria=criteria)
        assert result.verdict.status.value == fixtures.EXPECTED[key]


# --- the CLI -------------------------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["prescreen", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_verdicts(capsys, server_config, loaded):
    for key, pid in loaded.items():
        code, out, err = run_cli(capsys, "--study", NCT, "--patient", pid, "--server", server_config.base_url,
                                 "--fhir-version", server_config.fhir_version, "--as-of", fixtures.AS_OF,
                                 "--json")
        assert code == 0, err
        assert json.loads(out)["verdict"] == fixtures.EXPECTED[key]


def test_cli_table(capsys, server_config, loaded):
    code, out, _ = run_cli(capsys, "--study", NCT, "--patient", f"Patient/{loaded['hcc']}", "--server",
                           server_config.base_url, "--as-of", fixtures.AS_OF)
    assert code == 0
    assert "verdict: NOT ELIGIBLE" in out
    assert any(line.startswith("  8 !! exclusion 1") for line in out.splitlines())
    assert "[Condition/" in out


def test_cli_errors_are_one_line(capsys, server_config, loaded):
    base = ["--study", NCT, "--server", server_config.base_url, "--as-of", fixtures.AS_OF]
    code, out, err = run_cli(capsys, *base, "--patient", "no-such-patient-4711")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("trialbridge: error: ")
    assert "Patient/no-such-patient-4711" in err
    code, _, err = run_cli(capsys, *base, "--patient", "Patient/not valid")
    assert code == 2 and err.count("\n") == 1
    code, _, err = run_cli(capsys, *base[2:], "--study", "NCT123", "--patient", loaded["eligible"])
    assert code == 2 and "NCT number" in err
    code, _, err = run_cli(capsys, *base[:4], "--as-of", "30/06/2025", "--patient", loaded["eligible"])
    assert code == 2 and "--as-of" in err


# --- the service ---------------------------------------------------------------------------------


@pytest.fixture
def service(server_config):
    config = ServiceConfig(servers={server_config.name: server_config}, api_keys_env=KEY_ENV)
    app = create_app({"TESTING": True, "TRIALBRIDGE": config})
    return keyed_client(app), server_config.name


def test_service_verdicts(service, loaded):
    service, name = service
    for key, pid in loaded.items():
        resp = service.post(f"/studies/{NCT}/prescreen?server={name}",
                            json={"patient": f"Patient/{pid}", "asOf": fixtures.AS_OF})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.mimetype == "application/fhir+json"
        assert resp.get_json(force=True)["verdict"] == fixtures.EXPECTED[key]


def outcome(resp, status: int) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
    return body["issue"][0]["diagnostics"]


def test_service_errors(service, loaded):
    service, name = service
    url = f"/studies/{NCT}/prescreen?server={name}"
    unknown = service.post(url, json={"patient": "no-such-patient-4711"})
    assert "no Patient/no-such-patient-4711" in outcome(unknown, 404)
    assert "'patient' is required" in outcome(service.post(url, json={"id": loaded["eligible"]}), 400)
    assert "JSON object" in outcome(service.post(url, data=b"[1", content_type="application/json"), 400)
    assert "not a patient id" in outcome(service.post(url, json={"patient": "a b"}), 400)
    eligible = loaded["eligible"]
    assert "asOf" in outcome(service.post(url, json={"patient": eligible, "asOf": "yesterday"}), 400)
    bad_nct = service.post(f"/studies/NCT1/prescreen?server={name}", json={"patient": "1"})
    assert "NCT number" in outcome(bad_nct, 400)
    outcome(service.post(url, data=b"patient=1", content_type="text/plain"), 415)
    no_study = service.post(f"/studies/NCT99999999/prescreen?server={name}", json={"patient": eligible})
    assert "no ResearchStudy" in outcome(no_study, 404)
