"""The neutral trial-data model: enrolments (-> ResearchSubject, Patient) and lab results (-> Observation).

Readers (``sources/trial_csv``; later FHIR bundles) fill :class:`Enrolment` and :class:`LabResult`;
the FHIR R4/R5 writers read them.  Like :mod:`mappings.model`, the model holds no I/O and no FHIR
JSON: it is plain dataclasses with source-neutral codes, and :func:`to_dict` / :func:`from_dict`
for JSON (use :mod:`mappings.fhirjson` so decimals stay exact).

Codes.  ``Enrolment.status`` is the trial system's status code (``on-treatment``...), the model's
canonical vocabulary; :func:`subject_status` gives its FHIR R4 ``ResearchSubject.status``, R5
``progress`` subject state, milestones and reason, from ``tables/trial_status.json``.  ``sex`` is a
FHIR administrative-gender code.  ``LabResult`` already carries the resolved LOINC code, UCUM unit,
Observation status and v3 interpretation code.  Dates are ISO strings as given (``2019-06-03``;
lab times ``2019-06-03T07:45:00+08:00``), kept verbatim.

Decimals.  Lab values and ranges are :class:`~decimal.Decimal` exactly as the lab wrote them
(``3.50`` stays ``3.50``); a non-numeric answer of an ordinal test (``Positive``) is a ``str``.
``LabResult.normalized`` is the value in the test's canonical unit (see :mod:`mappings.units` for the
precision rule); the reported value is never altered.

The code tables (lab catalogue ``tables/loinc_labs.json``, statuses ``tables/trial_status.json``)
are read once, through :mod:`importlib.resources`, by the lookup functions at the end.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from . import model, units

#: FHIR Quantity.comparator codes a lab value may carry (``<20`` -> comparator ``<``, value 20).
COMPARATORS = ("<=", ">=", "<", ">")


@dataclass
class PatientIdentifier:
    """The hospital's patient identifier (MRN): ``system`` URI and ``value``."""

    value: str
    system: str | None = None


@dataclass
class ProgressEvent:
    """One R5 ``ResearchSubject.progress`` entry: a milestone reached or the current subject state.

    ``type`` is ``Milestone`` or ``Enrollment`` (research-subject-state-type); ``start_date`` is None
    when the source does not date it.
    """

    type: str
    milestone: str | None = None
    subject_state: str | None = None
    reason: str | None = None
    start_date: str | None = None


@dataclass
class Enrolment:
    """A subject's participation in a study, as the trial system records it.

    ``status`` is the trial system's code (keys of ``enrolment_status`` in ``trial_status.json``);
    ``arm`` is the protocol's arm label exactly (-> R4 ``assignedArm``, R5 ``assignedComparisonGroup``).
    ``withdrawal_reason`` is kept as written; ``withdrawal_reason_code`` is its state-change-reason
    code when the table knows it.
    """

    study: str
    subject_id: str
    patient: PatientIdentifier
    birth_date: str
    sex: str
    status: str
    arm: str | None = None
    consent_date: str | None = None
    enrolment_date: str | None = None
    withdrawal_date: str | None = None
    withdrawal_reason: str | None = None
    withdrawal_reason_code: str | None = None
    completion_date: str | None = None

    @property
    def period_start(self) -> str | None:
        """Start of participation (``ResearchSubject.period.start``): consent, else enrolment."""
        return self.consent_date or self.enrolment_date

    @property
    def period_end(self) -> str | None:
        """End of participation (``ResearchSubject.period.end``): withdrawal or completion date."""
        return self.withdrawal_date or self.completion_date

    def status_codes(self) -> SubjectStatus:
        """The FHIR codes of :attr:`status` (raises KeyError for a code not in the table)."""
        return subject_status(self.status)

    def progress(self) -> list[ProgressEvent]:
        """R5 ``progress``: the milestones reached (dated where the source dates them), then the state."""
        codes = self.status_codes()
        events = [ProgressEvent(type="Milestone", milestone=m.code,
                                start_date=getattr(self, m.date_field) if m.date_field else None)
                  for m in codes.milestones]
        events.append(ProgressEvent(
            type="Enrollment",
            subject_state=codes.r5_state,
            reason=self.withdrawal_reason_code or codes.reason,
            start_date=getattr(self, codes.state_start) if codes.state_start else None,
        ))
        return events


@dataclass
class NormalizedValue:
    """A lab value in the test's canonical unit, with the LOINC code matching that unit.

    ``exact`` is True when no rounding was needed (same unit, or a power-of-ten factor).
    """

    value: Decimal
    unit: str
    loinc_code: str
    loinc_display: str
    ref_low: Decimal | None = None
    ref_high: Decimal | None = None
    exact: bool = True


@dataclass
class LabResult:
    """One lab result of a study subject (-> one Observation).

    ``loinc_code``/``loinc_display`` match the *reported* unit's property (TBIL in mg/dL is 1975-2,
    in umol/L 14631-6).  ``value`` is exact (Decimal) or an answer text for an ordinal test, with
    ``value_code`` its SNOMED CT code.  ``unit`` is the UCUM code of the reported unit and
    ``unit_text`` the lab's own spelling (``µmol/L``); the reference range is in ``unit`` too.
    ``interpretation`` is a v3 ObservationInterpretation code (H, L, N, POS, NEG...), computed from
    the range (``interpretation_source`` ``computed``) or given by the lab (``given``).  ``status`` is
    an Observation.status code.  ``result_id`` is the lab's stable id (-> Observation.identifier); a
    ``corrected`` result reuses the id of the result it corrects.
    """

    study: str
    subject_id: str
    patient: PatientIdentifier
    result_id: str
    test_code: str
    loinc_code: str
    loinc_display: str
    value: Decimal | str
    effective: str
    status: str
    comparator: str | None = None
    unit: str | None = None
    unit_text: str | None = None
    value_code: str | None = None
    ref_low: Decimal | None = None
    ref_high: Decimal | None = None
    interpretation: str | None = None
    interpretation_source: str | None = None
    normalized: NormalizedValue | None = None

    @property
    def is_numeric(self) -> bool:
        """True for a quantity (Decimal value), False for an ordinal answer text."""
        return isinstance(self.value, Decimal)


# --- JSON ------------------------------------------------------------------------------------------

T = TypeVar("T")

to_dict = model.to_dict


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from :func:`to_dict` data read back with :func:`mappings.fhirjson.loads`.

    ``fhirjson.loads`` gives integers (``19``) as ``int``; Decimal fields get them back as Decimal,
    so ``19`` and ``3.50`` round-trip with their exact text.
    """
    obj = model.from_dict(cls, data)
    _decimals(obj)
    return obj


def _decimals(obj: Any) -> None:
    if not dataclasses.is_dataclass(obj):
        return
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _decimals(value)
        elif isinstance(value, list):
            for item in value:
                _decimals(item)
        elif isinstance(value, int) and not isinstance(value, bool) and _holds_decimal(hints[f.name]):
            setattr(obj, f.name, Decimal(value))


def _holds_decimal(hint: Any) -> bool:
    return hint is Decimal or Decimal in typing.get_args(hint)


# --- code tables -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoincCode:
    """A LOINC term used for a test in a given unit."""

    code: str
    display: str
    property: str


@dataclass(frozen=True)
class Answer:
    """An answer of an ordinal test: its text, SNOMED CT code and interpretation code."""

    text: str
    snomed: str | None
    interpretation: str | None


@dataclass(frozen=True)
class LabTest:
    """One entry of the lab catalogue (``tables/loinc_labs.json``)."""

    code: str
    name: str
    loinc: LoincCode
    component: str
    system: str
    scale: str
    canonical_unit: str | None
    units: dict[str, str | None] = field(default_factory=dict)
    loinc_for_unit: dict[str, LoincCode] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    molar_mass: Decimal | None = None

    @property
    def quantitative(self) -> bool:
        """True for a quantitative (``Qn``) test, whose values must be numbers."""
        return self.scale == "Qn"

    def ucum(self, unit_text: str) -> str | None:
        """The UCUM code of a source unit text; KeyError when the text is not accepted for this test."""
        return self.units[unit_text.strip()]

    def coding(self, ucum: str | None) -> LoincCode:
        """The LOINC term for a value reported in ``ucum`` (the property follows the unit)."""
        return self.loinc_for_unit.get(ucum or "", self.loinc)

    def normalize(self, value: Decimal, ucum: str, low: Decimal | None = None,
                  high: Decimal | None = None) -> NormalizedValue:
        """A value (and range) reported in ``ucum`` converted to the canonical unit, with the LOINC
        term of that unit (raises :class:`mappings.units.UnitError` when it cannot be converted)."""
        target = self.canonical_unit
        if target is None:
            raise units.UnitError(f"{self.code} has no canonical unit (not a quantitative test)")
        loinc = self.coding(ucum).code

        def conv(v: Decimal | None) -> Decimal | None:
            return None if v is None else units.convert(v, ucum, target, loinc)

        canonical = self.coding(target)
        return NormalizedValue(
            value=units.convert(value, ucum, target, loinc),
            unit=target,
            loinc_code=canonical.code,
            loinc_display=canonical.display,
            ref_low=conv(low),
            ref_high=conv(high),
            exact=ucum == target or units.is_exact(ucum, target),
        )

    def answer(self, text: str) -> Answer | None:
        """The answer matching ``text`` (answer or alias, any case), or None."""
        return self._answer_index().get(" ".join(text.split()).lower())

    def _answer_index(self) -> dict[str, Answer]:
        index: dict[str, Answer] = {}
        raw = _labs_table()["tests"][self.code].get("answers") or {}
        for text, entry in raw.items():
            for alias in [text, *entry.get("aliases", [])]:
                index[alias.lower()] = self.answers[text]
        return index


@dataclass(frozen=True)
class Milestone:
    """An R5 milestone code and the Enrolment field that dates it (None: not dated by the source)."""

    code: str
    date_field: str | None


@dataclass(frozen=True)
class SubjectStatus:
    """The FHIR codes of one trial enrolment status (``tables/trial_status.json``)."""

    code: str
    r4: str
    r5_state: str
    r5_status: str
    milestones: tuple[Milestone, ...]
    state_start: str | None
    reason: str | None
    randomized: bool
    requires: tuple[str, ...]


@cache
def _labs_table() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("tables/loinc_labs.json").read_text("utf-8"))


@cache
def _status_table() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("tables/trial_status.json").read_text("utf-8"))


@cache
def _lab_tests() -> dict[str, LabTest]:
    out: dict[str, LabTest] = {}
    for code, t in _labs_table()["tests"].items():
        out[code] = LabTest(
            code=code,
            name=t["name"],
            loinc=LoincCode(t["loinc"], t["display"], t["property"]),
            component=t["component"],
            system=t["system"],
            scale=t["scale"],
            canonical_unit=t["canonical_unit"],
            units=dict(t["units"]),
            loinc_for_unit={u: LoincCode(a["loinc"], a["display"], a["property"])
                            for u, a in (t.get("loinc_for_unit") or {}).items()},
            answers={text: Answer(text, a.get("snomed"), a.get("interpretation"))
                     for text, a in (t.get("answers") or {}).items()},
            molar_mass=Decimal(t["molar_mass_g_per_mol"]) if t.get("molar_mass_g_per_mol") else None,
        )
    return out


def lab_tests() -> list[str]:
    """The local test codes of the catalogue, in table order."""
    return list(_lab_tests())


def lab_test(code: str) -> LabTest | None:
    """The catalogue entry of a local test code (exact, or the same code in another case)."""
    tests = _lab_tests()
    code = code.strip()
    if code in tests:
        return tests[code]
    upper = {c.upper(): t for c, t in tests.items()}
    return upper.get(code.upper())


def system(name: str) -> str:
    """A code system URI by short name (``loinc``, ``ucum``, ``r4_status``, ``r5_state``...)."""
    systems = {**_labs_table()["systems"], **_status_table()["systems"]}
    return systems[name]


@cache
def _statuses() -> dict[str, SubjectStatus]:
    out: dict[str, SubjectStatus] = {}
    for code, s in _status_table()["enrolment_status"].items():
        if code.startswith("_"):
            continue
        out[code] = SubjectStatus(
            code=code, r4=s["r4"], r5_state=s["r5_state"], r5_status=s["r5_status"],
            milestones=tuple(Milestone(m["code"], m["date"]) for m in s["milestones"]),
            state_start=s["state_start"], reason=s["reason"], randomized=s["randomized"],
            requires=tuple(s["requires"]),
        )
    return out


def enrolment_statuses() -> list[str]:
    """The trial system's status codes, in table order."""
    return list(_statuses())


def subject_status(code: str) -> SubjectStatus:
    """The FHIR codes of a trial status code; KeyError when the code is not in the table."""
    return _statuses()[code]


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


@cache
def _index(section: str, with_aliases: bool) -> dict[str, str]:
    """text (lower-cased) -> code for a table section of ``code: [texts]`` or ``code: {aliases}``."""
    index: dict[str, str] = {}
    for code, entry in _status_table()[section].items():
        if code.startswith("_"):
            continue
        index[_key(code)] = code
        texts = entry.get("aliases", []) if with_aliases else entry
        for text in texts:
            index[_key(text)] = code
    return index


def normalize_status(text: str) -> str | None:
    """The trial status code for a status text (code or alias, any case), or None."""
    return _index("enrolment_status", True).get(_key(text))


def normalize_sex(text: str) -> str | None:
    """The FHIR administrative-gender code for a trial sex code (``M``, ``F``, ``U``...), or None."""
    return _index("sex", False).get(_key(text))


def observation_status(text: str) -> str | None:
    """The Observation.status code for a lab result status (``final``, ``F``...), or None."""
    return _index("lab_status", False).get(_key(text))


def withdrawal_reason_code(text: str) -> str | None:
    """The state-change-reason code for a withdrawal reason text, or None when the table has none."""
    return _index("withdrawal_reason", False).get(_key(text))


def interpretation_code(text: str) -> str | None:
    """The v3 ObservationInterpretation code for a lab's abnormal flag (``H``, ``high``...), or None."""
    return _index("interpretation", False).get(_key(text))


def interpret(value: Decimal, low: Decimal | None, high: Decimal | None,
              comparator: str | None = None) -> str | None:
    """H, L or N from a reference range; None when there is no range or the answer is uncertain.

    A value equal to a bound is inside the range.  With a comparator the true value is only bounded:
    ``<20`` is N when 20 <= high (and no low bound lies above it), L when 20 <= low; otherwise the
    answer is unknown and None is returned (never a guess).
    """
    if low is None and high is None:
        return None
    if comparator is None:
        if low is not None and value < low:
            return "L"
        if high is not None and value > high:
            return "H"
        return "N"
    if comparator in ("<", "<="):
        if low is not None and (value < low or (comparator == "<" and value == low)):
            return "L"
        if low is None and high is not None and value <= high:
            return "N"
        return None
    if comparator in (">", ">="):
        if high is not None and (value > high or (comparator == ">" and value == high)):
            return "H"
        if high is None and low is not None and value >= low:
            return "N"
        return None
    raise ValueError(f"not a comparator: {comparator!r}")
