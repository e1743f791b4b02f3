"""Eligibility criteria: parse the criteria text, recognise computable criteria, evaluate a patient.

The pure half of the "Eligibility criteria" issue (no I/O, no FHIR output, no server calls)::

    from mappings.eligibility import parse_criteria, recognise_eligibility, patient_facts_from_fhir, evaluate

    criteria = recognise_eligibility(protocol.eligibility)      # registry fields + every parsed item
    facts = patient_facts_from_fhir(fhir_resources, as_of=datetime.date.today())
    verdict = evaluate(criteria, facts)      # likely eligible / not eligible / needs review

* :mod:`.parse` -- :func:`parse_criteria`: criteria text (v2 Markdown, legacy XML textblock, page
  text) -> :class:`CriteriaList` of verbatim inclusion/exclusion items; never raises.
* :mod:`.tables` (the compiled tables), :mod:`.rules` (the text rules) and :mod:`.recognise`
  (:func:`recognise`: one item -> :class:`Criterion`, computable with a test or not, with the
  reason; :func:`criteria_table` for the README).
* :mod:`.within` -- the facts named within an item that is not computable as a whole
  (``Criterion.parts``), with :mod:`.context` (ConText: negated, hypothetical, historical,
  family) and :mod:`.icd10cm` (condition names coded with ICD-10-CM); :mod:`.runon` splits
  inline lists for the parser.
* :mod:`.facts` -- :func:`patient_facts_from_fhir` (R4/R5 Patient, Condition, Observation);
  :mod:`.evaluate` -- :func:`evaluate` -> :class:`Verdict` with evidence (dates: :mod:`.dates`).

Design notes: ``docs/design/eligibility.md``.
"""

from .evaluate import convert, evaluate, evaluate_test
from .facts import patient_facts_from_fhir
from .model import (
    AgeTest,
    AllOf,
    AnyOf,
    Coding,
    Comparator,
    Concept,
    ConditionFact,
    ConditionTest,
    CriteriaList,
    Criterion,
    CriterionItem,
    CriterionResult,
    Duration,
    Evidence,
    HealthyVolunteerTest,
    Kind,
    LabConcept,
    LabTest,
    Not,
    Note,
    ObservationFact,
    Outcome,
    PatientFacts,
    PregnancyTest,
    SexTest,
    Status,
    StatusFact,
    Test,
    Verdict,
    VerdictStatus,
)
from .parse import parse_criteria, unescape_markdown
from .recognise import (
    criteria_from_fields,
    criteria_table,
    criteria_table_markdown,
    recognise,
    recognise_all,
    recognise_eligibility,
    recognise_text,
)

__all__ = [
    "AgeTest",
    "AllOf",
    "AnyOf",
    "Coding",
    "Comparator",
    "Concept",
    "ConditionFact",
    "ConditionTest",
    "CriteriaList",
    "Criterion",
    "CriterionItem",
    "CriterionResult",
    "Duration",
    "Evidence",
    "HealthyVolunteerTest",
    "Kind",
    "LabConcept",
    "LabTest",
    "Not",
    "Note",
    "ObservationFact",
    "Outcome",
    "PatientFacts",
    "PregnancyTest",
    "SexTest",
    "Status",
    "StatusFact",
    "Test",
    "Verdict",
    "VerdictStatus",
    "convert",
    "criteria_from_fields",
    "criteria_table",
    "criteria_table_markdown",
    "evaluate",
    "evaluate_test",
    "parse_criteria",
    "patient_facts_from_fhir",
    "recognise",
    "recognise_all",
    "recognise_eligibility",
    "recognise_text",
    "unescape_markdown",
]
