"""The cohort funnel and the page client, without a server: where a patient drops out, who needs
review at which step, the server's rule-outs, sub-criteria counted at their item, and prescreen's
reads answered from the fetched page (anything else goes to the real client).  The real screen
runs against HAPI in tests/integration/test_cohort.py."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from adapter.cohort import CohortResult, Funnel, _page, _PageClient, _pages, criterion_labels, screen
from adapter.cohort_plan import SLICES
from adapter.config import ServerConfig
from adapter.errors import FhirHttpError
from adapter.prescreen import PrescreenResult, prescreen
from mappings.eligibility import (
    Criterion,
    CriterionResult,
    Kind,
    Outcome,
    Status,
    Verdict,
    VerdictStatus,
    recognise_eligibility,
)
from mappings.eligibility.evaluate import ALIVE
from mappings.eligibility.model import AgeTest, Comparator, Evidence
from mappings.sources import read_protocol
from tests.conftest import SEED

CRITERIA = recognise_eligibility(read_protocol(SEED.read_bytes()).protocol.eligibility)
LABELS = criterion_labels(CRITERIA)
DAY = datetime.date(2025, 6, 30)


def by_label(label: str) -> Criterion:
    return next(c for c in CRITERIA if LABELS[id(c)] == label)


def verdict(status: str, outcomes: dict[str, Outcome]) -> PrescreenResult:
    results = [CriterionResult(c, outcomes.get(LABELS[id(c)], Outcome.MET if c.kind is Kind.INCLUSION
                                               else Outcome.NOT_MET), "") for c in CRITERIA]
    failed = tuple(r for r in results if r.criterion.kind is Kind.INCLUSION and r.outcome is Outcome.NOT_MET)
    met = tuple(r for r in results if r.criterion.kind is Kind.EXCLUSION and r.outcome is Outcome.MET)
    unknown = tuple(r for r in results if r.outcome is Outcome.UNKNOWN)
    v = Verdict(VerdictStatus(status), tuple(results), failed, met, unknown)
    return PrescreenResult("NCT03945487", "s", "R4", "Patient/1", DAY, v, CRITERIA)


def funnel() -> Funnel:
    return Funnel.for_criteria(CRITERIA, range(len(CRITERIA)), LABELS)


def rows(f: Funnel) -> dict[str, dict[str, Any]]:
    return {r["criterion"]: r for r in f.rows()}


def test_a_patient_drops_out_at_the_first_failing_step_and_review_counts_before_it():
    f = funnel()
    drop = f.add(verdict("not eligible", {"inclusion 3": Outcome.UNKNOWN, "inclusion 2": Outcome.NOT_MET,
                                          "exclusion 1": Outcome.MET, "healthy_volunteers": Outcome.UNKNOWN}))
    assert f.steps[drop].label == "inclusion 2"
    r = rows(f)
    assert (r["inclusion 2"]["dropped"], r["inclusion 2"]["remaining"]) == (1, 0)
    assert r["healthy_volunteers"]["review"] == 1 and r["inclusion 3"]["review"] == 0
    assert r["exclusion 1"]["dropped"] == 0
    assert f.verdicts == {"not eligible": 1}


def test_candidates_remain_to_the_end_with_their_review_steps():
    f = funnel()
    assert f.add(verdict("likely eligible", {})) is None
    assert f.add(verdict("needs review", {"exclusion 3": Outcome.UNKNOWN})) is None
    f.add_ruled_out(5)
    r = f.rows()
    assert r[0]["dropped"] == 5 and r[0]["remaining"] == 2
    assert r[-1]["remaining"] == 2 and "other" not in rows(f)
    assert rows(f)["exclusion 3"]["review"] == 1
    assert f.total == 7 and f.verdicts == {"not eligible": 5, "likely eligible": 1, "needs review": 1}


def test_not_eligible_for_no_listed_criterion_is_counted_as_other():
    f = funnel()
    assert f.steps[f.add(verdict("not eligible", {}))].label == "other"
    assert f.rows()[-1] == {"criterion": "other", "kind": "", "text": f.steps[-1].text, "dropped": 1,
                            "remaining": 0, "review": 0}


def test_a_deceased_patient_drops_out_at_the_deceased_step_unless_a_criterion_comes_first():
    f = funnel()
    evidence = Evidence("Patient.deceasedDateTime", "Patient/1", "2024-01-02", "2024-01-02")
    alive = CriterionResult(ALIVE, Outcome.NOT_MET, "the patient died on 2024-01-02: not screened",
                            (evidence,))

    def deceased(outcomes: dict[str, Outcome]) -> PrescreenResult:
        one = verdict("not eligible", outcomes)
        v = one.verdict
        v = dataclasses.replace(v, results=(alive, *v.results), failed_inclusion=(alive, *v.failed_inclusion))
        return dataclasses.replace(one, verdict=v)

    assert f.steps[f.add(deceased({}))].label == "deceased"
    assert f.steps[f.add(deceased({"inclusion 2": Outcome.NOT_MET}))].label == "inclusion 2"
    r = f.rows()
    assert r[-1] == {"criterion": "deceased", "kind": "inclusion", "text": f.steps[-2].text, "dropped": 1,
                     "remaining": 0, "review": 0}
    assert "other" not in rows(f) and "deceased" in f.steps[-2].text


def test_the_deceased_step_is_listed_even_when_nobody_drops_out_there():
    f = funnel()
    f.add(verdict("likely eligible", {}))
    assert [r["criterion"] for r in f.rows()][-2:] == ["exclusion 7", "deceased"]


def test_a_sub_criterion_counts_at_its_item():
    child = Criterion("child", Kind.EXCLUSION, Status.COMPUTABLE, "")
    parent = dataclasses.replace(by_label("exclusion 1"), children=(child,))
    criteria = [parent]
    f = Funnel.for_criteria(criteria, [0], criterion_labels(criteria))
    result = CriterionResult(child, Outcome.MET, "")
    v = Verdict(VerdictStatus.NOT_ELIGIBLE, (result,), met_exclusion=(result,))
    assert f.add(PrescreenResult("NCT03945487", "s", "R4", "Patient/1", DAY, v, criteria)) == 0


class Real:
    config = ServerConfig(name="real", base_url="http://fhir.test/fhir")

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def read(self, resource_type: str, resource_id: str) -> dict:
        self.calls.append(("read", resource_type))
        return {"resourceType": resource_type, "id": resource_id}

    def search(self, resource_type: str, params: Any = None):
        self.calls.append(("search", resource_type))
        yield {"resourceType": resource_type, "id": "from-server"}

    def capabilities(self) -> dict:
        return {"resourceType": "CapabilityStatement"}


PAGE = {"resourceType": "Bundle", "entry": [
    {"resource": {"resourceType": "Patient", "id": "1"}, "search": {"mode": "match"}},
    {"resource": {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/1"}},
     "search": {"mode": "include"}},
    {"resource": {"resourceType": "Observation", "id": "hbsag", "subject": {"reference": "Patient/1"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "5196-1"}]}},
     "search": {"mode": "include"}},
    {"resource": {"resourceType": "Observation", "id": "glucose", "subject": {"reference": "Patient/1"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}},
     "search": {"mode": "include"}},
    {"resource": {"resourceType": "Observation", "id": "panel", "subject": {"reference": "Patient/1"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "24364-2"}]},
                  "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}},
                                {"code": {"coding": [{"system": "http://loinc.org", "code": "5196-1"}]}}]},
     "search": {"mode": "include"}},
    {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
]}


def page_client(complete: bool = True) -> tuple[_PageClient, Real]:
    patients, related, included = _page(PAGE)
    assert [p["id"] for p in patients] == ["1"] and included == 4
    real = Real()
    return _PageClient(real, {"1": patients[0]}, related, complete), real  # type: ignore[arg-type]


def ids(found) -> list[str]:
    return [r["id"] for r in found]


def test_the_page_answers_prescreens_reads_and_searches():
    client, real = page_client()
    assert client.read("Patient", "1") == {"resourceType": "Patient", "id": "1"}
    assert ids(client.search("Condition", {"subject": "Patient/1", "_count": "100"})) == ["c"]
    codes = "http://loinc.org|5196-1,http://loinc.org|82810-3"
    found = client.search("Observation", {"subject": "Patient/1", "code": codes, "_count": "100"})
    assert ids(found) == ["hbsag"]
    found = client.search("Observation", {"subject": "Patient/1", "component-code": codes, "_count": "100"})
    assert ids(found) == ["panel"]  # prescreen's second Observation search, by a component's code
    assert ids(client.search("Observation", {"subject": "Patient/1"})) == ["hbsag", "glucose", "panel"]
    assert ids(client.search("Condition", {"subject": "Patient/2"})) == []
    assert real.calls == [] and client.config.name == "real"


def test_prescreen_on_a_page_asks_the_server_nothing():
    client, real = page_client()
    one = prescreen(client, "NCT03945487", "1", as_of=DAY, criteria=CRITERIA)  # type: ignore[arg-type]
    assert real.calls == [] and one.patient == "Patient/1"


def test_anything_else_goes_to_the_real_client():
    client, real = page_client()
    client.read("Patient", "2")
    active = {"subject": "Patient/1", "clinical-status": "active"}
    assert ids(client.search("Condition", active)) == ["from-server"]
    assert ids(client.search("Procedure", {"subject": "Patient/1"})) == ["from-server"]
    assert client.capabilities() == {"resourceType": "CapabilityStatement"}
    assert real.calls == [("read", "Patient"), ("search", "Condition"), ("search", "Procedure")]
    cut, real = page_client(complete=False)
    assert ids(cut.search("Condition", {"subject": "Patient/1"})) == ["from-server"]


class Failing(Real):
    def search_bundles(self, resource_type: str, params: Any = None):
        if "birthdate" in params and params["birthdate"] == ["ge2000-01-01", "le2000-12-31"]:
            raise RuntimeError("page 2 failed")
        yield {"resourceType": "Bundle", "entry": []}


def test_a_reader_thread_error_reaches_the_screen():
    searches = [{"birthdate": [f"ge{y}-01-01", f"le{y}-12-31"]} for y in (1990, 2000, 2010)]
    with pytest.raises(RuntimeError, match="page 2 failed"):
        list(_pages(Failing(), searches, workers=3))  # type: ignore[arg-type]
    assert len(list(_pages(Failing(), [searches[0], searches[2]], workers=3))) == 2  # type: ignore[arg-type]
    assert len(list(_pages(Failing(), [searches[0]], workers=1))) == 1  # type: ignore[arg-type]


class ByPosition:
    """A server paging by ``_offset`` over ``patients`` (sorted by id, two a page) that runs
    ``change(patients)`` after its first page: a patient deleted or added meanwhile shifts the
    pages after it.  Without ``_offset`` it pages a copy taken when the search starts (a kept
    search); ``refuse`` answers ``_offset`` with a 400; ``counted`` patients more are counted than
    found."""

    config = ServerConfig(name="fake", base_url="http://fake.test/fhir", fhir_version="R4")

    def __init__(
        self, patients: list[str], change: Any = None, refuse: bool = False, counted: int = 0
    ) -> None:
        self.patients, self.change, self.refuse, self.counted = sorted(patients), change, refuse, counted
        self.asked: list[dict[str, Any]] = []

    @staticmethod
    def bundle(ids: list[str]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "id": i, "gender": "female", "birthDate": "1980-05-05"},
             "search": {"mode": "match"}} for i in ids]}

    @staticmethod
    def holds(params: dict[str, Any]) -> bool:
        """Whether the search's birth-date and deceased filters take these patients (born 1980-05-05,
        alive)."""
        if params.get("birthdate:missing") == "true" or params.get("deceased") == "true":
            return False
        born = "1980-05-05"
        bounds = params.get("birthdate", [])
        for bound in [bounds] if isinstance(bounds, str) else bounds:
            op, day = bound[:2], bound[2:]
            if not {"ge": born >= day, "gt": born > day, "le": born <= day, "lt": born < day}[op]:
                return False
        return True

    def search_bundles(self, resource_type: str, params: Any = None):
        self.asked.append(dict(params))
        if params.get("_summary") == "count":
            total = len(self.patients) + self.counted if self.holds(params) else 0
            yield {"resourceType": "Bundle", "total": total}
            return
        if not self.holds(params):
            yield self.bundle([])
            return
        if "_offset" not in params:
            kept = list(self.patients)
            for n in range(0, len(kept), 2):
                yield self.bundle(kept[n:n + 2])
            return
        if self.refuse:
            raise FhirHttpError.for_status("unknown parameter _offset", status=400)
        offset = int(params["_offset"])
        while offset < len(self.patients):
            yield self.bundle(self.patients[offset:offset + 2])
            if offset == 0 and self.change:
                self.change(self.patients)
                self.change = None
            offset += 2


ADULTS = [Criterion("age", Kind.INCLUSION, Status.COMPUTABLE, "18 to 69", source="age",
                    test=AgeTest(((Comparator.GE, 18, "a"), (Comparator.LE, 69, "a"))))]


def screened(server: ByPosition, monkeypatch, criteria: Any = ADULTS) -> tuple[list[str], CohortResult]:
    """The patients the screen evaluated, in order, and its result (two patients a page)."""
    monkeypatch.setattr("adapter.cohort_plan.PAGE_PATIENTS", 2)
    evaluated: list[str] = []
    real = prescreen

    def spy(client, nct, patient, **kwargs):
        evaluated.append(patient)
        return real(client, nct, patient, **kwargs)

    monkeypatch.setattr("adapter.cohort.prescreen", spy)
    result = screen(server, "NCT03945487", as_of=DAY, criteria=criteria, workers=1)  # type: ignore[arg-type]
    return evaluated, result


def test_a_patient_deleted_while_pages_are_read_by_position_costs_no_other_patient(monkeypatch):
    server = ByPosition(["a", "b", "c", "d", "e"], change=lambda ps: ps.remove("a"))
    evaluated, result = screened(server, monkeypatch)
    # by position, "c" moves to the first page once "a" is gone: the second page starts at "d"
    assert evaluated == ["a", "b", "d", "e", "c"]
    assert (result.funnel.total, result.candidates) == (5, 5)
    assert len(result.reread) == 1 and "4 of the 5 patients" in result.reread[0]
    again = [p for p in server.asked if "_summary" not in p][-SLICES - 3:]  # every search, read again
    assert all("_offset" not in p and "_sort" not in p for p in again)


def test_a_patient_added_while_pages_are_read_by_position_is_not_screened_twice(monkeypatch):
    server = ByPosition(["b", "c", "d"], change=lambda ps: ps.insert(0, "a"))
    evaluated, result = screened(server, monkeypatch)
    assert evaluated == ["b", "c", "d"]  # "b" comes again on page 2: screened once
    assert result.funnel.total == 3 and result.reread == []
    assert sum("_offset" in p for p in server.asked) == SLICES + 3  # a small server: every search


def test_a_server_that_refuses_paging_by_position_is_asked_without_it(monkeypatch):
    server = ByPosition(["a", "b", "c"], refuse=True)
    evaluated, result = screened(server, monkeypatch)
    assert evaluated == ["a", "b", "c"] and result.reread == []
    refused = [n for n, p in enumerate(server.asked) if "_offset" in p and server.holds(p)]
    assert len(refused) == 1 and "_offset" not in server.asked[refused[0] + 1]


def test_only_searches_paged_by_position_are_read_again(monkeypatch):
    """A count that the patients read do not reach (one more patient counted than found) reads the
    searches paged by position again; a search the server pages itself is not read again."""
    evaluated, result = screened(ByPosition(["a", "b", "c"], counted=1), monkeypatch)
    assert evaluated == ["a", "b", "c"] and len(result.reread) == 1
    assert f"{SLICES + 3} searches were read again" in result.reread[0]
    monkeypatch.setattr("adapter.cohort_plan.BY_POSITION_AT_MOST", 1)  # a big server: no age, one search
    server = ByPosition(["a", "b", "c"], counted=1)
    evaluated, result = screened(server, monkeypatch, criteria=[])
    assert evaluated == ["a", "b", "c"] and result.reread == []
    assert [p for p in server.asked if "_summary" not in p] == [
        {"_revinclude": ["Condition:subject", "Observation:subject"], "_count": "2"}]
