"""The files of a cohort screen, without a server: private modes, formula-safe CSV cells, NDJSON
equal to prescreen's JSON, and an HTML report that escapes every value and fetches nothing."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import stat

from adapter.cohort import CohortResult, Funnel, criterion_labels
from adapter.cohort_plan import plan_searches
from adapter.cohort_report import CohortWriter
from adapter.prescreen import PrescreenResult
from mappings.eligibility import (
    Criterion,
    CriterionResult,
    Evidence,
    Kind,
    Outcome,
    Status,
    Verdict,
    VerdictStatus,
)

DAY = datetime.date(2025, 6, 30)
HOSTILE = '<script>alert("x")</script>'
CRITERIA = [Criterion(f"{HOSTILE} & more", Kind.INCLUSION, Status.NOT_COMPUTABLE, "", at_screening=True,
                      position=1),
            Criterion("Pregnant women", Kind.EXCLUSION, Status.COMPUTABLE, "", position=1)]


def candidate(pid: str, description: str, evidence_value: str) -> PrescreenResult:
    results = (CriterionResult(CRITERIA[0], Outcome.NOT_COMPUTABLE, "settled at screening"),
               CriterionResult(CRITERIA[1], Outcome.UNKNOWN, f"reason {HOSTILE}",
                               (Evidence(description, "Observation/9", evidence_value, "2025-06-01"),)))
    v = Verdict(VerdictStatus.NEEDS_REVIEW, results, unknown=(results[1],), to_confirm=(results[0],))
    return PrescreenResult("NCT03945487", "s", "R4", pid, DAY, v, CRITERIA)


def finished(tmp_path) -> tuple[CohortWriter, dict]:
    writer = CohortWriter(tmp_path / "out")
    funnel = Funnel.for_criteria(CRITERIA, [0, 1], criterion_labels(CRITERIA))
    hostile = ("Patient/1", '=HYPERLINK("http://evil")', "pregnant")
    for pid, description, value in (hostile, ("Patient/<b>2</b>", "pregnancy status", "-3.5")):
        one = candidate(pid, description, value)
        assert funnel.add(one) is None
        writer.candidate(one)
    funnel.add_ruled_out(3)
    plan = plan_searches(CRITERIA, DAY)
    result = CohortResult("NCT03945487", f"server {HOSTILE}", "R4", DAY, plan, funnel,
                          candidates=2, ruled_out_by_server=3, evaluated=2)
    return writer, writer.finish(result)


def test_files_are_private_and_csv_cells_cannot_run(tmp_path):
    writer, summary = finished(tmp_path)
    assert stat.S_IMODE(os.stat(writer.dir).st_mode) == 0o700
    for fmt in ("csv", "ndjson", "json", "html"):
        assert stat.S_IMODE(os.stat(writer.path(fmt)).st_mode) == 0o600, fmt
    text = writer.path("csv").read_text("utf-8")
    assert '"\'=HYPERLINK' in text  # neutralised and quoted
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["patient"] for r in rows] == ["Patient/1", "Patient/<b>2</b>"]
    assert rows[0]["needs review at"] == "exclusion 1"
    assert rows[1]["exclusion 1 evidence"] == "pregnancy status = -3.5 (2025-06-01) [Observation/9]"
    lines = writer.path("ndjson").read_text("utf-8").splitlines()
    assert json.loads(lines[1]) == candidate("Patient/<b>2</b>", "pregnancy status", "-3.5").to_json()
    assert summary["candidates"] == 2 and summary["funnel"][-1]["remaining"] == 2
    assert json.loads(writer.path("json").read_text("utf-8")) == summary


def test_the_html_report_escapes_every_value_and_is_self_contained(tmp_path):
    writer, _ = finished(tmp_path)
    page = writer.path("html").read_text("utf-8")
    assert "<script" not in page and "<b>2</b>" not in page
    assert "&lt;script&gt;" in page and "Patient/&lt;b&gt;2&lt;/b&gt;" in page
    assert 'id="funnel-chart"' in page and page.count('class="step"') == 3  # two criteria, deceased
    assert 'data-criterion="deceased"' in page and '<tr data-criterion="deceased">' in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch
    assert 'data-remaining="2"' in page and '<dd id="count-ruled-out">3</dd>' in page


def test_no_candidates_still_gives_a_csv_header_and_a_report(tmp_path):
    writer = CohortWriter(tmp_path / "none")
    funnel = Funnel.for_criteria(CRITERIA, [0, 1], criterion_labels(CRITERIA))
    funnel.add_ruled_out(4)
    result = CohortResult("NCT03945487", "s", "R4", DAY, plan_searches(CRITERIA, DAY), funnel)
    writer.finish(result)
    assert writer.path("csv").read_text("utf-8") == "patient,verdict,needs review at\n"
    assert "No candidates." in writer.path("html").read_text("utf-8")
