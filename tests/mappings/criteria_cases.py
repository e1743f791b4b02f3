"""What the computable-criteria tests share (:mod:`mappings.fhir.criteria` and its R4/R5
encodings): the seed's computable items, a second criteria text, and readers of the output."""

from __future__ import annotations

from mappings.model import Eligibility, Protocol
from tests.mappings.strategies import resources

SD = "https://trialbridge.dev/fhir/StructureDefinition/"
CRITERION = SD + "eligibility-criterion"
OWN = "https://trialbridge.dev/fhir/CodeSystem/eligibility-characteristic"
SCT, LOINC, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
ICD10, ICD10CM = "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm"

SEED_ITEMS = {
    "inclusion-1": "Age 18-69 years;",
    "inclusion-2": "Decompensated liver cirrhosis (manifestations including gastrointestinal bleeding, "
                   "hepatic encephalopathy, and ascites, based on previously stable cirrhosis);",
    "inclusion-3": "Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months "
                   "(chronic hepatitis B patients);",
    "exclusion-1": "Hepatocellular carcinoma or other malignancies;",
    "exclusion-2": "Liver cirrhosis caused by other reasons, such as autoimmune diseases, alcocal, drugs and "
                   "so on;",
    "exclusion-3": "Pregnant women;",
}


def codes(concept: dict) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept.get("coding", [])]


def subs(extension: dict, url: str) -> list[dict]:
    return [x for x in extension.get("extension", []) if x["url"] == url]


def sub_value(extension: dict, url: str):
    (found,) = subs(extension, url)
    return next(v for k, v in found.items() if k.startswith("value"))


def protocol(nct_id: str, criteria: str) -> Protocol:
    return Protocol(nct_id=nct_id, eligibility=Eligibility(criteria=criteria))


def group_of(bundle: dict) -> dict:
    (group,) = resources(bundle, "Group")
    return group


def crit(characteristic: dict) -> dict:
    return next(x for x in characteristic["extension"] if x["url"] == CRITERION)


def parts(element: dict) -> list[dict]:
    return subs(crit(element) if "code" in element else element, "part")


OTHER = """Inclusion Criteria:
- Female
- Platelet count >= 50 x10^9/L
- No hepatocellular carcinoma
- HBsAg positive within the last 3 months
Exclusion Criteria:
- ALT > 5 x ULN
- Older than 70 years
- Breastfeeding
- Written informed consent not obtained
"""
