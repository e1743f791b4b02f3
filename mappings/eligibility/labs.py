"""Lab criteria against a patient's results: the latest result, thresholds, ULN multiples, censored
values, qualitative results and how long they have lasted.

:func:`eval_lab` gives a :class:`~.model.LabTest` its outcome with evidence; results are found by
every LOINC code of the analyte (``terminology.json``) and in Observation components; a numeric
result of a qualitative test is read against its own cut-off or named as not used.
:func:`convert` is the one unit comparison (:mod:`mappings.units`).  Split from :mod:`.evaluate`,
which calls it; the rules are in ``docs/design/eligibility.md``.
"""

from __future__ import annotations

import dataclasses
import datetime
from decimal import Decimal

from .. import units
from .dates import date_bounds, duration_ok, shift
from .model import Comparator, Evidence, LabConcept, LabTest, ObservationFact, Outcome, PatientFacts
from .terminology import analyte_codes

__all__ = ["Result", "convert", "eval_lab", "obs_evidence"]

_NEAR = Decimal("0.01")

Result = tuple[Outcome, str, tuple[Evidence, ...]]


def _has_loinc(o: ObservationFact, codes: tuple[str, ...]) -> bool:
    return any("loinc" in (c.system or "").lower() and c.code in codes for c in o.codes)


def obs_evidence(o: ObservationFact, shown: str | None = None) -> Evidence:
    if shown is None:
        if o.value is not None:
            shown = f"{o.value_comparator or ''}{o.value} {o.unit or ''}".strip()
        else:
            shown = o.result or o.value_text or "no value"
    return Evidence(
        f"{o.codes[0].display or o.codes[0].code if o.codes else 'observation'}",
        o.reference,
        shown,
        o.effective,
    )


def convert(
    value: Decimal, from_unit: str | None, to_unit: str | None, lab: LabConcept | None = None
) -> Decimal | None:
    """``value`` in ``from_unit`` expressed in ``to_unit``, or ``None`` when they do not compare.

    The same unit as written (even one we cannot read, or ``mL/min/{1.73_m2}``, outside the UCUM
    subset of :mod:`mappings.units`) gives ``value``.  Otherwise both units must be listed spellings
    or UCUM codes (:func:`mappings.units.normalize_unit`: ``mL/s`` is valid UCUM but not read) and
    :func:`mappings.units.try_convert` converts, unrounded (a comparison with a threshold must not
    round on its own); mass <-> substance concentration takes the molar mass ``loinc_labs.json``
    gives for the first of ``lab``'s LOINC codes that has one (bilirubin 1975-2 / 14631-6).
    """
    if from_unit is None or to_unit is None:
        return None
    f, t = units.normalize_unit(from_unit), units.normalize_unit(to_unit)
    if (f or from_unit) == (t or to_unit):
        return value
    if f is None or t is None:
        return None
    loinc = next((c for c in lab.loinc if units.molar_mass(c) is not None), None) if lab else None
    return units.try_convert(value, f, t, loinc, rounded=False)


def _lab_results(
    test: LabTest, p: PatientFacts
) -> tuple[list[tuple[tuple[datetime.date, datetime.date], ObservationFact]], int]:
    """The test's lab results up to the evaluation date (and in its window), oldest first; how many
    had no date.  An Observation's components with the lab's codes count as results of their own;
    so do LOINC codes of the same analyte (``terminology.json``)."""
    codes = tuple(analyte_codes(test.lab.id, test.lab.loinc))
    dated = []
    undated = 0
    for o in (x for obs in p.observations for x in (obs, *obs.components)):
        if not _has_loinc(o, codes):
            continue
        b = date_bounds(o.effective)
        if b is None:
            undated += 1
        elif b[0] <= p.as_of:
            dated.append((b, o))
    dated.sort(key=lambda x: x[0][1])
    if test.duration is not None and test.duration.within:
        cutoff = shift(p.as_of, test.duration.value, test.duration.unit)
        dated = [(b, o) for b, o in dated if b[0] >= cutoff]
    return dated, undated


def _numeric_result(o: ObservationFact) -> tuple[str | None, str]:
    """A numeric result of a qualitative test read as positive/negative against its own reference
    range high bound (the assay's cut-off), or why it cannot be."""
    if o.value is None:
        return None, f"no value ({o.value_text or 'none'})"
    if o.reference_high is None:
        shown = f"{o.value} {o.unit or ''}".strip()
        return None, f"numeric {shown} without interpretation or reference range"
    high = convert(o.reference_high, o.reference_high_unit or o.unit, o.unit)
    if high is None:
        return None, "reference range unit differs from the result unit"
    if o.value_comparator or o.value == high:
        return None, f"{o.value_comparator or ''}{o.value} against cut-off {high}: cannot tell"
    return ("positive" if o.value > high else "negative"), f"{o.value} against cut-off {high}"


def _qualitative_results(
    dated: list[tuple[tuple[datetime.date, datetime.date], ObservationFact]],
) -> tuple[list[tuple[tuple[datetime.date, datetime.date], ObservationFact]], list[Evidence]]:
    """The results with a positive/negative reading (a numeric one read against its cut-off), and
    the evidence of those not used, with why."""
    used, unused = [], []
    for b, o in dated:
        if o.result:
            used.append((b, o))
            continue
        reading, why = _numeric_result(o)
        if reading:
            used.append((b, dataclasses.replace(o, result=reading)))
        else:
            unused.append(obs_evidence(o, f"not used: {why}"))
    return used, unused


def eval_lab(test: LabTest, p: PatientFacts) -> Result:
    lab = test.lab
    dated, undated = _lab_results(test, p)
    note = f" ({undated} undated result(s) not used)" if undated else ""
    if lab.qualitative:
        used, unused = _qualitative_results(dated)
        o, reason, ev = _eval_qualitative(test, used, p, note)
        if unused:
            reason += f" ({len(unused)} result(s) not used: see evidence)"
        return o, reason, ev + tuple(unused)
    with_value = [(b, o) for b, o in dated if o.value is not None]
    if not with_value:
        return Outcome.UNKNOWN, f"no {lab.display} result{' in the window' if dated else ''}{note}", ()
    _, latest = with_value[-1]
    ev = (obs_evidence(latest),)
    value = latest.value
    if value is None or test.comparator is None:
        return Outcome.UNKNOWN, f"{lab.display}: no value or no threshold to compare", ev
    threshold: Decimal | None  # the criterion's own value may be missing
    if test.uln_multiple is not None:
        if latest.reference_high is None:
            return (
                Outcome.UNKNOWN,
                f"latest {lab.display} has no upper limit of normal (referenceRange.high)",
                ev,
            )
        high = convert(latest.reference_high, latest.reference_high_unit or latest.unit, latest.unit, lab)
        if high is None:
            return Outcome.UNKNOWN, f"{lab.display}: reference range unit does not match the result unit", ev
        threshold, shown, converted = test.uln_multiple * high, value, False
        label = f"{test.uln_multiple} x ULN ({threshold} {latest.unit or ''})".rstrip()
    else:
        shown_v = convert(value, latest.unit, test.unit, lab)
        if shown_v is None:
            return (
                Outcome.UNKNOWN,
                f"{lab.display} in {latest.unit or 'no unit'} cannot be compared with {test.unit}",
                ev,
            )
        threshold, shown, converted = test.value, shown_v, latest.unit != test.unit
        label = f"{test.value} {test.unit}"
    if threshold is None:
        return Outcome.UNKNOWN, f"{lab.display}: the criterion has no threshold", ev
    if latest.value_comparator:
        return _eval_censored(test.comparator, latest.value_comparator, shown, threshold, lab, label, ev)
    if converted and abs(shown - threshold) <= abs(threshold) * _NEAR:
        return (
            Outcome.UNKNOWN,
            f"{lab.display} {shown:.4g} {test.unit} (converted) is too close to {label}",
            ev,
        )
    met = test.comparator.holds(shown, threshold)
    shown_txt = (
        f"{shown:.4g} {test.unit} (converted from {value} {latest.unit})"
        if converted
        else f"{value} {latest.unit or ''}".strip()
    )
    return (
        Outcome.MET if met else Outcome.NOT_MET,
        f"latest {lab.display} {shown_txt} {'is' if met else 'is not'} {test.comparator.value} {label}",
        ev,
    )


def _eval_censored(
    cmp: Comparator,
    obs_cmp: str,
    value: Decimal,
    threshold: Decimal,
    lab: LabConcept,
    label: str,
    ev: tuple[Evidence, ...],
) -> Result:
    """A result reported as ``<v`` or ``>v``: decided only when the whole interval is on one side."""
    below = obs_cmp in ("<", "<=")
    wants_below = cmp in (Comparator.LT, Comparator.LE)
    shown = f"{lab.display} reported as {obs_cmp}{value}"
    if (below and value <= threshold) or (not below and value >= threshold):
        met = wants_below == below
        return (
            Outcome.MET if met else Outcome.NOT_MET,
            f"{shown}: {'is' if met else 'is not'} {cmp.value} {label}",
            ev,
        )
    return Outcome.UNKNOWN, f"{shown}: cannot tell against {cmp.value} {label}", ev


def _eval_qualitative(
    test: LabTest,
    results: list[tuple[tuple[datetime.date, datetime.date], ObservationFact]],
    p: PatientFacts,
    note: str,
) -> Result:
    lab = test.lab
    if not results:
        return Outcome.UNKNOWN, f"no {lab.display} result (positive/negative){note}", ()
    (last_b, latest) = results[-1]
    if latest.result != test.result:
        return (
            Outcome.NOT_MET,
            f"latest {lab.display} is {latest.result}, not {test.result}",
            (obs_evidence(latest),),
        )
    d = test.duration
    if d is None or d.within:
        return Outcome.MET, f"latest {lab.display} is {test.result}", (obs_evidence(latest),)
    run = 0
    for _, o in reversed(results):
        if o.result != test.result:
            break
        run += 1
    first_b, first = results[-run]
    ev = (obs_evidence(first),) + ((obs_evidence(latest),) if first is not latest else ())
    ok = duration_ok(first_b, d, p.as_of)
    if ok is None:
        return (
            Outcome.UNKNOWN,
            f"{lab.display} {test.result} since {first.effective}: the date cannot show {d.describe()}",
            ev,
        )
    if ok:
        return (
            Outcome.MET,
            f"{lab.display} {test.result} from {first.effective} to {latest.effective}: {d.describe()}",
            ev,
        )
    if run < len(results):
        _, before = results[-run - 1]
        return (
            Outcome.NOT_MET,
            f"{lab.display} was {before.result} on {before.effective}; {test.result} only since "
            f"{first.effective}: not {d.describe()}",
            (obs_evidence(before),) + ev,
        )
    return (
        Outcome.UNKNOWN,
        f"{lab.display} {test.result} since {first.effective} only: earlier results are not "
        f"available to show {d.describe()}",
        ev,
    )
