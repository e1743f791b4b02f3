"""fhirjson.dumps gives the standard library's bytes whichever writer it uses; loads keeps decimals."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import fhirjson


def stdlib_dumps(data: object) -> str:
    """What fhirjson.dumps wrote before it used orjson: json with Decimals marked, then unmarked."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=fhirjson._mark_decimal)
    return fhirjson._DECIMAL_MARK.sub(r"\1", text) if "\\u0000" in text else text


_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text()
            | st.decimals(allow_nan=False, allow_infinity=False, places=None))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


@settings(max_examples=1500, deadline=None)
@given(_json)
def test_dumps_writes_what_json_writes(data):
    assert fhirjson.dumps(data) == stdlib_dumps(data)


@pytest.mark.parametrize("data", [
    {"value": Decimal("3.50"), "low": Decimal("1E-7"), "n": 19, "f": 1e-05, "g": 1e16, "h": 0.00001},
    {"text": "naïve – “quoted” \u2028 \x7f \x00 \x1f \\ / \ud7ff 😀", "null": None},
    {"x": [float("nan"), math.inf, -math.inf]},
    {"big": 2**64, "bigger": -(2**64) - 1},
    {"fake decimal": "\x0012\x00"},
    [Decimal("-0"), Decimal("0E-10"), (1, 2), True, False],
])
def test_dumps_writes_what_json_writes_on_edge_cases(data):
    assert fhirjson.dumps(data) == stdlib_dumps(data)


@pytest.mark.parametrize("data", [{1: "int key", 2.5: "float key", False: 1, None: 2}, {"u": "\ud800"}])
def test_what_orjson_cannot_write_json_writes(data):
    assert fhirjson.dumps(data) == stdlib_dumps(data)


@pytest.mark.parametrize("data", [{"x": Decimal("NaN")}, {"x": object()}, {"x": {1, 2}}, {(1, 2): 3}])
def test_what_json_refuses_is_refused(data):
    with pytest.raises(TypeError):
        fhirjson.dumps(data)


def test_loads_keeps_decimals_exact():
    assert fhirjson.loads('{"v": 3.50, "n": 19}') == {"v": Decimal("3.50"), "n": 19}
    assert fhirjson.dumps(fhirjson.loads('{"v":3.50,"n":19}')) == '{"v":3.50,"n":19}'


def _e_minus_in_a_number(out: bytes) -> bool:
    """The definition: some ``e-`` whose run of number bytes before it starts the text or follows
    ``:``, ``,`` or ``[``."""
    at = out.find(b"e-")
    while at != -1:
        start = at
        while start > 0 and out[start - 1] in b"0123456789.-":
            start -= 1
        if start == 0 or out[start - 1] in b":,[":
            return True
        at = out.find(b"e-", at + 2)
    return False


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from([b"e-", b"e", b"-", b"1", b"0", b".", b":", b",", b"[", b"a", b'"', b" "]),
                max_size=12).map(b"".join))
def test_an_e_minus_is_looked_at_where_a_number_may_hold_it(out):
    assert fhirjson._surely_same(out) == (not _e_minus_in_a_number(out)
                                          and not any(s in out for s in (b"null", b"\\u0000", b"0.0000")))
