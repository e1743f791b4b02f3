"""mappings.values: what a FHIR string, integer and date may hold, checked where values enter."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from mappings import values
from mappings.errors import InputError
from mappings.model import DateStruct, Enrollment, Protocol


@pytest.mark.parametrize(("text", "kind"), [
    ("S0\x0003", r"U\+0000"), ("a\x07b", r"U\+0007"), ("\x1f", r"U\+001F"), ("x\ud800", "lone surrogate")])
def test_a_string_with_a_control_character_or_a_lone_surrogate_is_refused(text, kind):
    with pytest.raises(InputError, match=kind) as err:
        values.check_string(text, "subject_id")
    assert err.value.field == "subject_id"


@pytest.mark.parametrize("text", ["plain", "tab\tand\nnew\r\nlines", "\U0001F600 ünïcödé", "", "\x7f\x85"])
def test_what_a_fhir_string_may_hold_passes(text):
    assert values.check_string(text, "f") == text


@pytest.mark.parametrize(("number", "ok"), [(2**31 - 1, True), (-(2**31), True), (2**31, False),
                                            (-(2**31) - 1, False), (3_000_000_000, False)])
def test_integers_must_fit_fhir_integer(number, ok):
    if ok:
        assert values.check_integer(number, "count") == number
    else:
        with pytest.raises(InputError, match="does not fit a FHIR integer"):
            values.check_integer(number, "count")


@pytest.mark.parametrize("text", ["2021-02-30", "2021-13", "2021-00", "2019-04-31", "2023-02-29"])
def test_an_impossible_date_is_refused(text):
    with pytest.raises(InputError, match="not a date that exists"):
        values.check_date(text, "start_date")


@pytest.mark.parametrize("text", ["2024-02-29", "2021-12", "1999", "May 2019"])
def test_a_real_date_or_a_text_left_to_the_writer_passes(text):
    assert values.check_date(text, "start_date") == text


def test_json_strings_keys_and_escapes_are_checked_with_their_path():
    with pytest.raises(InputError, match=r"a\.b\[1\]: a lone surrogate"):
        values.loads('{"a": {"b": ["ok", "\\ud800"]}}')
    with pytest.raises(InputError, match=r"U\+0000"):
        values.loads('{"x\\u0000": 1}')
    assert values.loads('{"a": "\\ud83d\\ude00", "n": 3.50}') == {"a": "\U0001F600", "n": Decimal("3.50")}


@pytest.mark.parametrize("number", ["9" * 5000, "1." + "9" * 5000, "1e" + "9" * 50,
                                    "1234567890123456789.012345678901234567890", "-1" + "0" * 40])
def test_an_oversized_json_number_is_refused_naming_its_field(number):
    with pytest.raises(InputError, match="too long") as err:
        values.loads(f'{{"enrollmentInfo": {{"count": {number}}}}}')
    assert err.value.field == "enrollmentInfo.count"


def test_a_whole_input_text_names_line_and_column():
    with pytest.raises(InputError, match=r"U\+0000") as err:
        values.check_text("first line\nsecond \x00 line")
    assert err.value.field == "line 2, column 8"


def test_whole_numbers_from_text_are_bounded():
    assert values.whole_number("31", "enrollment") == 31
    for digits in ("9" * 5000, "3000000000"):
        with pytest.raises(InputError):
            values.whole_number(digits, "enrollment")


def test_a_protocol_is_checked_field_by_field():
    values.check_protocol(Protocol("NCT00000001", brief_title="ok", enrollment=Enrollment(31)))
    bad = [(Protocol("NCT00000001", enrollment=Enrollment(2**31)), "enrollment.count"),
           (Protocol("NCT00000001", conditions=["a", "b\x00"]), r"conditions\[1\]"),
           (Protocol("NCT00000001", start_date=DateStruct("2021-02-30")), "start_date.date"),
           (Protocol("NCT00000001", first_submitted="2021-02-30"), "first_submitted")]
    for protocol, field in bad:
        with pytest.raises(InputError, match=field):
            values.check_protocol(protocol)


@pytest.mark.parametrize("number", ["1234567890123456789.0123456789012345678", "-" + "9" * 39, "1e-9"])
def test_a_json_number_of_40_characters_or_fewer_is_read_exactly(number):
    assert values.loads(f'{{"x": [{number}]}}')["x"][0] == (Decimal(number) if any(c in number for c in ".e")
                                                          else int(number))


def test_the_fixture_records_pass():
    from tests.conftest import ALL_RECORDS
    for path in ALL_RECORDS:
        if path.suffix == ".json":
            json.dumps(values.loads(path.read_text("utf-8")), default=str)


def test_an_escape_u_is_found_in_the_marked_bytes_where_the_text_has_it():
    """``loads`` looks for ``\\u`` in the marked bytes (``values._ESCAPE_U``), not in the text:
    the same answer for texts of every kind of character (ASCII, Latin, CJK, emoji)."""
    import random

    rng = random.Random("escape-u")
    pieces = ["\\", "u", "\\u", "\\\\", "0", "e", "é", "ü", "€", "中", "😀", '"', " ", "a", "\n"]
    checked = found = 0
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 12)))
        marked = values._marked(text)
        assert marked is not None
        assert (values._ESCAPE_U.search(marked) is not None) == ("\\u" in text), text
        checked += 1
        found += "\\u" in text
    assert 300 < found < checked - 300
