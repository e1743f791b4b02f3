"""A cohort screen's files: candidates as CSV and NDJSON, the funnel as JSON, a self-contained HTML report.

:class:`CohortWriter` is the screen's sink (:func:`adapter.cohort.screen`): each candidate (a patient
not ruled out: likely eligible or needing review) is written as it comes, one NDJSON line (the
prescreen verdict JSON, :meth:`~adapter.prescreen.PrescreenResult.to_json`) and one CSV line
(patient, verdict, then each criterion's outcome and evidence; cells through
:func:`adapter.csv_cells.csv_line`).  :meth:`CohortWriter.finish` writes ``funnel.json`` and
``report.html``: the summary, the funnel drawn as an inline SVG bar chart and as a table, and the
candidates (read back from the NDJSON file, one line at a time) -- no script, no external asset,
every value escaped.  Every file holds patient data and is created 0600 in a 0700 directory
(:mod:`adapter.private_files`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .cohort import CohortResult
from .csv_cells import csv_line
from .prescreen import PrescreenResult
from .private_files import open_private, private_dir

__all__ = ["FILES", "CohortWriter", "render_html"]

#: format -> (file name, media type) of a screen's results.
FILES = {
    "csv": ("candidates.csv", "text/csv; charset=utf-8"),
    "ndjson": ("candidates.ndjson", "application/x-ndjson"),
    "html": ("report.html", "text/html; charset=utf-8"),
    "json": ("funnel.json", "application/json"),
}


def _evidence_text(row: dict[str, Any]) -> str:
    parts = []
    for e in row["evidence"]:
        text = e["description"]
        if "value" in e:
            text += f" = {e['value']}"
        if "date" in e and e.get("date") != e.get("value"):
            text += f" ({e['date']})"
        if "reference" in e:
            text += f" [{e['reference']}]"
        parts.append(text)
    return "; ".join(parts)


class CohortWriter:
    """Writes a screen's files into ``out`` (created 0700 when missing)."""

    def __init__(self, out: str | Path) -> None:
        self.dir = private_dir(out)
        self._ndjson: TextIO = open_private(self.dir / FILES["ndjson"][0])
        self._csv: TextIO = open_private(self.dir / FILES["csv"][0], newline="")
        self._labels: list[str] | None = None
        self.count = 0

    def path(self, fmt: str) -> Path:
        """The file of format ``fmt`` (csv, ndjson, html, json)."""
        return self.dir / FILES[fmt][0]

    def _header(self, labels: list[str]) -> None:
        self._labels = labels
        cells = ["patient", "verdict", "needs review at"]
        for label in labels:
            cells += [label, f"{label} evidence"]
        self._csv.write(csv_line(cells))

    def candidate(self, result: PrescreenResult) -> None:
        """One candidate's lines."""
        data = result.to_json()
        rows = data["results"]
        if self._labels is None:
            self._header([r["criterion"] for r in rows])
        doubtful = set(data["unknown"]) | set(data["review"])
        review = ", ".join(r["criterion"] for r in rows if r["n"] in doubtful)
        cells = [data["patient"], data["verdict"], review]
        for r in rows:
            cells += [r["outcome"], _evidence_text(r)]
        self._csv.write(csv_line(cells))
        self._ndjson.write(json.dumps(data, ensure_ascii=False) + "\n")
        self.count += 1

    def finish(self, result: CohortResult) -> dict[str, Any]:
        """Close the candidate files; write funnel.json and report.html; the summary JSON."""
        if self._labels is None:
            self._header([])
        self._csv.close()
        self._ndjson.close()
        summary = result.to_json()
        with open_private(self.path("json")) as f:
            json.dump(summary, f, ensure_ascii=False, indent=1)
            f.write("\n")
        with open_private(self.path("html")) as f:
            for chunk in render_html(summary, _read_ndjson(self.path("ndjson"))):
                f.write(chunk)
        return summary

    def close(self) -> None:
        """Close the files (after a failed screen)."""
        self._csv.close()
        self._ndjson.close()


def _read_ndjson(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;font-size:.9em;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.n{text-align:right}
.met{color:#075}.notmet{color:#a00}.unknown{color:#a60}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}
svg text{font-size:12px;font-family:system-ui,sans-serif}
.note{color:#555;font-size:.85em}
"""
_BAR_WIDTH = 520
_ROW = 26
_LEFT = 150


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _chart(summary: dict[str, Any]) -> Iterator[str]:
    rows = summary["funnel"]
    total = max(1, summary["patients"])
    height = _ROW * (len(rows) + 2) + 10
    yield (
        f'<svg id="funnel-chart" role="img" width="{_LEFT + _BAR_WIDTH + 170}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="funnel: patients remaining after each criterion">'
    )
    yield f"<title>Patients remaining after each criterion ({_e(total)} screened)</title>"
    yield f'<text x="{_LEFT - 6}" y="21" text-anchor="end">all patients</text>'
    yield f'<rect class="total" x="{_LEFT}" y="5" height="{_ROW - 6}" width="{_BAR_WIDTH}" fill="#9ab"/>'
    yield f'<text x="{_LEFT + _BAR_WIDTH + 6}" y="21">{_e(summary["patients"])}</text>'
    for n, row in enumerate(rows, 1):
        y = 5 + n * _ROW
        width = round(_BAR_WIDTH * row["remaining"] / total, 1)
        review = round(_BAR_WIDTH * min(row["review"], row["remaining"]) / total, 1)
        label = _e(row["criterion"])
        yield (
            f'<g class="step" data-criterion="{label}" data-remaining="{_e(row["remaining"])}" '
            f'data-review="{_e(row["review"])}" data-dropped="{_e(row["dropped"])}">'
        )
        yield f'<text x="{_LEFT - 6}" y="{y + 16}" text-anchor="end">{label}</text>'
        box = f'x="{_LEFT}" y="{y}" height="{_ROW - 6}"'
        yield f'<rect class="bar" {box} width="{width}" fill="#4a7ebb"/>'
        if review:
            yield f'<rect class="review" {box} width="{review}" fill="#e0a030"/>'
        yield (
            f'<text class="value" x="{_LEFT + width + 6}" y="{y + 16}">{_e(row["remaining"])}'
            f" ({_e(row['review'])} to review)</text></g>"
        )
    yield "</svg>"


def _funnel_table(summary: dict[str, Any]) -> Iterator[str]:
    yield (
        '<table id="funnel-table"><thead><tr><th>#</th><th>criterion</th><th>kind</th><th>text</th>'
        "<th>dropped out</th><th>remaining</th><th>need review</th></tr></thead><tbody>"
    )
    for n, row in enumerate(summary["funnel"], 1):
        label = _e(row["criterion"])
        yield (
            f'<tr data-criterion="{label}"><td class="n">{n}</td><td>{label}</td>'
            f"<td>{_e(row['kind'])}</td><td>{_e(row['text'])}</td>"
            f'<td class="n dropped">{_e(row["dropped"])}</td>'
            f'<td class="n remaining">{_e(row["remaining"])}</td>'
            f'<td class="n review">{_e(row["review"])}</td></tr>'
        )
    yield "</tbody></table>"


_OUTCOME_CLASS = {"met": "met", "not met": "notmet", "unknown": "unknown"}


def _candidates(candidates: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield '<table id="candidates">'
    count = 0
    for data in candidates:
        rows = data["results"]
        if count == 0:
            yield "<thead><tr><th>patient</th><th>verdict</th>"
            yield "".join(f"<th>{_e(r['criterion'])}</th>" for r in rows) + "</tr></thead><tbody>"
        count += 1
        yield f'<tr class="candidate"><td>{_e(data["patient"])}</td>'
        yield f'<td class="verdict">{_e(data["verdict"])}</td>'
        for r in rows:
            css = _OUTCOME_CLASS.get(r["outcome"], "")
            yield f'<td class="{css}" title="{_e(r["reason"])}">{_e(r["outcome"])}</td>'
        yield "</tr>"
    yield "</tbody></table>" if count else "<tbody></tbody></table><p>No candidates.</p>"


def render_html(summary: dict[str, Any], candidates: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The report as chunks of one self-contained HTML page."""
    title = f"Cohort screen for {summary['study']} on {summary['server']}"
    yield (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>"
    )
    yield f"<h1>{_e(title)} ({_e(summary['fhirVersion'])}), as of {_e(summary['asOf'])}</h1>"
    verdicts = summary["verdicts"]
    facts = [
        ("patients screened", "patients", summary["patients"]),
        ("ruled out by the server's search", "ruled-out", summary["ruledOutByServer"]),
        ("evaluated one by one", "evaluated", summary["evaluated"]),
        ("candidates", "candidates", summary["candidates"]),
        *((f"verdict: {v}", v.replace(" ", "-"), n) for v, n in verdicts.items()),
    ]
    yield (
        '<dl id="summary">'
        + "".join(f'<dt>{_e(label)}</dt><dd id="count-{key}">{_e(value)}</dd>' for label, key, value in facts)
        + "</dl>"
    )
    if summary.get("tag"):
        yield f'<p class="note">Patients tagged {_e(summary["tag"])} only.</p>'
    yield '<h2>Funnel</h2><p class="note">Blue: patients remaining after each criterion; orange: of those, '
    yield "how many need review at that criterion. "
    yield "A verdict is advice for a screening visit, never a decision.</p>"
    yield from _chart(summary)
    yield from _funnel_table(summary)
    yield '<p class="note">' + "<br>".join(_e(line) for line in summary["searches"]) + "</p>"
    yield "<h2>Candidates</h2>"
    yield from _candidates(candidates)
    yield "</body></html>\n"
