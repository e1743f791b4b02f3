"""What was read and not used (:mod:`mappings.eligibility.unused`): every resource named, with why."""

from __future__ import annotations

from mappings.eligibility import evaluate, patient_facts_from_fhir
from mappings.eligibility.unused import not_used
from tests.mappings.eligibility_patients import AS_OF, CRITERIA, SCT, condition, eligible_r4, quantity


def test_every_resource_not_used_is_named_with_why():
    sinusitis = condition("sinus", SCT, "444814009", "Viral sinusitis (disorder)", status="resolved")
    resources = [*eligible_r4(), sinusitis,
                 quantity("glucose", "2339-0", 5.4, "mmol/L"),
                 {"resourceType": "Encounter", "id": "e1"}]
    facts = patient_facts_from_fhir(resources, AS_OF)
    verdict = evaluate(CRITERIA, facts)
    unused = {e.reference: e.description for e in not_used(verdict, facts)}
    assert "in no criterion's value set" in unused["Condition/sinus"]
    assert "no criterion reads this test" in unused["Observation/glucose"]
    assert "not used for eligibility" in unused["Encounter/e1"]
    used = {e.reference for r in verdict.results for e in r.evidence}
    assert "Condition/cirrhosis" in used and "Condition/cirrhosis" not in unused
