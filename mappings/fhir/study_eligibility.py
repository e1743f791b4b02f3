"""Eligibility and enrollment of a study, written and read: the eligibility Group's registry
characteristics (age range, sex, healthy volunteers, ...), the enrollment type, and the Group itself.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

from ..model import Eligibility, Enrollment
from .criteria import is_derived
from .elements import ext, ext_value, prune
from .identity import reference
from .study_base import ReadBase, WriteBase
from .systems import JSON, SID, UCUM, Ext
from .tables import coding, has_coding


class EligibilityWriter(WriteBase):
    """Writes the eligibility characteristics, the enrollment type and the Group."""

    def eligibility(self) -> Eligibility | None:
        """The eligibility record, or ``None`` when it says nothing."""
        e = self.p.eligibility
        if e is None or not any(getattr(e, f.name) not in (None, []) for f in fields(e)):
            return None
        return e

    def characteristics(self) -> list[JSON]:
        """Group.characteristic entries for ages, sex, volunteers, age groups, population, sampling."""
        e = self.eligibility()
        if e is None:
            return []
        codes, units = self.table["characteristics"], self.table["age_units"]

        def char(key: str, **value: Any) -> JSON:
            return {"code": {"coding": [coding(codes[key])]}, **value, "exclude": False}

        out = []
        low = age_quantity(e.minimum_age, units) if e.minimum_age is not None else None
        high = age_quantity(e.maximum_age, units) if e.maximum_age is not None else None
        if low or high:
            out.append(char("age", valueRange=prune({"low": low, "high": high})))
        if e.minimum_age is not None and low is None:
            out.append(char("minimum-age", valueCodeableConcept={"text": e.minimum_age}))
        if e.maximum_age is not None and high is None:
            out.append(char("maximum-age", valueCodeableConcept={"text": e.maximum_age}))
        if e.sex is not None:
            out.append(char("sex", valueCodeableConcept=self.concept("sex", e.sex, "eligibility.sex")))
        if e.gender_based is not None:
            out.append(char("gender-based", valueBoolean=e.gender_based))
        if e.gender_description is not None:
            out.append(char("gender-description", valueCodeableConcept={"text": e.gender_description}))
        if e.healthy_volunteers is not None:
            out.append(char("healthy-volunteers", valueBoolean=e.healthy_volunteers))
        for i, age in enumerate(e.std_ages):
            out.append(char("age-group", valueCodeableConcept=self.concept(
                "std_age", age, f"eligibility.std_ages[{i}]")))
        if e.study_population is not None:
            out.append(char("study-population", valueCodeableConcept={"text": e.study_population}))
        if e.sampling_method is not None:
            out.append(char("sampling-method", valueCodeableConcept={"text": e.sampling_method}))
        return out

    def enrollment_type(self) -> JSON | None:
        """The enrollment-type extension (ACTUAL / ESTIMATED), when the type is known."""
        en = self.p.enrollment
        if en is None or en.type is None:
            return None
        concept = self.concept("date_type", en.type, "enrollment.type")
        return ext(Ext.ENROLLMENT_TYPE, valueCodeableConcept=concept)

    def add_group(self, body: JSON) -> JSON:
        """Register the eligibility Group (scoped by NCT id); a Reference to it."""
        url = self.registry.add("Group", SID + "group", f"{self.p.nct_id}-eligibility", body)
        return reference(url, "Group")


class EligibilityReader(ReadBase):
    """Reads the eligibility characteristics and the enrollment."""

    def eligibility(self, group: JSON | None, criteria: str | None) -> Eligibility | None:
        """Inverse of :meth:`WriteContext.characteristics` (plus the criteria text)."""
        if group is None:
            return None
        codes = self.table["characteristics"]
        e = Eligibility(criteria=criteria)

        for ch in group.get("characteristic", []):
            if is_derived(ch):
                continue  # a computable criterion: derived from the criteria text, not read back
            code = ch.get("code")
            text = (ch.get("valueCodeableConcept") or {}).get("text")
            if has_coding(code, codes["age"]):
                rng = ch.get("valueRange") or {}
                if rng.get("low"):
                    e.minimum_age = age_text(rng["low"])
                if rng.get("high"):
                    e.maximum_age = age_text(rng["high"])
            elif has_coding(code, codes["minimum-age"]):
                e.minimum_age = text
            elif has_coding(code, codes["maximum-age"]):
                e.maximum_age = text
            elif has_coding(code, codes["sex"]):
                e.sex = self.value("sex", ch.get("valueCodeableConcept"), "eligibility.sex")
            elif has_coding(code, codes["gender-based"]):
                e.gender_based = ch.get("valueBoolean")
            elif has_coding(code, codes["gender-description"]):
                e.gender_description = text
            elif has_coding(code, codes["healthy-volunteers"]):
                e.healthy_volunteers = ch.get("valueBoolean")
            elif has_coding(code, codes["age-group"]):
                e.std_ages.append(self.value("std_age", ch.get("valueCodeableConcept"),
                                             f"eligibility.std_ages[{len(e.std_ages)}]"))
            elif has_coding(code, codes["study-population"]):
                e.study_population = text
            elif has_coding(code, codes["sampling-method"]):
                e.sampling_method = text
        if not any(getattr(e, f.name) not in (None, []) for f in fields(e)):
            return None
        return e

    def enrollment(self, count: int | None, holder: JSON | None) -> Enrollment | None:
        """An Enrollment from a count and the element carrying the enrollment-type extension."""
        if count is None:
            return None
        return Enrollment(count=count, type=self.value(
            "date_type", ext_value(holder, Ext.ENROLLMENT_TYPE, "valueCodeableConcept"), "enrollment.type"))


def age_quantity(text: str, units: JSON) -> JSON | None:
    """``'18 Years'`` -> UCUM Quantity keeping the published unit word; ``None`` if not exact."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ([A-Za-z]+)", text)
    if not m or m.group(2) not in units:
        return None
    number = m.group(1)
    value: int | float = int(number) if number.isdigit() else float(number)
    if str(value) != number:
        return None
    return {"value": value, "unit": m.group(2), "system": UCUM, "code": units[m.group(2)]}



def age_text(quantity: JSON) -> str | None:
    """Inverse of :func:`age_quantity`."""
    if quantity.get("value") is None:
        return quantity.get("unit")
    unit = quantity.get("unit") or quantity.get("code") or ""
    return f"{quantity['value']} {unit}".strip()


__all__ = ['EligibilityReader', 'EligibilityWriter', 'age_quantity', 'age_text']
