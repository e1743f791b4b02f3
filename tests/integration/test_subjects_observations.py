"""Enrolments and lab results against the real local HAPI FHIR servers, R4 and R5.

Proves: enrolling the fixture subjects twice (patients by conditional create) leaves one
ResearchSubject and one Patient each; a withdrawal updates the subject in place (same id, next
version); an unknown MRN without ``create_patients`` is rejected with the server's reason and creates
nothing, while the rest of its chunk is written; HAPI's validator finds no error in the Observations;
exact decimals survive the server (``27.0`` stays ``27.0`` in the raw JSON); the study's
Observations are found through its patients (``Patient?_has:ResearchSubject:<individual|subject>:study=``,
then ``Observation?subject=...``) and carry the study link; pulling the
seed study's outcome labs returns every fixture value in the window exactly once, converted to the
canonical unit (checked against values worked out by hand); a correction replaces the original in
place (same id, next version) and re-sending the original does not undo it.

The fixture enrolments and labs are pushed once per FHIR version through the web service (Flask test
client, real FHIR client), then checked with the library.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import uuid
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
import requests

from adapter.client import FhirClient
from adapter.config import ServiceConfig
from adapter.enrolments import enrol, study_subjects
from adapter.errors import FhirHttpError
from adapter.lab_results import push_observations
from adapter.observations import iter_outcome_observations, plan_pull, write_observations
from adapter.pull import find_study
from adapter.push import push_protocol
from adapter.service import create_app
from mappings.fhir.identity import conditional_url
from mappings.fhir.observations import LAB_RESULT_SYSTEM
from mappings.fhir.subjects import SUBJECT_SYSTEM
from mappings.outcomes import TimeFrame
from mappings.sources import read_protocol
from mappings.sources.trial_csv import read_enrolments, read_labs
from tests.conftest import ROOT, SEED
from tests.service_keys import KEY_ENV, keyed_client

pytestmark = pytest.mark.hapi

TRIAL = ROOT / "fixtures" / "trial"
NCT = "NCT03945487"
MRN_SYSTEM = "https://hospital.example.org/mrn"
OUTCOME_TESTS = ("ALB", "PTA", "TBIL", "CHE")


@pytest.fixture(scope="module")
def protocol():
    return read_protocol(SEED.read_bytes()).protocol


@pytest.fixture(scope="module")
def fixture_enrolments(protocol):
    good, _ = read_enrolments((TRIAL / "enrolments.csv").read_bytes(), protocol)
    return {e.subject_id: e for e in good}


@pytest.fixture(scope="module")
def fixture_labs(fixture_enrolments):
    good, _ = read_labs((TRIAL / "labs.csv").read_bytes(), NCT, subjects=fixture_enrolments.values())
    latest = {}
    for r in good:
        latest[r.result_id] = r  # a correction (later row, same id) wins
    return latest


def pushed_labs() -> tuple[str, set[str]]:
    """The lab CSV pushed: every row of the outcome tests, one row of each other test, unit, comparator
    and status (a sample for the validator), and the 10 error rows; and the sample's result ids.

    Not all 1,580 rows: the other rows prove nothing more here, and the local servers are shared by
    every test session (the sync tests push them all).
    """
    lines = (TRIAL / "labs.csv").read_text("utf-8").splitlines()
    kept, sample, seen = [lines[0]], set(), set()
    for line in lines[1:]:
        row = next(csv.reader([line]))
        test, value, unit, status, result_id = row[2], row[3], row[4], row[8], row[9]
        kind = (test, unit, value[:1] in "<>", status)
        if result_id.startswith("LIS-29") or test in OUTCOME_TESTS or kind not in seen:
            kept.append(line)
        if kind not in seen and not result_id.startswith("LIS-29"):
            seen.add(kind)
            sample.add(result_id)
    return "\n".join(kept) + "\n", sample


@pytest.fixture(scope="module")
def seeded(server_config, protocol):
    """The seed study, its 24 subjects (patients created) and its labs, pushed through the service."""
    with FhirClient(server_config) as c:
        push_protocol(c, protocol)
    name = server_config.name
    config = ServiceConfig(servers={name: server_config}, api_keys_env=KEY_ENV)
    app = create_app({"TESTING": True, "TRIALBRIDGE": config})
    web = keyed_client(app)
    enrolled = web.post(f"/studies/{NCT}/subjects?server={name}&createPatients=true",
                        data=(TRIAL / "enrolments.csv").read_bytes(), content_type="text/csv")
    assert enrolled.status_code in (200, 201), enrolled.get_data(as_text=True)
    text, sample = pushed_labs()
    labs = web.post(f"/studies/{NCT}/observations?server={name}", data=text.encode("utf-8"),
                    content_type="text/csv")
    assert labs.status_code in (200, 201), labs.get_data(as_text=True)
    return {"web": web, "name": name, "enrolled": enrolled.get_json(force=True),
            "labs": labs.get_json(force=True), "rows": text.count("\n") - 1, "sample": sample}


def count(client, resource_type, system, value):
    return sum(1 for _ in client.search(resource_type, {"identifier": f"{system}|{value}"}))


def subject_resource(client, subject_id):
    (rs,) = client.search("ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|{NCT}-{subject_id}"})
    return rs


def csv_text(*rows: str) -> list[str]:
    header = (TRIAL / "enrolments.csv").read_text("utf-8").splitlines()[0]
    return [line + "\n" for line in (header, *rows)]


def row_of(subject_id: str) -> str:
    return next(line for line in (TRIAL / "enrolments.csv").read_text("utf-8").splitlines()
                if line.startswith(subject_id + ","))


# --- enrolments ------------------------------------------------------------------------------------


def test_the_service_push_reports_every_row(seeded):
    enrolled, labs = seeded["enrolled"], seeded["labs"]
    assert enrolled["rejected"] == [] and len(enrolled["rows"]) == 24
    assert {r["patient"] for r in enrolled["rows"]} <= {"created", "unchanged", "matched"}
    assert sum(labs["counts"].values()) == seeded["rows"]
    assert labs["counts"]["rejected"] == 10
    assert sorted(r["key"] for r in labs["rejected"]) == [f"LIS-29{n:05d}" for n in range(1, 11)]


def test_enrolling_twice_keeps_one_subject_and_one_patient_each(seeded, client, fixture_enrolments):
    with open(TRIAL / "enrolments.csv", encoding="utf-8", newline="") as f:
        again = enrol(client, NCT, f, create_patients=True)
    assert again.rejected == [] and len(again.outcomes) == 24
    assert {o.outcome for o in again.outcomes} == {"unchanged"}
    assert {o.patient for o in again.outcomes} <= {"unchanged", "matched"}
    for e in fixture_enrolments.values():
        assert count(client, "ResearchSubject", SUBJECT_SYSTEM, f"{NCT}-{e.subject_id}") == 1
        assert count(client, "Patient", MRN_SYSTEM, e.patient.value) == 1


def test_subjects_read_back_as_they_were_enrolled(seeded, client, fixture_enrolments):
    study = find_study(client, NCT)
    read = {r.enrolment.subject_id: r.enrolment for r in study_subjects(client, study, with_patients=True)
            if r.enrolment is not None and r.enrolment.subject_id in fixture_enrolments}
    assert read == fixture_enrolments
    listed = seeded["web"].get(f"/studies/{NCT}/subjects?server={seeded['name']}").get_json(force=True)
    assert {s["subject_id"] for s in listed["subjects"]} >= set(fixture_enrolments)


def test_a_withdrawal_updates_the_subject_in_place(seeded, client):
    before = subject_resource(client, "S008")
    withdrawn = row_of("S008").replace(",follow-up,,,", ",withdrawn,2021-03-01,Adverse event,")
    try:
        result = enrol(client, NCT, csv_text(withdrawn))
        assert result.rejected == [] and result.outcomes[0].outcome == "updated"
        after = subject_resource(client, "S008")
        assert after["id"] == before["id"]
        assert int(after["meta"]["versionId"]) == int(before["meta"]["versionId"]) + 1
        (e,) = [r.enrolment for r in study_subjects(client, find_study(client, NCT))
                if r.enrolment and r.enrolment.subject_id == "S008"]
        assert (e.status, e.withdrawal_date, e.withdrawal_reason_code) == ("withdrawn", "2021-03-01",
                                                                          "adverseEvent")
    finally:
        enrol(client, NCT, csv_text(row_of("S008")))
    assert subject_resource(client, "S008")["id"] == before["id"]


def test_an_unknown_mrn_is_rejected_and_nothing_is_created(seeded, client):
    run = uuid.uuid4().hex[:10]
    stranger = row_of("S003").replace("S003,MRN-900113,", f"X{run},MRN-X{run},")
    result = enrol(client, NCT, csv_text(row_of("S001"), stranger))
    assert [o.key for o in result.outcomes] == ["S001"]  # the rest of the chunk is written
    (rejected,) = result.rejected
    assert rejected.key == f"X{run}" and "No resources match" in rejected.reason
    assert count(client, "ResearchSubject", SUBJECT_SYSTEM, f"{NCT}-X{run}") == 0
    assert count(client, "Patient", MRN_SYSTEM, f"MRN-X{run}") == 0


# --- observations ----------------------------------------------------------------------------------


def stored(client, result_id):
    (o,) = client.search("Observation", {"identifier": f"{LAB_RESULT_SYSTEM}|{result_id}"})
    return o


def test_pushed_observations_validate_on_hapi(seeded, client, fixture_labs):
    picked = [fixture_labs[i] for i in sorted(seeded["sample"])]
    assert {r.test_code for r in picked} == {"ALB", "PTA", "TBIL", "CHE", "ALT", "AST", "CREA", "UREA", "INR",
                                              "PLT", "HGB", "ALP", "GGT", "NA", "K", "AFP", "HBVDNA", "HBSAG"}
    assert {"corrected", "preliminary"} <= {r.status for r in picked} and any(r.comparator for r in picked)
    errors = []
    for r in picked:
        outcome = client.validate(stored(client, r.result_id))
        errors += [f"{r.result_id}: {i.get('diagnostics')}" for i in outcome.get("issue", [])
                   if i.get("severity") in ("error", "fatal")]
    assert errors == []


def test_exact_decimals_survive_the_server(seeded, client, fixture_labs):
    albumin, bilirubin = fixture_labs["LIS-2000047"], fixture_labs["LIS-2000078"]
    assert (str(albumin.value), str(albumin.ref_low), str(bilirubin.value)) == ("27.0", "40.0", "56.0")
    for result_id, element, text in [("LIS-2000047", "valueQuantity", "27.0"), ("LIS-2000047", "low", "40.0"),
                                     ("LIS-2000078", "valueQuantity", "56.0")]:
        raw = requests.get(f"{client.base_url}/Observation/{stored(client, result_id)['id']}",
                           headers={"Accept": "application/fhir+json"}, timeout=60).text
        pattern = rf'"{element}"\s*:\s*{{\s*"value"\s*:\s*{re.escape(text)}\s*[,}}]'
        assert re.search(pattern, raw), raw[:600]


def test_the_study_link_search_finds_the_observations(seeded, server_config, fhir_version, fixture_labs):
    """Two steps: the study's patients by ``_has`` (fast), then their Observations by code.

    The one-step chain ``Observation?patient._has:ResearchSubject:...:study=`` answers on a handful of
    resources but not on the seed data (HAPI 8.8 on H2: no answer within 2 minutes, the query left
    running), and the extension has no search parameter: HAPI refuses ``researchStudy`` (400).
    """
    quick = dataclasses.replace(server_config, timeout=(5.0, 60.0), max_retries=0)
    with FhirClient(quick) as client:
        study = find_study(client, NCT)
        link = "individual" if fhir_version == "R4" else "subject"
        patients = [f"Patient/{p['id']}" for p in client.search("Patient", {
            f"_has:ResearchSubject:{link}:study": f"ResearchStudy/{study['id']}", "_count": "100"})]
        assert len(patients) >= 24
        params = {"subject": ",".join(patients), "code": "http://loinc.org|1751-7", "_count": "200"}
        found = list(client.search("Observation", params))
        ids = Counter(i["value"] for o in found for i in o.get("identifier", [])
                      if i.get("system") == LAB_RESULT_SYSTEM)
        expected = {r.result_id for r in fixture_labs.values() if r.loinc_code == "1751-7"}
        assert set(ids) >= expected and all(ids[i] == 1 for i in expected)
        for o in found:
            if o["identifier"][0]["value"] in expected:
                (link_ext,) = [x for x in o["extension"] if x["url"].endswith("/workflow-researchStudy")]
                assert link_ext["valueReference"]["reference"] == f"ResearchStudy/{study['id']}"
        with pytest.raises(FhirHttpError) as refused:
            next(client.search("Observation", {"researchStudy": f"ResearchStudy/{study['id']}"}))
        assert refused.value.status == 400


def expected_pull(fixture_enrolments, fixture_labs, grace_days=7):
    out = {}
    for r in fixture_labs.values():
        e = fixture_enrolments[r.subject_id]
        start = date.fromisoformat(e.enrolment_date)
        day = date.fromisoformat(r.effective[:10])
        if r.test_code in OUTCOME_TESTS and start <= day <= start + timedelta(weeks=96, days=grace_days):
            out[(r.subject_id, r.effective, r.test_code)] = r
    return out


def test_pulling_the_outcome_labs_returns_every_value_once(seeded, client, fixture_enrolments, fixture_labs):
    plan = plan_pull(client, NCT)
    assert (plan.tests, plan.window, plan.grace_days) == (OUTCOME_TESTS, TimeFrame(96, "week"), 7)
    out = io.StringIO()
    n = write_observations(iter_outcome_observations(client, plan, page_size=50), out, "csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert n == len(rows)
    test_of = {"1751-7": "ALB", "5894-1": "PTA", "14631-6": "TBIL", "2098-2": "CHE"}
    got = Counter((r["subject"], r["time"], test_of[r["code"]]) for r in rows)
    expected = expected_pull(fixture_enrolments, fixture_labs)
    assert set(got) == set(expected) and set(got.values()) == {1}
    assert len(expected) == 4 * 106  # every visit; the 3 week-96 visits on day 674 thanks to the grace days
    for row in rows:
        r = expected[(row["subject"], row["time"], test_of[row["code"]])]
        assert row["arm"] == fixture_enrolments[r.subject_id].arm
        assert Decimal(row["value"]) == r.normalized.value and row["unit"] == r.normalized.unit
        start = date.fromisoformat(fixture_enrolments[r.subject_id].enrolment_date)
        assert int(row["days_since_enrolment"]) == (date.fromisoformat(r.effective[:10]) - start).days
    # by hand: bilirubin 584.673 g/mol, so 1 mg/dL = 10 mg/L / 584.673 g/mol = 17.1035 umol/L
    by_key = {(r["subject"], r["time"], r["code"]): r for r in rows}
    s005 = [r for r in fixture_labs.values() if r.subject_id == "S005" and r.test_code == "TBIL"]
    first = min(s005, key=lambda r: r.effective)
    assert (first.value, first.unit) == (Decimal("2.88"), "mg/dL")
    assert by_key[("S005", first.effective, "14631-6")]["value"] == "49.26"  # 2.88 x 17.1035 = 49.258
    alb = min((r for r in fixture_labs.values() if r.subject_id == "S005" and r.test_code == "ALB"),
              key=lambda r: r.effective)
    assert alb.unit == "g/dL"  # g/dL -> g/L: the decimal point moves, nothing is rounded
    assert Decimal(by_key[("S005", alb.effective, "1751-7")]["value"]) == alb.value * 10


def test_the_ndjson_pull_keeps_exact_decimals(seeded, client, fixture_enrolments, fixture_labs):
    plan = plan_pull(client, NCT, tests=["ALB"], window=TimeFrame(96, "week"), grace_days=0)
    out = io.StringIO()
    n = write_observations(iter_outcome_observations(client, plan), out, "ndjson")
    lines = out.getvalue().splitlines()
    albumin = [k for k in expected_pull(fixture_enrolments, fixture_labs, grace_days=0) if k[2] == "ALB"]
    assert n == len(lines) == len(albumin) == 106 - 3
    albumin_27 = next(line for line in lines if '"LIS-2000047"' in line)
    assert '"value":27.0,' in albumin_27


def test_a_correction_replaces_the_original_in_place(seeded, client, fixture_labs):
    study = find_study(client, NCT)
    subject = {r.enrolment.subject_id: r.patient_ref for r in study_subjects(client, study) if r.enrolment}
    original = next(r for r in fixture_labs.values() if r.subject_id == "S008" and r.test_code == "CREA")
    original = dataclasses.replace(original, result_id=f"LIS-T{uuid.uuid4().hex[:10]}", status="final",
                                   value=Decimal("43"))
    corrected = dataclasses.replace(original, status="corrected", value=Decimal("64"))
    kwargs = {"study_ref": f"ResearchStudy/{study['id']}", "subject_refs": subject}
    try:
        assert push_observations(client, [original], **kwargs).counts == {"created": 1}
        first = stored(client, original.result_id)
        assert push_observations(client, [corrected], **kwargs).counts == {"updated": 1}
        second = stored(client, original.result_id)
        assert second["id"] == first["id"]
        assert int(second["meta"]["versionId"]) == int(first["meta"]["versionId"]) + 1
        assert (second["status"], second["valueQuantity"]["value"]) == ("corrected", 64)
        # the original sent again (a file re-read) does not bring back the corrected value
        assert push_observations(client, [original], **kwargs).counts == {"superseded": 1}
        assert stored(client, original.result_id)["meta"]["versionId"] == second["meta"]["versionId"]
        # both in one push: applied in order, in two transactions
        both = dataclasses.replace(original, result_id=original.result_id + "b")
        done = push_observations(client, [both, dataclasses.replace(both, status="corrected",
                                                                    value=Decimal("64"))], **kwargs)
        assert done.counts == {"created": 1, "updated": 1}
    finally:
        for rid in (original.result_id, original.result_id + "b"):
            for o in client.search("Observation", {"identifier": conditional_url(
                    "Observation", LAB_RESULT_SYSTEM, rid).partition("identifier=")[2]}):
                client.delete("Observation", o["id"])


def test_the_service_streams_the_same_pull(seeded, client):
    web = seeded["web"]
    resp = web.get(f"/studies/{NCT}/observations?server={seeded['name']}&format=csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["X-Trialbridge-Tests"] == "ALB,PTA,TBIL,CHE"
    body = resp.get_data(as_text=True)
    out = io.StringIO()
    write_observations(iter_outcome_observations(client, plan_pull(client, NCT)), out, "csv")
    assert body == out.getvalue()

