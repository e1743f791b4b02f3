"""fixtures/population/generate.py: deterministic by seed, whole patients per transaction chunk with
conditional creates, every resource tagged as synthetic test data, and the cases the seed study's
criteria need (ages out of range, no birth date, deceased, descendant cancer codes, pregnancy)."""

from __future__ import annotations

import importlib.util
from collections import Counter

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("population", ROOT / "fixtures" / "population" / "generate.py")
assert _spec and _spec.loader
population = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(population)


def resources(name: str = "t", size: int = 300, seed: int = 12) -> list[dict]:
    return [e["resource"] for b in population.bundles(name, size, seed) for e in b["entry"]]


def test_the_same_seed_gives_the_same_population_and_another_seed_another():
    assert resources() == resources()
    assert resources(seed=13) != resources()
    assert resources("other", 5)[0]["identifier"][0]["value"] == "tb-pop-other-000000"


def test_chunks_hold_whole_patients_and_create_conditionally():
    for bundle in population.bundles("t", 250, chunk=100):
        assert bundle["type"] == "transaction"
        urls = {e["fullUrl"] for e in bundle["entry"]}
        for e in bundle["entry"]:
            system, value = e["resource"]["identifier"][0]["system"], e["resource"]["identifier"][0]["value"]
            assert e["request"] == {"method": "POST", "url": e["resource"]["resourceType"],
                                    "ifNoneExist": f"identifier={system}|{value}"}
            subject = e["resource"].get("subject")
            assert subject is None or subject["reference"] in urls
    sizes = [sum(e["resource"]["resourceType"] == "Patient" for e in b["entry"])
             for b in population.bundles("t", 250, chunk=100)]
    assert sizes == [100, 100, 50]


def test_every_resource_is_tagged_synthetic_and_with_its_population():
    for r in resources():
        tags = {(t["system"], t["code"]) for t in r["meta"]["tag"]}
        assert ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HTEST") in tags
        assert (population.POPULATION_TAG, "t") in tags
        assert r["identifier"][0]["system"].startswith("https://trialbridge.dev/fhir/sid/synthetic-")


def test_the_population_has_the_cases_the_criteria_need():
    found = resources(size=1000)
    patients = [r for r in found if r["resourceType"] == "Patient"]
    codes = Counter(c["code"] for r in found if r["resourceType"] != "Patient" for c in r["code"]["coding"])
    assert sum("deceasedDateTime" in p for p in patients) >= 10
    assert sum("birthDate" not in p for p in patients) >= 5
    years = [2025 - int(p["birthDate"][:4]) for p in patients if "birthDate" in p]
    assert min(years) < 18 and max(years) > 70
    for code in ("93761005", "94260004", "C50.9", "25370001", "7200002", "420054005", "716203000",
                 "19943007", "61977001", "B18.1", "5196-1", "82810-3", "2345-7"):
        assert codes[code] > 0, code
