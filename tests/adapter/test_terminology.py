"""The terminology service client (:mod:`adapter.terminology`) against a faked server: answers read,
cached, the table asked for what the server does not know, a failure remembered."""

from __future__ import annotations

import re
import urllib.parse

import responses

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.terminology import ServerTerminology, configured, is_a_url, value_sets
from mappings.eligibility.terminology import SNOMED

BASE = "http://tx.example.org/fhir"


def params(**values):
    return {"resourceType": "Parameters",
            "parameter": [{"name": k, ("valueBoolean" if isinstance(v, bool) else "valueString"): v}
                          for k, v in values.items()]}


def client(**options):
    return FhirClient(ServerConfig(name="tx", base_url=BASE, max_retries=0, **options))


@responses.activate
def test_validate_code_answers_are_cached():
    responses.get(re.compile(re.escape(BASE) + r"/ValueSet/\$validate-code.*code=93761005.*"),
                  json=params(result=True))
    responses.get(re.compile(re.escape(BASE) + r"/ValueSet/\$validate-code.*code=19943007.*"),
                  json=params(result=False, message="not in the value set"))
    t = ServerTerminology(client())
    assert t.subsumes(SNOMED, "363346000", "93761005") is True
    assert t.subsumes(SNOMED, "363346000", "93761005") is True
    assert t.subsumes(SNOMED, "363346000", "19943007") is False
    assert t.calls == 2 and len(responses.calls) == 2
    asked = urllib.parse.unquote(responses.calls[0].request.url)
    assert "url=" + is_a_url("363346000") in asked


@responses.activate
def test_an_unknown_code_is_asked_of_the_table_and_an_outage_is_remembered():
    responses.get(re.compile(re.escape(BASE) + r"/ValueSet/\$validate-code.*"),
                  json=params(result=False, message="Unknown code 'x#94260004'"))
    t = ServerTerminology(client())
    assert t.subsumes(SNOMED, "363346000", "94260004") is True   # the shipped fragment knows it
    assert t.failed is None
    down = ServerTerminology(FhirClient(ServerConfig(name="down", base_url="http://127.0.0.1:9/fhir",
                                                     max_retries=0, timeout=(0.2, 0.2))))
    assert down.subsumes(SNOMED, "363346000", "38341003") is None and down.failed


def test_configured_reads_the_server_setting():
    assert configured(client()) is None
    assert isinstance(configured(client(terminology="self")), ServerTerminology)
    other = configured(client(terminology="http://snowstorm.example.org/fhir", terminology_snomed_system="x"))
    assert other is not None and other.client.base_url == "http://snowstorm.example.org/fhir"
    assert other.snomed_system == "x"


def test_value_sets_nest_a_concept_under_each_of_its_ancestors():
    code_system = value_sets()[0]

    def codes(nodes, parent=None):
        for n in nodes:
            yield parent, n["code"]
            yield from codes(n.get("concept", []), n["code"])

    pairs = set(codes(code_system["concept"]))
    assert ("19943007", "420054005") in pairs and ("41309000", "420054005") in pairs


@responses.activate
def test_expand_reads_the_expansion_once_and_falls_back_when_the_server_cannot():
    responses.get(re.compile(re.escape(BASE) + r"/ValueSet/\$expand.*"), json={
        "resourceType": "ValueSet", "expansion": {"contains": [{"system": SNOMED, "code": "93761005"}]}})
    t = ServerTerminology(client())
    assert t.descendants(SNOMED, "363346000") == {"363346000", "93761005"}
    assert t.descendants(SNOMED, "363346000") == {"363346000", "93761005"} and len(responses.calls) == 1
    responses.replace(responses.GET, re.compile(re.escape(BASE) + r"/ValueSet/\$expand.*"), status=400,
                      json={"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                                                                          "code": "processing"}]})
    assert t.descendants(SNOMED, "19943007") >= {"420054005"} and t.expand_failed
