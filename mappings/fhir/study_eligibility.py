"""Eligibility and enrollment of a study, written and read: the eligibility Group's registry
characteristics (age range, sex, healthy volunteers, ...), the enrollment type, and the Group itself.

Every registry characteristic is one row of :data:`CHARACTERISTICS` (its code in the table's
``characteristics``, the :class:`Eligibility` field it carries, and its value type); the writer and
the reader of a value type sit side by side in :data:`_VALUE_TYPES`, so adding a characteristic is
one row.  The computable criteria derived from the criteria text (:mod:`.criteria`) are skipped by
the reader (:func:`~mappings.fhir.criteria.is_derived`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from ..model import Eligibility, Enrollment
from ..units import registry_age_units
from .criteria import is_derived
from .elements import ext, ext_value, prune
from .identity import reference
from .study_base import ReadBase, WriteBase
from .systems import JSON, SID, UCUM, Ext
from .tables import coding, has_coding


@dataclass(frozen=True)
class Characteristic:
    """One kind of registry characteristic: ``key`` (its code in the table's ``characteristics``),
    the :class:`Eligibility` field(s) it ``carries``, its value type (a key of :data:`_VALUE_TYPES`) and,
    for a coded value, the code list."""

    key: str
    carries: tuple[str, ...]
    value_type: str
    code_list: str | None = None


#: The registry characteristics of the eligibility Group, in the order they are written.
CHARACTERISTICS = (
    Characteristic("age", ("minimum_age", "maximum_age"), "age-range"),
    Characteristic("minimum-age", ("minimum_age",), "age-text"),
    Characteristic("maximum-age", ("maximum_age",), "age-text"),
    Characteristic("sex", ("sex",), "coded", "sex"),
    Characteristic("gender-based", ("gender_based",), "boolean"),
    Characteristic("gender-description", ("gender_description",), "text"),
    Characteristic("healthy-volunteers", ("healthy_volunteers",), "boolean"),
    Characteristic("age-group", ("std_ages",), "coded-list", "std_age"),
    Characteristic("study-population", ("study_population",), "text"),
    Characteristic("sampling-method", ("sampling_method",), "text"),
)


# --- value types: (writer -> value[x] of each characteristic, reader -> into the Eligibility) ------


def _write_age_range(w: EligibilityWriter, c: Characteristic, e: Eligibility) -> list[JSON]:
    """One ``valueRange`` of UCUM quantities when either age is in the exact form ``18 Years``.

    Bounds in different units (``3 Months`` to ``17 Years``) are two characteristics, a Range with
    only ``low`` and one with only ``high`` (both must hold): a Range's bounds must share their unit
    (FHIR rng-2), and converting one would change the published text."""
    units = registry_age_units()
    low, high = (age_quantity(v, units) if v is not None else None for v in (e.minimum_age, e.maximum_age))
    if low and high and low["code"] != high["code"]:
        return [{"valueRange": {"low": low}}, {"valueRange": {"high": high}}]
    return [{"valueRange": prune({"low": low, "high": high})}] if low or high else []


def _read_age_range(r: EligibilityReader, c: Characteristic, ch: JSON, e: Eligibility) -> None:
    rng = ch.get("valueRange") or {}
    if rng.get("low"):
        e.minimum_age = age_text(rng["low"])
    if rng.get("high"):
        e.maximum_age = age_text(rng["high"])


def _write_age_text(w: EligibilityWriter, c: Characteristic, e: Eligibility) -> list[JSON]:
    """The published text of an age that is not in the exact form (``N/A``)."""
    value = getattr(e, c.carries[0])
    if value is None or age_quantity(value, registry_age_units()) is not None:
        return []
    return [{"valueCodeableConcept": {"text": value}}]


def _write_text(w: EligibilityWriter, c: Characteristic, e: Eligibility) -> list[JSON]:
    value = getattr(e, c.carries[0])
    return [] if value is None else [{"valueCodeableConcept": {"text": value}}]


def _read_text(r: EligibilityReader, c: Characteristic, ch: JSON, e: Eligibility) -> None:
    setattr(e, c.carries[0], (ch.get("valueCodeableConcept") or {}).get("text"))


def _write_boolean(w: EligibilityWriter, c: Characteristic, e: Eligibility) -> list[JSON]:
    value = getattr(e, c.carries[0])
    return [] if value is None else [{"valueBoolean": value}]


def _read_boolean(r: EligibilityReader, c: Characteristic, ch: JSON, e: Eligibility) -> None:
    setattr(e, c.carries[0], ch.get("valueBoolean"))


def _write_coded(w: EligibilityWriter, c: Characteristic, e: Eligibility) -> list[JSON]:
    name = c.carries[0]
    value = getattr(e, name)
    if value is None:
        return []
    return [{"valueCodeableConcept": w.concept(c.code_list or "", value, f"eligibility.{name}")}]


def _read_coded(r: EligibilityReader, c: Characteristic, ch: JSON, e: Eligibility) -> None:
    name = c.carries[0]
    setattr(e, name, r.value(c.code_list or "", ch.get("valueCodeableConcept"), f"eligibility.{name}"))


def _write_coded_list(w: EligibilityWriter, c: Characteristic, e: Eligibility) -> list[JSON]:
    name = c.carries[0]
    return [{"valueCodeableConcept": w.concept(c.code_list or "", v, f"eligibility.{name}[{i}]")}
            for i, v in enumerate(getattr(e, name))]


def _read_coded_list(r: EligibilityReader, c: Characteristic, ch: JSON, e: Eligibility) -> None:
    found = getattr(e, c.carries[0])
    found.append(r.value(c.code_list or "", ch.get("valueCodeableConcept"),
                         f"eligibility.{c.carries[0]}[{len(found)}]"))


Writer = Callable[["EligibilityWriter", Characteristic, Eligibility], list[JSON]]
Reader = Callable[["EligibilityReader", Characteristic, JSON, Eligibility], None]

#: Value type -> (writer, reader).
_VALUE_TYPES: dict[str, tuple[Writer, Reader]] = {
    "age-range": (_write_age_range, _read_age_range),
    "age-text": (_write_age_text, _read_text),
    "text": (_write_text, _read_text),
    "boolean": (_write_boolean, _read_boolean),
    "coded": (_write_coded, _read_coded),
    "coded-list": (_write_coded_list, _read_coded_list),
}


class EligibilityWriter(WriteBase):
    """Writes the eligibility characteristics, the enrollment type and the Group."""

    def eligibility(self) -> Eligibility | None:
        """The eligibility record, or ``None`` when it says nothing."""
        e = self.p.eligibility
        if e is None or not any(getattr(e, f.name) not in (None, []) for f in fields(e)):
            return None
        return e

    def characteristics(self) -> list[JSON]:
        """Group.characteristic entries for ages, sex, volunteers, age groups, population, sampling
        (one per value, in the order of :data:`CHARACTERISTICS`)."""
        e = self.eligibility()
        if e is None:
            return []
        codes = self.table["characteristics"]
        out = []
        for c in CHARACTERISTICS:
            write = _VALUE_TYPES[c.value_type][0]
            out += [{"code": {"coding": [coding(codes[c.key])]}, **value, "exclude": False}
                    for value in write(self, c, e)]
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
        """Inverse of :meth:`EligibilityWriter.characteristics` (plus the criteria text)."""
        if group is None:
            return None
        codes = self.table["characteristics"]
        e = Eligibility(criteria=criteria)
        for key, ours in (("type", "person"), ("membership", "definitional"), ("actual", False)):
            self.take_if(group, key, ours)  # a definitional Group of persons: what eligibility is
        for ch in group.get("characteristic", []):
            self.take_if(ch, "exclude", False)
            if is_derived(ch):
                # a computable criterion: derived from the criteria text (in the model), not read back
                self.take(ch)
                self.take(self.index.resolve(ch.get("valueReference"), group))
                continue
            code = ch.get("code")
            kind = next((c for c in CHARACTERISTICS if has_coding(code, codes[c.key])), None)
            if kind is not None:
                _VALUE_TYPES[kind.value_type][1](self, kind, ch, e)
        if not any(getattr(e, f.name) not in (None, []) for f in fields(e)):
            return None
        return e

    def enrollment(self, count: int | None, holder: JSON | None) -> Enrollment | None:
        """An Enrollment from a count and the element carrying the enrollment-type extension."""
        if count is None:
            return None
        return Enrollment(count=count, type=self.value(
            "date_type", ext_value(holder, Ext.ENROLLMENT_TYPE, "valueCodeableConcept"), "enrollment.type"))


#: A registry age: a number, one space, a unit word (``18 Years``).
_AGE_QUANTITY = re.compile(r"(\d+(?:\.\d+)?) ([A-Za-z]+)")


def age_quantity(text: str, units: Mapping[str, str]) -> JSON | None:
    """``'18 Years'`` -> UCUM Quantity keeping the published unit word; ``None`` if not exact."""
    m = _AGE_QUANTITY.fullmatch(text)
    if not m or m.group(2) not in units:
        return None
    number = m.group(1)
    value: int | float = int(number) if number.isdigit() else float(number)
    if str(value) != number:
        return None
    return {"value": value, "unit": m.group(2), "system": UCUM, "code": units[m.group(2)]}


def age_text(quantity: JSON) -> str | None:
    """Inverse of :func:`age_quantity`; a Quantity written elsewhere whose unit is not a registry
    word but whose UCUM code is a time unit (``{"value": 18, "code": "a"}``) reads as the registry's
    plural word (``18 Years``)."""
    if quantity.get("value") is None:
        return quantity.get("unit")
    unit = quantity.get("unit") or quantity.get("code") or ""
    words = registry_age_units()
    if unit.lower() not in {w.lower() for w in words} and quantity.get("system") == UCUM:
        plural = (w for w, code in words.items() if code == quantity.get("code") and w.endswith("s"))
        unit = next(plural, unit)
    return f"{quantity['value']} {unit}".strip()


__all__ = ["CHARACTERISTICS", "Characteristic", "EligibilityReader", "EligibilityWriter", "age_quantity",
           "age_text"]
