"""Typed shapes of the eligibility pipeline: parsed items, recognised criteria, patient facts, verdicts.

The pipeline is ``criteria text -> CriteriaList -> Criterion -> Verdict``:

* :class:`CriteriaList` / :class:`CriterionItem` -- the criteria text split into inclusion and exclusion
  items, each kept verbatim (parse.py);
* :class:`Criterion` -- one item judged computable or not, with a :data:`Test` when it is
  (recognise.py);
* :class:`PatientFacts` -- what a FHIR server returns for one patient, already simplified
  (facts.py), and :class:`Verdict` -- the criteria evaluated against those facts (evaluate.py).

Everything here is a frozen dataclass or an enumeration: no I/O, no FHIR JSON.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import cached_property

from .. import units
from ..errors import MappingIssue

# --------------------------------------------------------------------------------------------------
# Parsed criteria text
# --------------------------------------------------------------------------------------------------


class Kind(StrEnum):
    """Whether a criterion admits (inclusion) or bars (exclusion) a participant."""

    INCLUSION = "inclusion"
    EXCLUSION = "exclusion"


@dataclass(frozen=True)
class CriterionItem:
    """One criterion as written: text verbatim (marker and surrounding whitespace removed, wrapped
    lines joined with one space), its kind, its 1-based position among its siblings, its marker as
    written (``1.``, ``*``, ``(a)``; ``""`` when the line had none), the 1-based line where it starts,
    and the sub-items nested under it."""

    text: str
    kind: Kind
    position: int
    marker: str = ""
    line: int = 0
    children: tuple[CriterionItem, ...] = ()

    def walk(self) -> Iterator[CriterionItem]:
        """This item, then its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class Note:
    """Free text in the criteria that is not a criterion (a lead-in such as ``Patients must meet all
    of the following:``), kept verbatim with the kind of the section it stands in."""

    text: str
    kind: Kind
    line: int


@dataclass(frozen=True)
class CriteriaList:
    """The criteria text split into items. ``has_headings`` is false when no inclusion/exclusion
    heading was found (every item is then taken as inclusion, and an issue says so)."""

    inclusion: tuple[CriterionItem, ...] = ()
    exclusion: tuple[CriterionItem, ...] = ()
    notes: tuple[Note, ...] = ()
    headings: tuple[str, ...] = ()
    has_headings: bool = False
    issues: tuple[MappingIssue, ...] = ()

    def items(self) -> tuple[CriterionItem, ...]:
        """The top-level items, inclusion first, then exclusion."""
        return self.inclusion + self.exclusion

    def walk(self) -> Iterator[CriterionItem]:
        """Every item, nested ones included, depth first."""
        for item in self.items():
            yield from item.walk()

    def texts(self, kind: Kind | None = None) -> list[str]:
        """The texts of the top-level items (of one kind, or all)."""
        return [i.text for i in self.items() if kind is None or i.kind is kind]


# --------------------------------------------------------------------------------------------------
# Coded concepts and tests
# --------------------------------------------------------------------------------------------------


class Comparator(StrEnum):
    """A comparison as written in a criterion (``>=`` for ``at least``, ``≥``...)."""

    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "="

    def holds(self, left: Decimal | int, right: Decimal | int) -> bool:
        """Whether ``left <comparator> right``."""
        if self is Comparator.LT:
            return left < right
        if self is Comparator.LE:
            return left <= right
        if self is Comparator.GT:
            return left > right
        if self is Comparator.GE:
            return left >= right
        return left == right


@dataclass(frozen=True)
class Concept:
    """A condition from ``tables/eligibility_conditions.json``: SNOMED CT codes and ICD-10 code
    prefixes (a patient code matches when it equals a listed code or is a descendant of it)."""

    id: str
    display: str
    snomed: tuple[str, ...] = ()
    icd10: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabConcept:
    """A laboratory test from ``tables/eligibility_labs.json``: its LOINC codes and whether results are
    qualitative (positive/negative) or quantitative.  Its molar mass, where mass and molar
    concentration convert, is the one ``tables/loinc_labs.json`` gives for its LOINC codes
    (:func:`mappings.units.molar_mass`)."""

    id: str
    display: str
    loinc: tuple[str, ...]
    qualitative: bool = False


@dataclass(frozen=True)
class Duration:
    """How long something must have lasted (``for more than 6 months``), or -- with
    ``within=True`` -- how recent it must be (``within the last 3 months``). ``unit`` is UCUM
    (``d``, ``wk``, ``mo``, ``a``)."""

    comparator: Comparator
    value: int
    unit: str
    text: str
    within: bool = False

    def describe(self) -> str:
        """Short human form (``> 6 mo``, ``within 3 mo``)."""
        if self.within:
            return f"within {self.value} {self.unit}"
        return f"{self.comparator.value} {self.value} {self.unit}"


@dataclass(frozen=True)
class AgeTest:
    """Age at the evaluation date in completed units (UCUM ``a``, ``mo``, ``wk``, ``d``, ``h``,
    ``min``), against one or more bounds ``(comparator, value, unit)``."""

    bounds: tuple[tuple[Comparator, int, str], ...]

    def describe(self) -> str:
        words = units.time_unit_words()
        return "age " + " and ".join(f"{c.value} {v} {words.get(u, u)}" for c, v, u in self.bounds)


@dataclass(frozen=True)
class SexTest:
    """Administrative gender (FHIR ``Patient.gender``) among the allowed values."""

    allowed: frozenset[str]

    def describe(self) -> str:
        return "sex: " + (" or ".join(sorted(self.allowed)) if self.allowed else "none")


@dataclass(frozen=True)
class HealthyVolunteerTest:
    """The registry's ``Accepts Healthy Volunteers`` field. When false, the participant must be a
    patient: met when at least one condition is recorded as present."""

    accepts: bool

    def describe(self) -> str:
        return "healthy volunteers accepted" if self.accepts else "must have a recorded condition"


@dataclass(frozen=True)
class ConditionTest:
    """A condition recorded as present (``ever``: any clinical status counts, for ``history of``),
    optionally for at least / within a duration."""

    concept: Concept
    ever: bool = False
    duration: Duration | None = None

    def describe(self) -> str:
        codes = []
        if self.concept.snomed:
            codes.append(
                "SNOMED " + ", ".join(self.concept.snomed[:3]) + ("…" if len(self.concept.snomed) > 3 else "")
            )
        if self.concept.icd10:
            codes.append(
                "ICD-10 " + ", ".join(self.concept.icd10[:3]) + ("…" if len(self.concept.icd10) > 3 else "")
            )
        out = f"condition {self.concept.display} ({'; '.join(codes)})"
        if self.ever:
            out += ", any time"
        if self.duration:
            out += f", {self.duration.describe()}"
        return out


@dataclass(frozen=True)
class LabTest:
    """A laboratory result: qualitative (``result`` positive/negative) or a threshold (``comparator``
    ``value`` ``unit``, UCUM), or a multiple of the upper limit of normal (``uln_multiple``: the
    result's own reference range high bound is used)."""

    lab: LabConcept
    result: str | None = None
    comparator: Comparator | None = None
    value: Decimal | None = None
    unit: str | None = None
    uln_multiple: Decimal | None = None
    duration: Duration | None = None

    def describe(self) -> str:
        out = f"lab {self.lab.display} (LOINC {', '.join(self.lab.loinc)})"
        if self.result:
            out += f" {self.result}"
        if self.comparator is not None and self.uln_multiple is not None:
            out += f" {self.comparator.value} {self.uln_multiple} x ULN"
        elif self.comparator is not None:
            out += f" {self.comparator.value} {self.value} {self.unit or ''}".rstrip()
        if self.duration:
            out += f", {self.duration.describe()}"
        return out


@dataclass(frozen=True)
class PregnancyTest:
    """Current pregnancy (``state='pregnant'``) or breastfeeding (``state='breastfeeding'``)."""

    state: str

    def describe(self) -> str:
        return f"currently {self.state}"


@dataclass(frozen=True)
class AnyOf:
    """Met when any part is met (three-valued: unknown when none is met and some are unknown)."""

    tests: tuple[Test, ...]

    def describe(self) -> str:
        return "any of [" + "; ".join(t.describe() for t in self.tests) + "]"


@dataclass(frozen=True)
class AllOf:
    """Met when every part is met (three-valued)."""

    tests: tuple[Test, ...]

    def describe(self) -> str:
        return "all of [" + "; ".join(t.describe() for t in self.tests) + "]"


@dataclass(frozen=True)
class Not:
    """Met when the inner test is not met (unknown stays unknown)."""

    test: Test

    def describe(self) -> str:
        return f"not ({self.test.describe()})"


Test = (
    AgeTest | SexTest | HealthyVolunteerTest | ConditionTest | LabTest | PregnancyTest | AnyOf | AllOf | Not
)


#: ``Criterion.source`` of criteria read from a Group characteristic / an EvidenceVariable written
#: elsewhere (not from criteria text): one that is not computable could not be read.
FOREIGN_SOURCES = frozenset({"group", "evidence-variable"})


class Status(StrEnum):
    """Whether a criterion can be evaluated from EHR data."""

    COMPUTABLE = "computable"
    NOT_COMPUTABLE = "not computable"
    NEEDS_REVIEW = "needs review"


@dataclass(frozen=True)
class Criterion:
    """One criterion judged: ``status`` with its ``reason``; ``test`` when computable.

    ``at_screening`` marks a not-computable criterion that is settled at the screening visit by
    its nature (consent, participation, social circumstances, the investigator's judgement): it
    does not stop a ``likely eligible`` verdict, but is listed for confirmation.  ``source`` is
    ``criteria`` for an item of the criteria text, or the registry field it comes from
    (``minimum_age``/``maximum_age``, ``sex``, ``healthy_volunteers``).

    An item with sub-items has them as ``children``; ``combine`` says how: ``each`` -- every
    sub-item is a criterion of its own (the default: all sub-items of an inclusion must hold, any
    sub-item of an exclusion excludes), ``any``/``all`` -- the item is met when any/all of them
    are (written so, e.g. ``any one of the following:`` under an inclusion heading).

    ``parts`` are the facts named within an item that is not computable as a whole
    (:mod:`.within`: ``No systemic diseases or pregnancy`` names pregnancy): each is read on its
    own, with its ConText (negated: ``Not``); how they combine with the words not read is not
    known, so they are evidence and search hints, never the criterion's test."""

    text: str
    kind: Kind
    status: Status
    reason: str
    test: Test | None = None
    notes: tuple[str, ...] = ()
    at_screening: bool = False
    source: str = "criteria"
    position: int | None = None
    children: tuple[Criterion, ...] = ()
    combine: str | None = None
    parts: tuple[Test, ...] = ()

    @property
    def computable(self) -> bool:
        return self.status is Status.COMPUTABLE


# --------------------------------------------------------------------------------------------------
# Patient facts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coding:
    """A code and its system (``http://snomed.info/sct``, ``http://hl7.org/fhir/sid/icd-10-cm``...)."""

    system: str | None
    code: str
    display: str | None = None


@dataclass(frozen=True)
class ConditionFact:
    """A Condition: codings, clinical and verification status codes, and dates as partial ISO
    strings (``onset``, ``abatement``, ``recorded``)."""

    reference: str
    codings: tuple[Coding, ...]
    clinical_status: str | None = None
    verification_status: str | None = None
    onset: str | None = None
    abatement: str | None = None
    recorded: str | None = None
    text: str | None = None

    @cached_property
    def match_key(self) -> tuple[tuple[tuple[str | None, str, str | None], ...], str | None]:
        """The codings and the text as plain values (worked out once): what a value-set answer
        depends on, for the table terminology's memory (:mod:`.terminology`)."""
        return tuple((c.system, c.code, c.display) for c in self.codings), self.text


@dataclass(frozen=True)
class ObservationFact:
    """An Observation: its codes, a numeric value (``Decimal``; ``value_comparator`` when the value
    was reported as ``<0.5``) with its UCUM unit, or a qualitative ``result`` (``positive`` /
    ``negative``), the effective date, the reference range high bound, and the status."""

    reference: str
    codes: tuple[Coding, ...]
    value: Decimal | None = None
    value_comparator: str | None = None
    unit: str | None = None
    result: str | None = None
    value_text: str | None = None
    effective: str | None = None
    reference_high: Decimal | None = None
    reference_high_unit: str | None = None
    status: str | None = None
    interpretation: str | None = None
    components: tuple[ObservationFact, ...] = ()


@dataclass(frozen=True)
class StatusFact:
    """A pregnancy or breastfeeding status (``pregnant``/``not pregnant``/``unknown``,
    ``breastfeeding``/``not breastfeeding``) with its date and the resource it came from."""

    reference: str
    value: str
    date: str | None = None


@dataclass(frozen=True)
class PatientFacts:
    """What the FHIR server knows about one patient, simplified, as of ``as_of``: ``deceased`` when
    ``Patient.deceasedBoolean`` is true or ``deceasedDateTime`` is given (``deceased_date``)."""

    as_of: datetime.date
    reference: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    conditions: tuple[ConditionFact, ...] = ()
    observations: tuple[ObservationFact, ...] = ()
    pregnancy: tuple[StatusFact, ...] = ()
    breastfeeding: tuple[StatusFact, ...] = ()
    issues: tuple[MappingIssue, ...] = field(default=(), compare=False)
    deceased: bool = False
    deceased_date: str | None = None


# --------------------------------------------------------------------------------------------------
# Evaluation results
# --------------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    """One criterion against one patient."""

    MET = "met"
    NOT_MET = "not met"
    UNKNOWN = "unknown"
    NOT_COMPUTABLE = "not computable"


@dataclass(frozen=True)
class Evidence:
    """What an outcome rests on: the resource, what it says, the value and the date."""

    description: str
    reference: str | None = None
    value: str | None = None
    date: str | None = None


@dataclass(frozen=True)
class CriterionResult:
    """A criterion's outcome for the patient, why, and the evidence."""

    criterion: Criterion
    outcome: Outcome
    reason: str
    evidence: tuple[Evidence, ...] = ()


class VerdictStatus(StrEnum):
    """The overall answer: ``cannot assess`` when no criterion that tells patients apart could be
    evaluated (none computable, or criteria of a study written elsewhere that could not be read)."""

    LIKELY_ELIGIBLE = "likely eligible"
    NOT_ELIGIBLE = "not eligible"
    NEEDS_REVIEW = "needs review"
    CANNOT_ASSESS = "cannot assess"


@dataclass(frozen=True)
class Verdict:
    """The overall answer with every criterion's result, and the lists that justify it:
    ``failed_inclusion`` and ``met_exclusion`` (why not eligible), ``unknown`` (data missing or
    inconclusive) and ``review`` (criteria we cannot compute and that are not settled at screening)
    (why review is needed), ``to_confirm`` (settled at screening: consent, participation...)."""

    status: VerdictStatus
    results: tuple[CriterionResult, ...]
    failed_inclusion: tuple[CriterionResult, ...] = ()
    met_exclusion: tuple[CriterionResult, ...] = ()
    unknown: tuple[CriterionResult, ...] = ()
    review: tuple[CriterionResult, ...] = ()
    to_confirm: tuple[CriterionResult, ...] = ()
    as_of: datetime.date | None = None
    patient: str | None = None
