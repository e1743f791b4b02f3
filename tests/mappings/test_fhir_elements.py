"""FHIR element helpers (:mod:`mappings.fhir.elements`): extensions, pruning, decimals, dates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mappings.errors import MappingError
from mappings.fhir.elements import (
    add_extensions,
    check_date,
    complex_ext,
    date_type_from,
    date_type_parts,
    exact,
    ext,
    ext_value,
    ext_values,
    first_ext,
    prune,
)
from mappings.fhir.systems import Ext
from mappings.fhir.tables import coder_for


def test_prune_drops_only_empty_values():
    assert prune({"a": None, "b": [], "c": {}, "d": 0, "e": False, "f": ""}) == {"d": 0, "e": False, "f": ""}


def test_prune_keeps_what_the_comparisons_with_empty_containers_kept():
    """``prune`` drops a value exactly when ``v is None or v == [] or v == {}`` (its former test)."""
    from collections import OrderedDict
    from decimal import Decimal

    class Items(list):
        pass

    values = [None, [], {}, 0, 0.0, False, True, "", "x", (), set(), frozenset(), Decimal(0), Decimal("0.0"),
              [None], [[]], {"a": None}, {"": 0}, Items(), Items([1]), OrderedDict(), OrderedDict(a=1),
              b"", 7]
    data = {str(i): v for i, v in enumerate(values)}
    assert prune(data) == {k: v for k, v in data.items() if not (v is None or v == [] or v == {})}


def test_extensions_are_built_and_read():
    element = add_extensions({}, [ext("u", valueString="x"), None, ext("u", valueString="y")])
    assert ext_value(element, "u", "valueString") == "x"
    assert ext_values(element, "u", "valueString") == ["x", "y"]
    assert first_ext(element, "v") is None and ext_value(element, "v", "valueString") is None
    assert add_extensions({}, [None]) == {}
    assert complex_ext("c", []) is None
    assert complex_ext("c", [ext("p", valueBoolean=True)]) == {"url": "c", "extension": [
        {"url": "p", "valueBoolean": True}]}


def test_exact_keeps_the_decimal_the_wire_carried():
    assert exact(0.1) == Decimal("0.1")
    assert exact(Decimal("39.90")) == Decimal("39.90")
    assert exact(None) is None


@pytest.mark.parametrize("value", ["2019", "2019-05", "2019-05-20"])
def test_partial_dates_pass(value):
    assert check_date(value, "start_date") == value


@pytest.mark.parametrize("value", ["2019-13", "19-05-20", "2019-05-32", "May 2019"])
def test_other_dates_are_refused(value):
    with pytest.raises(MappingError, match="start_date"):
        check_date(value, "start_date")


@pytest.mark.parametrize("date_type", [None, "ACTUAL", "ESTIMATED", "ANTICIPATED"])
def test_date_type_round_trips(date_type):
    coder, issues = coder_for("fhir_r5.json"), []
    actual, extension = date_type_parts(date_type, coder, issues, "start_date.type")
    element = add_extensions({}, [extension])
    assert (extension is not None) == (date_type == "ANTICIPATED")
    assert extension is None or extension["url"] == Ext.DATE_TYPE
    assert date_type_from(actual, element, coder, issues, "start_date.type") == date_type
