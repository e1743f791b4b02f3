"""The terminology server path (adapter/terminology.py) against the real local HAPI R4 server.

HAPI JPA answers ``ValueSet/$validate-code`` by expanding an is-a ValueSet in memory over a
CodeSystem it stores; its ``$subsumes`` needs Hibernate Search, which the local servers do not run
(they answer 500), and so does ``$expand`` until HAPI's scheduled job has pre-expanded the stored
ValueSet (minutes after loading); it ignores a stored CodeSystem whose URL is
``http://snomed.info/sct`` for in-memory expansion.  So the fragment is loaded under a project URL
and named with ``terminology_snomed_system``.  A test-only child concept added on the server (not in
the shipped table) shows that the server's answer, not the table's, decides.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.prescreen import prescreen
from adapter.push import push_protocol
from adapter.terminology import ServerTerminology, all_snomed_url, configured, load, value_sets
from mappings.eligibility import Coding, ConditionFact, icd10cm
from mappings.eligibility.terminology import SNOMED, Membership, TableTerminology, concept_match
from mappings.sources import read_protocol
from tests.conftest import SEED
from tests.integration import verdict_cases as cases

pytestmark = pytest.mark.hapi

#: One namespace per test run: HAPI keeps serving a CodeSystem's first concepts for a while after an
#: update, so a run loads its own fragment and value sets (ids and URLs carry ``RUN``).
RUN = f"run-{uuid.uuid4().hex[:8]}-"
FRAGMENT = f"https://trialbridge.dev/fhir/CodeSystem/{RUN}snomed-ct-fragment"
TEST_CODE = "tb-test-colon-child"
ALC_CHILD = "tb-test-alcoholic-cirrhosis-child"


@pytest.fixture(scope="module")
def r4(hapi_servers: dict[str, str]) -> ServerConfig:
    config = ServerConfig(name="r4", base_url=hapi_servers["R4"], fhir_version="R4",
                          timeout=(5.0, 120.0), terminology="self", terminology_snomed_system=FRAGMENT)
    with FhirClient(config) as c:
        load(c, FRAGMENT, RUN, extra={TEST_CODE: ["363406005"], ALC_CHILD: ["420054005"]})
        push_protocol(c, read_protocol(SEED.read_bytes()).protocol)
        pid = "tb-verdict-server-colon"
        clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
        test_only = {"system": SNOMED, "code": TEST_CODE, "display": "Test-only concept"}
        condition = {"resourceType": "Condition", "id": f"{pid}-c",
                     "subject": {"reference": f"Patient/{pid}"},
                     "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]},
                     "code": {"coding": [test_only]},
                     "onsetDateTime": "2025-01-01"}
        c.transaction(cases.transaction([cases.patient(pid), *cases.liver(pid), condition]))
    return config


def test_value_sets_carry_the_is_a_hierarchy_of_the_table():
    code_system, *sets = value_sets(FRAGMENT)
    assert code_system["hierarchyMeaning"] == "is-a" and code_system["url"] == FRAGMENT
    assert {v["url"] for v in sets} >= {"https://trialbridge.dev/fhir/ValueSet/is-a-363346000"}


def test_subsumption_is_answered_by_the_server_and_cached(r4):
    with FhirClient(r4) as c:
        t = ServerTerminology(c, FRAGMENT, RUN)
        assert t.subsumes(SNOMED, "363346000", "93761005") is True
        assert t.subsumes(SNOMED, "363346000", "19943007") is False
        assert t.subsumes(SNOMED, "41309000", "420054005") is True  # a second parent
        assert t._validate(SNOMED, "41309000", "420054005") is True  # ... answered by the server
        assert t.subsumes(SNOMED, "363346000", TEST_CODE) is True   # known to the server only
        assert TableTerminology().subsumes(SNOMED, "363346000", TEST_CODE) is None
        assert t.subsumes(SNOMED, "363346000", "38341003") is None  # unknown to both
        calls = t.calls
        assert t.subsumes(SNOMED, "363346000", "93761005") is True
        assert t.calls == calls and t.failed is None


def test_prescreen_uses_the_configured_terminology_service(r4):
    day = datetime.date.fromisoformat(cases.AS_OF)
    with FhirClient(r4) as c:
        assert isinstance(configured(c), ServerTerminology)
        served = prescreen(c, "NCT03945487", "tb-verdict-server-colon", as_of=day,
                           terminology=ServerTerminology(c, FRAGMENT, RUN))
    with FhirClient(dataclasses.replace(r4, terminology=None)) as c:
        tables_only = prescreen(c, "NCT03945487", "tb-verdict-server-colon", as_of=day)
    assert served.verdict.status.value == "not eligible"
    assert tables_only.verdict.status.value == "likely eligible"
    assert "terminology service" in str(served.to_json()["results"])


def test_a_failing_terminology_service_makes_the_criterion_needs_review(r4):
    day = datetime.date.fromisoformat(cases.AS_OF)
    dead = dataclasses.replace(r4, name="gone", base_url="http://127.0.0.1:9/fhir", max_retries=0,
                               timeout=(0.5, 0.5))
    with FhirClient(r4) as c, FhirClient(dead) as gone:
        result = prescreen(c, "NCT03945487", "tb-verdict-server-colon", as_of=day,
                           terminology=ServerTerminology(gone, FRAGMENT, RUN))
    assert result.verdict.status.value == "needs review"
    assert "terminology server could not check" in str(result.to_json()["results"])


def test_expand_on_hapi_falls_back_on_the_table_once(r4):
    """HAPI's ``ValueSet/$expand`` of a ValueSet loaded moments ago needs Hibernate Search (not run
    here): the first failure is remembered, the table answers, and the server is not asked again;
    once HAPI has pre-expanded it, the server's expansion (with the server-only concept) is used."""
    with FhirClient(dataclasses.replace(r4, max_retries=0)) as c:
        t = ServerTerminology(c, FRAGMENT, RUN)
        expanded = t.descendants(SNOMED, "363346000")
        calls = t.calls
        assert t.descendants(SNOMED, "19943007") >= {"420054005"}
        answer_or_fallback = TableTerminology().descendants(SNOMED, "363346000")
        if t.expand_failed:
            assert expanded == answer_or_fallback and t.calls == calls
        else:  # a HAPI that can expand: the server's answer includes the server-only concept
            assert TEST_CODE in expanded


def test_a_concept_coded_from_icd10_cm_gets_its_snomed_codes_by_name_from_the_server(r4):
    """'alcoholic cirrhosis' in a criterion is coded ICD-10-CM K70.3 (no SNOMED CT code): a SNOMED
    record of a child concept only the server knows is not a member by the table alone (no name
    says it), and a member once the server has named the SNOMED concept 'Alcoholic cirrhosis'."""
    concept = icd10cm.concept("alcoholic cirrhosis")
    record = ConditionFact("Condition/x", (Coding(SNOMED, ALC_CHILD),), "active")
    assert concept.snomed == ()
    assert concept_match(record, concept).membership is Membership.NOT_MEMBER
    with FhirClient(r4) as c:
        t = ServerTerminology(c, FRAGMENT, RUN)
        m = concept_match(record, concept, t)
        assert m.membership is Membership.MEMBER, m.why
        assert "descendant of 420054005" in m.why and "found by name" in m.why
        assert t.named[concept.id] == ("420054005",)
        # HAPI JPA has no implicit value set (<system>?fhir_vs): the loaded one of all codes answered
        assert t.name_sets == [all_snomed_url(RUN)] and t.failed is None
        calls = t.calls
        assert concept_match(record, concept, t).membership is Membership.MEMBER
        assert t.calls == calls  # every answer cached
