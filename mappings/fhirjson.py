"""FHIR JSON with exact decimals: ``3.50`` stays ``3.50`` and ``19`` stays ``19`` on the wire.

:func:`loads` reads JSON numbers with a fraction or exponent as :class:`decimal.Decimal`;
:func:`dumps` writes a :class:`~decimal.Decimal` verbatim (``json`` alone would refuse it, and
fhir.resources would round-trip it through ``float``).  Compact output is written by orjson
(several times faster) when that gives the standard library's bytes: anything it might write
otherwise -- ``null`` (also its NaN), a float in exponent form, a NUL -- or cannot write (a
non-string key, an int beyond 64 bits...) is written by ``json`` instead.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

# A Decimal is first written as the JSON string "\0<digits>\0" (FHIR strings cannot hold NUL),
# then the quotes and markers are removed.
_DECIMAL_MARK = re.compile(r'"\\u0000([-+0-9.eE]+)\\u0000"')


def _mark_decimal(value: object) -> str:
    if isinstance(value, Decimal) and value.is_finite():
        return f"\0{value}\0"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


#: The bytes of a JSON number, sign and fraction included.
_NUMBER_BYTES = frozenset(b"0123456789.-")
#: ``e-`` after a byte of a number or after ``:``, ``,`` or ``[`` (where a value starts): the only
#: ``e-`` that may end a number's digits (found by its literal, the byte before it looked back at).
_NUMBER_E_MINUS = re.compile(rb"e-(?<=[-0-9.:,\[]e-)")


def _surely_same(out: bytes) -> bool:
    """Whether orjson's ``out`` is what ``json`` writes (see the module docstring): no ``null``
    (nor NaN, which orjson writes so), NUL or ``0.0000`` anywhere, and no ``e-`` in a number --
    a value starting the text or after ``:``, ``,`` or ``[``.  Inside a string these only cost
    the fallback; plain substring searches (a regex trying every position is slower than json),
    and the one regex here finds ``e-`` by its literal."""
    if b"null" in out or b"\\u0000" in out or b"0.0000" in out or out.startswith(b"e-"):
        return False
    for m in _NUMBER_E_MINUS.finditer(out):
        start = m.start()
        while start > 0 and out[start - 1] in _NUMBER_BYTES:
            start -= 1
        if start == 0 or out[start - 1] in b":,[":
            return False
    return True


def _fragment(value: object) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(f"{value}")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(data: Any, *, indent: int | None = None) -> str:
    """Serialise FHIR JSON, writing Decimals exactly as they are."""
    if indent is None:
        try:
            out = orjson.dumps(data, default=_fragment,
                               option=orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME)
        except TypeError:
            pass  # json says what it cannot write, as before
        else:
            if _surely_same(out):
                return out.decode("utf-8")
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(data, ensure_ascii=False, indent=indent, separators=separators, default=_mark_decimal)
    return _DECIMAL_MARK.sub(r"\1", text) if "\\u0000" in text else text


def loads(data: str | bytes) -> Any:
    """Parse FHIR JSON, reading decimal numbers as :class:`Decimal`."""
    return json.loads(data, parse_float=Decimal)
