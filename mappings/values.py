"""What a FHIR string, integer and date may hold: the one rule every value entering trialbridge is
checked against, where it enters.

* a study page as text: :func:`check_text` -- no forbidden character, by line and column;
* JSON (records, Bundles): :func:`loads` -- every string and key, and every number's length;
* numbers read from XML or text: :func:`whole_number`;
* a protocol read from any source (JSON, XML, text): :func:`check_protocol` -- its strings, its
  integers (FHIR ``integer`` is 32-bit) and its dates (a real calendar day);
* CSV cells: :func:`check_string`, called by the CSV readers for every cell.

A value that breaks the rule raises :class:`InputError` naming the field (a 400 from the service, one
line and exit 2 from the CLI), never a traceback or a 500 further on.  The rule, per FHIR's
datatypes: a string holds no lone surrogate (not Unicode) and no character below U+0020 but tab,
line feed and carriage return; an integer is within -2,147,483,648..2,147,483,647; a date is ``YYYY``,
``YYYY-MM`` or ``YYYY-MM-DD`` naming a day that exists.  A JSON number longer than
:data:`MAX_NUMBER_CHARS` is refused before Python reads it (a 5,000-digit integer exceeds Python's
own limit and no lab or registry number comes near it).
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date
from decimal import Decimal
from typing import Any

from .errors import InputError

__all__ = ["INTEGER_MAX", "INTEGER_MIN", "MAX_NUMBER_CHARS", "check_date", "check_integer",
           "check_protocol", "check_string", "check_text", "loads", "whole_number"]

#: FHIR ``integer``: a signed 32-bit number.
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1
#: Longest JSON number (characters) read.
MAX_NUMBER_CHARS = 40
#: What a FHIR string may not hold: characters below U+0020 but tab, LF, CR (FHIR's rule for string);
#: lone surrogates (not Unicode characters, so not encodable).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
#: A JSON escape that may decode to a forbidden character (raw control characters are not JSON).
_SUSPICIOUS_ESCAPE = re.compile(r"\\u(?:00[01]|d[89a-f])", re.IGNORECASE)
#: Bytes -> b"0" for the characters of a JSON number, b"\x00" for a forbidden control character: one
#: ``bytes.translate`` (C speed) and a substring test replace a regex scan of the whole text.
_NUMBER_CHARS, _CONTROL_CHARS = b"0123456789eE.+-", bytes([*range(0, 9), 11, 12, *range(14, 32)])
_MARKS = bytes.maketrans(_NUMBER_CHARS + _CONTROL_CHARS,
                         b"0" * len(_NUMBER_CHARS) + b"\x00" * len(_CONTROL_CHARS))
#: ``\\u`` in the marked bytes, exactly where the text has it (the translation keeps both bytes and
#: no other UTF-8 byte is either): a regex finds it by its rare first byte several times faster
#: than ``"\\u" in text`` scans a long text.
_ESCAPE_U = re.compile(rb"\\u")
_PARTIAL_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
#: Names of the protocol model's date fields (``DateStruct.date`` and the plain ones).
_DATE_FIELDS = frozenset({"date", "status_verified_date", "first_submitted"})


def check_string(value: str, field: str) -> str:
    """``value`` when a FHIR string may hold it; else :class:`InputError` naming the character."""
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise InputError(f"{_kind(bad.group())} at position {bad.start() + 1}; a FHIR string cannot hold it",
                         field=field)
    return value


def _kind(char: str) -> str:
    kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return f"{kind} (U+{ord(char):04X})"


def check_integer(value: int, field: str) -> int:
    """``value`` when it fits FHIR ``integer`` (32-bit); else :class:`InputError`."""
    if not INTEGER_MIN <= value <= INTEGER_MAX:
        raise InputError(f"{value} does not fit a FHIR integer ({INTEGER_MIN} to {INTEGER_MAX})", field=field)
    return value


def check_date(value: str, field: str) -> str:
    """A partial ISO date that names a real year, month or day (``2021-02-30`` is refused).  A text
    of another form is left to the FHIR writer, which says what form it wants."""
    match = _PARTIAL_DATE.fullmatch(value)
    if match is None:
        return value
    year, month, day = match.groups()
    try:
        date(int(year), int(month) if month else 1, int(day) if day else 1)
    except ValueError as exc:
        raise InputError(f"{value!r} is not a date that exists ({exc})", field=field) from None
    return value


def whole_number(digits: str, field: str) -> int:
    """A number read from text (XML, the study page): refused when longer than
    :data:`MAX_NUMBER_CHARS`, then checked as a FHIR integer."""
    if len(digits) > MAX_NUMBER_CHARS:
        raise InputError(f"a number of {len(digits)} characters is too long (at most {MAX_NUMBER_CHARS})",
                         field=field)
    return check_integer(int(digits), field)


def check_text(text: str) -> str:
    """A whole input text: no character a FHIR string may not hold, wherever it is (reported by line
    and column; JSON escapes such as ``\\u0000`` are found by :func:`loads`)."""
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - text.rfind("\n", 0, bad.start())
        raise InputError(f"{_kind(bad.group())}; a FHIR string cannot hold it",
                         field=f"line {line}, column {column}")
    return text


class _Oversized:
    """A JSON number too long to read: kept as its length until :func:`loads` finds its field."""

    def __init__(self, text: str) -> None:
        self.length = len(text)


def loads(text: str) -> Any:
    """JSON text parsed (decimals exact) and checked: every string and key (:func:`check_string`),
    every number's length.  Raises :class:`json.JSONDecodeError` for malformed JSON, InputError for
    a value no FHIR element may hold."""
    marked = _marked(text)
    if marked is not None and b"0" * (MAX_NUMBER_CHARS + 1) not in marked:
        # no number can be too long (no run of number characters that long): the C parser reads them
        data = json.loads(text, parse_float=Decimal)
        if _ESCAPE_U.search(marked) and _SUSPICIOUS_ESCAPE.search(text):
            _walk(data, "")
        return data
    oversized: list[_Oversized] = []

    def number(kind: type) -> Any:
        def parse(literal: str) -> Any:
            if len(literal) > MAX_NUMBER_CHARS:
                oversized.append(_Oversized(literal))
                return oversized[-1]
            return kind(literal)
        return parse

    data = json.loads(text, parse_float=number(Decimal), parse_int=number(int))
    if oversized or marked is None or _SUSPICIOUS_ESCAPE.search(text):
        _walk(data, "")
    return data


def _marked(text: str) -> bytes | None:
    """The text's UTF-8 bytes through :data:`_MARKS`; None when it holds a lone surrogate."""
    try:
        return text.encode("utf-8").translate(_MARKS)
    except UnicodeEncodeError:
        return None


def _walk(value: Any, path: str) -> None:
    if isinstance(value, str):
        check_string(value, path or "(document)")
    elif isinstance(value, _Oversized):
        raise InputError(f"a number of {value.length} characters is too long (at most {MAX_NUMBER_CHARS})",
                         field=path or "(document)")
    elif isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else key
            check_string(key, where)
            _walk(inner, where)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            _walk(inner, f"{path}[{i}]")


def check_protocol(protocol: Any, path: str = "") -> None:
    """Every string, integer and date of a protocol model (a dataclass tree) checked, the field named
    by its model path (``enrollment.count``, ``locations[3].facility``).  A first walk only gathers
    the values and checks them together (the common case: all is well); a protocol it doubts is walked
    again to name the field."""
    strings: list[str] = []
    dates: list[str] = []
    numbers: list[int] = []
    _gather(protocol, "", strings, dates, numbers)
    marked = _marked("\n".join(strings))
    fine = (marked is not None and b"\x00" not in marked
            and all(INTEGER_MIN <= n <= INTEGER_MAX for n in numbers) and all(map(_date_fine, dates)))
    if not fine:
        _check_protocol(protocol, path)


def _gather(value: Any, name: str, strings: list[str], dates: list[str], numbers: list[int]) -> None:
    if isinstance(value, str):
        strings.append(value)
        if name in _DATE_FIELDS:
            dates.append(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        numbers.append(value)
    elif isinstance(value, list):
        for inner in value:
            _gather(inner, name, strings, dates, numbers)
    else:
        for field_name in _field_names(type(value)):
            _gather(getattr(value, field_name), field_name, strings, dates, numbers)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass (none for any other type), looked up once per class."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()
        _FIELD_NAMES[cls] = names
    return names


def _date_fine(value: str) -> bool:
    try:
        check_date(value, "")
    except InputError:
        return False
    return True


def _check_protocol(protocol: Any, path: str) -> None:
    if isinstance(protocol, str):
        check_string(protocol, path)
        if path.rsplit(".", 1)[-1] in _DATE_FIELDS:
            check_date(protocol, path)
    elif isinstance(protocol, bool):
        return
    elif isinstance(protocol, int):
        check_integer(protocol, path)
    elif isinstance(protocol, list):
        for i, inner in enumerate(protocol):
            _check_protocol(inner, f"{path}[{i}]")
    elif dataclasses.is_dataclass(protocol) and not isinstance(protocol, type):
        for f in dataclasses.fields(protocol):
            _check_protocol(getattr(protocol, f.name), f"{path}.{f.name}" if path else f.name)
