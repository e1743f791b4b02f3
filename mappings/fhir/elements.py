"""Helpers for FHIR elements: extensions (build, find, read), pruning empty elements, exact decimals,
partial dates and the ACTUAL/ESTIMATED date type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from .. import values
from ..errors import MappingError, MappingIssue
from .systems import JSON, Ext
from .tables import Coder

_PARTIAL_DATE = re.compile(r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?")


def ext(url: str, **value: Any) -> JSON:
    """A simple extension: ``ext(URL, valueString="x")``."""
    return {"url": url, **value}


def complex_ext(url: str, parts: list[JSON]) -> JSON | None:
    """A complex extension, or ``None`` when it would have no sub-extensions."""
    return {"url": url, "extension": parts} if parts else None


def exts(element: JSON | None, url: str) -> list[JSON]:
    """The extensions of ``element`` with ``url``."""
    return [e for e in (element or {}).get("extension", []) if e.get("url") == url]


def first_ext(element: JSON | None, url: str) -> JSON | None:
    """The first extension of ``element`` with ``url``."""
    found = exts(element, url)
    return found[0] if found else None


def exact(value: Any) -> Decimal | None:
    """A FHIR decimal as :class:`Decimal`: kept as is when the JSON was read with exact decimals,
    else from the shortest text of the float (what the wire carried)."""
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def ext_value(element: JSON | None, url: str, key: str) -> Any:
    """``value<key>`` of the first extension with ``url`` (``None`` when absent)."""
    found = first_ext(element, url)
    return found.get(key) if found else None


def ext_values(element: JSON | None, url: str, key: str) -> list[Any]:
    """``value<key>`` of every extension with ``url``."""
    return [e[key] for e in exts(element, url) if key in e]


def add_extensions(element: JSON, extensions: Iterable[JSON | None]) -> JSON:
    """Append the non-``None`` extensions to ``element`` (in place) and return it."""
    found = [e for e in extensions if e is not None]
    if found:
        element.setdefault("extension", []).extend(found)
    return element


#: What :func:`prune` drops when empty (a list or dict, subclasses too, as ``== []`` / ``== {}`` do).
_CONTAINERS = (list, dict)


def prune(data: JSON) -> JSON:
    """Drop keys whose value is ``None`` or an empty list/dict (FHIR forbids empty elements)."""
    return {k: v for k, v in data.items() if v is not None and (v or not isinstance(v, _CONTAINERS))}


# --- dates ---------------------------------------------------------------------------------------


def check_date(value: str, field_name: str) -> str:
    """A partial ISO date (``2019``, ``2019-05``, ``2019-05-20``) as FHIR accepts it."""
    if not _PARTIAL_DATE.fullmatch(value):
        raise MappingError(f"{field_name}: {value!r} is not a partial ISO date (YYYY[-MM[-DD]])")
    return values.check_date(value, field_name)  # and a day that exists: the one rule


def date_type_parts(date_type: str | None, coder: Coder, issues: list[MappingIssue],
                    field_name: str) -> tuple[bool | None, JSON | None]:
    """``(actual, extension)`` for a date type: ACTUAL -> True, ESTIMATED -> False, else an extension."""
    if date_type is None:
        return None, None
    if date_type == "ACTUAL":
        return True, None
    if date_type == "ESTIMATED":
        return False, None
    concept = coder.concept("date_type", date_type, issues, field_name)
    return None, ext(Ext.DATE_TYPE, valueCodeableConcept=concept)


def date_type_from(actual: bool | None, element: JSON, coder: Coder, issues: list[MappingIssue],
                   field_name: str) -> str | None:
    """Inverse of :func:`date_type_parts`."""
    if actual is True:
        return "ACTUAL"
    if actual is False:
        return "ESTIMATED"
    return coder.value("date_type", ext_value(element, Ext.DATE_TYPE, "valueCodeableConcept"),
                       issues, field_name)


__all__ = ["add_extensions", "check_date", "complex_ext", "date_type_from", "date_type_parts", "exact", "ext",
           "ext_value", "ext_values", "exts", "first_ext", "prune"]


def references_in(value: Any) -> Iterator[str]:
    """Every ``reference`` string in a FHIR JSON value, depth first."""
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for key, inner in value.items():
            if key != "reference":
                yield from references_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references_in(inner)
