"""The neutral model of lab results (-> Observation) and the lab catalogue that codes them.

Readers (:mod:`mappings.sources.trial_csv`, the FHIR readers) fill :class:`LabResult`; the FHIR R4/R5
writers read it.  Like :mod:`mappings.model` it holds no I/O and no FHIR JSON: plain dataclasses with
source-neutral codes (JSON through :func:`mappings.model.to_dict` / :func:`~mappings.model.from_dict`,
with :mod:`mappings.fhirjson` so decimals stay exact).  A ``LabResult`` already carries the resolved
LOINC code, UCUM unit, Observation status and v3 interpretation code; lab times are ISO strings as
given (``2019-06-03T07:45:00+08:00``), kept verbatim.

Decimals.  Lab values and ranges are :class:`~decimal.Decimal` exactly as the lab wrote them
(``3.50`` stays ``3.50``); a non-numeric answer of an ordinal test (``Positive``) is a ``str``.
``LabResult.normalized`` is the value in the analyte's canonical unit (see :mod:`mappings.units` for
the precision rule); the reported value is never altered.

Tables.  The lab catalogue ``tables/loinc_labs.json`` gives a :class:`LabAnalyte` per local test code
(:func:`lab_test`); ``tables/lab_result_codes.json`` the result statuses and abnormal flags
(:func:`observation_status`, :func:`interpretation_code`).  :func:`interpret` computes H/L/N from a
reference range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache

from . import code_tables, units
from .enrolments import PatientIdentifier

#: The lab catalogue (local test code -> LOINC, units, answers) and the result codes.
CATALOGUE = "loinc_labs.json"
CODES = "lab_result_codes.json"

#: FHIR Quantity.comparator codes a lab value may carry (``<20`` -> comparator ``<``, value 20).
COMPARATORS = ("<=", ">=", "<", ">")


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


# --- lab catalogue ---------------------------------------------------------------------------------


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
class LabAnalyte:
    """The lab catalogue's entry for one local test code (``tables/loinc_labs.json``): the analyte's
    LOINC term (and the term per reported unit), its accepted unit texts, canonical unit, molar mass
    and, for an ordinal test, its answers."""

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
        raw = code_tables.load(CATALOGUE)["tests"][self.code].get("answers") or {}
        for text, entry in raw.items():
            for alias in [text, *entry.get("aliases", [])]:
                index[alias.lower()] = self.answers[text]
        return index


@cache
def _analytes() -> dict[str, LabAnalyte]:
    out: dict[str, LabAnalyte] = {}
    for code, t in code_tables.load(CATALOGUE)["tests"].items():
        out[code] = LabAnalyte(
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
    return list(_analytes())


def lab_test(code: str) -> LabAnalyte | None:
    """The catalogue entry of a local test code (exact, or the same code in another case)."""
    tests = _analytes()
    code = code.strip()
    if code in tests:
        return tests[code]
    upper = {c.upper(): t for c, t in tests.items()}
    return upper.get(code.upper())


def system(name: str) -> str:
    """A code system URI of lab results by short name (``loinc``, ``snomed``, ``interpretation``...)."""
    return {**code_tables.load(CATALOGUE)["systems"], **code_tables.load(CODES)["systems"]}[name]


def observation_status(text: str) -> str | None:
    """The Observation.status code for a lab result status (``final``, ``F``...), or None."""
    return code_tables.text_index(CODES, "lab_status", False).get(code_tables.key(text))


def interpretation_code(text: str) -> str | None:
    """The v3 ObservationInterpretation code for a lab's abnormal flag (``H``, ``high``...), or None."""
    return code_tables.text_index(CODES, "interpretation", False).get(code_tables.key(text))


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
