"""Bulk Data pulls against the real local HAPI FHIR servers, R4 and R5 (``$export`` enabled in hapi/).

Proves: both servers offer ``Patient/$export`` in their CapabilityStatement; the seed study's outcome
labs pulled with one export are the paged pull's, row for row (the CSV rows and the NDJSON lines,
order aside: the export comes in the order of its files); a job closed while it runs is cancelled at
the server (its status then answers 404 "cancelled"); a kick-off naming an unknown patient is refused
(:class:`~adapter.errors.ExportRefused`: the pull would page instead); a search of several ids at once
(HAPI's lookup of (type, id) pairs, which ``hapi/`` hands H2 as a row-value IN list and which the
export's write step runs for every id it writes) answers exactly the listed resources of the type.
"""

from __future__ import annotations

import pytest

from adapter.bulk import ExportRequest, offers_export, start
from adapter.client import FhirClient
from adapter.enrolments import study_subjects
from adapter.errors import ExportRefused, NotFound
from adapter.observations import csv_lines, iter_outcome_observations, ndjson_lines, plan_pull
from adapter.pull import find_study
from tests.integration.test_subjects_observations import (  # noqa: F401  (fixtures)
    NCT,
    fixture_enrolments,
    fixture_labs,
    protocol,
    seeded,
)

pytestmark = pytest.mark.hapi


def test_both_servers_offer_patient_export(client: FhirClient) -> None:
    capabilities = client.capabilities()
    assert offers_export(capabilities, "patient") and offers_export(capabilities, "system")


def test_the_bulk_pull_equals_the_paged_pull_row_for_row(seeded, client: FhirClient) -> None:  # noqa: F811
    plan = plan_pull(client, NCT)
    paged = list(iter_outcome_observations(client, plan, bulk="never"))
    bulk = list(iter_outcome_observations(client, plan, bulk="always"))
    assert len(paged) == len(bulk) == 4 * 106  # test_subjects_observations: every visit of the 4 tests
    paged_csv, bulk_csv = list(csv_lines(paged)), list(csv_lines(bulk))
    assert paged_csv[0] == bulk_csv[0] and sorted(paged_csv) == sorted(bulk_csv)
    assert sorted(ndjson_lines(paged)) == sorted(ndjson_lines(bulk))  # the server's resources, byte for byte


def test_closing_a_running_export_cancels_it(seeded, client: FhirClient) -> None:  # noqa: F811
    study = find_study(client, NCT)
    patients = tuple(r.patient_ref for r in study_subjects(client, study) if r.patient_ref)
    export = start(client, ExportRequest(types=("Observation",), patients=patients))
    export.close()
    with pytest.raises(NotFound, match="cancelled"):
        client.send("GET", export.status_url, headers={"Accept": "application/json"})


def test_a_kick_off_for_an_unknown_patient_is_refused(client: FhirClient) -> None:
    with pytest.raises(ExportRefused):
        start(client, ExportRequest(types=("Observation",), patients=("Patient/no-such-patient-x",)))


def test_a_search_of_several_ids_answers_exactly_those(seeded, client: FhirClient) -> None:  # noqa: F811
    study = find_study(client, NCT)
    patients = sorted(r.patient_ref.split("/")[-1] for r in study_subjects(client, study) if r.patient_ref)
    observation = next(client.search("Observation", {"subject": f"Patient/{patients[0]}", "_count": "1"}))
    ids = [*patients, observation["id"], "no-such-id-x"]  # an Observation's id is no Patient's
    found = sorted(p["id"] for p in client.search("Patient", {"_id": ",".join(ids)}))
    assert found == patients and len(patients) >= 2
