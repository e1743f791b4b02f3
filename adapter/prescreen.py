"""Pre-screen one patient of a FHIR server against a study's eligibility criteria.

``prescreen(client, nct, patient)`` reads, from the one server:

1. the patient: ``GET Patient/<id>`` (404/410 -> :class:`~adapter.errors.NotFound`);
2. the study: :func:`adapter.pull.pull_study` -> :func:`mappings.fhir.read_bundle` -> the protocol ->
   :func:`mappings.eligibility.recognise_eligibility` (the criteria are recomputed from the text,
   never taken from the derived characteristics written with the study);
3. the patient's Conditions (``Condition?subject=Patient/<id>``) and only the Observations the
   criteria need (``Observation?subject=Patient/<id>&code=<LOINC codes of the labs, pregnancy /
   breastfeeding status>``), as streamed searches (one page at a time, every page followed);

builds :class:`~mappings.eligibility.PatientFacts` with ``patient_facts_from_fhir`` and evaluates
the criteria on the evaluation date (``as_of``, default today).  The result carries the verdict,
every criterion's outcome with its text, reason and evidence (resource references, values,
dates), and the issues met reading the patient's data.  :meth:`PrescreenResult.to_json` is the
answer of the CLI's ``--json`` and of ``POST /studies/{nct}/prescreen``; :func:`format_table` the
CLI's default table.  A verdict is advice for a screening visit, never a decision.
"""

from __future__ import annotations

import datetime
import re
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappings.eligibility import (
    AllOf,
    AnyOf,
    Criterion,
    CriterionResult,
    LabTest,
    Not,
    Outcome,
    PregnancyTest,
    Test,
    Verdict,
    evaluate,
    patient_facts_from_fhir,
    recognise_eligibility,
)
from mappings.eligibility.model import FOREIGN_SOURCES, Evidence
from mappings.eligibility.recognise import load_table
from mappings.eligibility.terminology import Terminology, analyte_codes
from mappings.eligibility.unused import not_used
from mappings.errors import InputError, MappingIssue
from mappings.fhir import read_bundle
from mappings.fhir.group_criteria import foreign_criteria
from mappings.model import NCT_ID

from .client import FhirClient, Resource
from .errors import NotFound
from .pull import pull_study
from .terminology import configured

__all__ = ["PrescreenResult", "format_table", "needed_observation_codes", "parse_patient", "prescreen",
           "study_criteria"]

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
#: Search page size asked of the server (it may answer fewer per page; every page is read).
PAGE_SIZE = "100"


def parse_patient(value: str) -> str:
    """The logical id of ``ID`` or ``Patient/ID`` (InputError otherwise)."""
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("Patient/"):
        text = text[len("Patient/"):]
    if not _ID.fullmatch(text):
        raise InputError(f"not a patient id: {str(value)[:80]!r} (expected ID or Patient/ID)",
                         field="patient")
    return text


def check_nct(nct: str) -> str:
    """``nct`` if it is an NCT number (InputError otherwise)."""
    if not isinstance(nct, str) or not NCT_ID.fullmatch(nct):
        raise InputError(f"not an NCT number: {str(nct)[:80]!r} (expected NCT followed by 8 digits)",
                         field="study")
    return nct


def study_criteria(client: FhirClient, nct: str) -> list[Criterion]:
    """The study's criteria as read from the server: pulled, mapped back, parsed and recognised,
    then those its Group / EvidenceVariable states in codes written elsewhere
    (:func:`mappings.fhir.group_criteria.foreign_criteria`)."""
    bundle = pull_study(client, check_nct(nct))
    protocol = read_bundle(bundle, client.config.fhir_version).protocol
    return recognise_eligibility(protocol.eligibility) + foreign_criteria(bundle)


def _tests(test: Test) -> Iterator[Test]:
    yield test
    if isinstance(test, AnyOf | AllOf):
        for t in test.tests:
            yield from _tests(t)
    elif isinstance(test, Not):
        yield from _tests(test.test)


def _all_tests(criteria: Iterable[Criterion]) -> Iterator[Test]:
    for c in criteria:
        if c.test is not None:
            yield from _tests(c.test)
        yield from _all_tests(c.children)


#: The last criteria asked about and the codes of their Observations: a caller screening many
#: patients (a cohort) passes the same criteria each time, checked object by object (a Criterion is
#: immutable), so they are worked out once.
_last_codes: tuple[tuple[Criterion, ...], list[str]] = ((), [])


def needed_observation_codes(criteria: Sequence[Criterion]) -> list[str]:
    """``system|code`` tokens of the Observations the criteria read (labs' LOINC codes and those of
    the same analyte, pregnancy and breastfeeding status), sorted, each once (the list is shared:
    not to be changed)."""
    global _last_codes
    last, codes = _last_codes
    if len(last) == len(criteria) and all(a is b for a, b in zip(last, criteria, strict=True)):
        return codes
    codes = _codes_read(criteria)
    _last_codes = (tuple(criteria), codes)
    return codes


def _codes_read(criteria: Sequence[Criterion]) -> list[str]:
    status = load_table("eligibility_labs.json")["status"]
    tokens: set[str] = set()
    for test in _all_tests(criteria):
        if isinstance(test, LabTest):
            tokens.update(f"{LOINC}|{c}" for c in analyte_codes(test.lab.id, test.lab.loinc))
        elif isinstance(test, PregnancyTest):
            spec = status["pregnancy" if test.state == "pregnant" else "breastfeeding"]
            tokens.update(f"{LOINC}|{c}" for c in spec["loinc"])
            tokens.update(f"{SNOMED}|{c}" for c in spec["snomed"])
    return sorted(tokens)


def _by_id(resource: Resource) -> str:
    return str(resource.get("id"))


def patient_resources(client: FhirClient, patient: Resource, codes: Sequence[str]) -> Iterator[Resource]:
    """The Patient, then its Conditions, then its Observations with one of ``codes`` as their code or
    a component's (an Observation matching both ways is given once).  Conditions and Observations
    come in the order of their ids: FHIR leaves the order of search results to the server (and a
    cohort page gives them in its include order), so the evidence and its examples do not depend on it."""
    subject = f"Patient/{patient['id']}"
    yield patient
    yield from sorted(client.search("Condition", {"subject": subject, "_count": PAGE_SIZE}), key=_by_id)
    if codes:
        found: dict[str, Resource] = {}
        others: list[Resource] = []
        for param in ("code", "component-code"):
            for r in client.search("Observation", {"subject": subject, param: ",".join(codes),
                                                   "_count": PAGE_SIZE}):
                if r.get("resourceType") != "Observation":
                    others.append(r)
                else:
                    found.setdefault(str(r.get("id")), r)
        yield from sorted(found.values(), key=_by_id)
        yield from others


@dataclass
class PrescreenResult:
    """One patient pre-screened for one study on one server."""

    nct_id: str
    server: str
    fhir_version: str
    patient: str
    as_of: datetime.date
    verdict: Verdict
    criteria: list[Criterion]
    issues: list[MappingIssue] = field(default_factory=list)
    unused: tuple[Evidence, ...] = ()

    def labels(self) -> dict[int, str]:
        """``id(criterion)`` -> its label (``age``, ``inclusion 3``, ``exclusion 2.1``)."""
        out: dict[int, str] = {}

        def walk(c: Criterion, label: str) -> None:
            out[id(c)] = label
            for n, child in enumerate(c.children, 1):
                walk(child, f"{label}.{n}")

        for c in self.criteria:
            if c.source in FOREIGN_SOURCES:
                walk(c, f"{c.source} {c.position}")
            else:
                walk(c, c.source if c.source != "criteria" else f"{c.kind.value} {c.position}")
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per criterion result, numbered from 1."""
        labels = self.labels()
        rows = []
        for n, r in enumerate(self.verdict.results, 1):
            c = r.criterion
            rows.append({
                "n": n,
                "criterion": labels.get(id(c), c.source),
                "kind": c.kind.value,
                "text": c.text,
                "computable": c.status.value,
                "outcome": r.outcome.value,
                "reason": r.reason,
                "atScreening": c.at_screening,
                "evidence": [{k: v for k, v in (("description", e.description), ("reference", e.reference),
                                                ("value", e.value), ("date", e.date)) if v is not None}
                             for e in r.evidence],
            })
        return rows

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON data (the CLI's ``--json``, the service's answer)."""
        v = self.verdict
        number = {id(r): n for n, r in enumerate(v.results, 1)}

        def refs(results: Sequence[CriterionResult]) -> list[int]:
            return [number[id(r)] for r in results]

        return {
            "study": self.nct_id,
            "server": self.server,
            "fhirVersion": self.fhir_version,
            "patient": self.patient,
            "asOf": self.as_of.isoformat(),
            "verdict": v.status.value,
            "failedInclusion": refs(v.failed_inclusion),
            "metExclusion": refs(v.met_exclusion),
            "unknown": refs(v.unknown),
            "review": refs(v.review),
            "toConfirm": refs(v.to_confirm),
            "results": self.rows(),
            "issues": [str(i) for i in self.issues],
            "notUsed": [{k: v for k, v in (("description", e.description), ("reference", e.reference),
                                           ("value", e.value), ("date", e.date)) if v is not None}
                        for e in self.unused],
        }


def prescreen(client: FhirClient, nct: str, patient: str, as_of: datetime.date | None = None,
              criteria: Sequence[Criterion] | None = None,
              terminology: Terminology | None = None) -> PrescreenResult:
    """Pre-screen ``patient`` (``ID`` or ``Patient/ID``) for study ``nct`` on the client's server.

    ``criteria`` skips reading the study (a caller screening many patients reads it once with
    :func:`study_criteria`); ``terminology`` matches condition codes by value set (default: the
    server's configured terminology service, else the shipped tables).  Raises InputError for a
    malformed NCT number or patient id and NotFound for a patient or study the server does not have.
    """
    check_nct(nct)
    pid = parse_patient(patient)
    day = as_of or datetime.date.today()
    try:
        found = client.read("Patient", pid)
    except NotFound as exc:
        raise NotFound(f"no Patient/{pid} on server {client.config.name}", status=exc.status,
                       operation_outcome=exc.operation_outcome) from None
    chosen = list(criteria) if criteria is not None else study_criteria(client, nct)
    resources = patient_resources(client, found, needed_observation_codes(chosen))
    facts = patient_facts_from_fhir(resources, day)
    own = configured(client) if terminology is None else None
    try:
        verdict = evaluate(chosen, facts, terminology if terminology is not None else own)
    finally:
        if own is not None:
            own.close()
    return PrescreenResult(nct, client.config.name, client.config.fhir_version, f"Patient/{pid}", day,
                           verdict, chosen, list(facts.issues), not_used(verdict, facts))


# --- the table -----------------------------------------------------------------------------------

_OUTCOME_MARK = {Outcome.MET.value: "met", Outcome.NOT_MET.value: "NOT MET", Outcome.UNKNOWN.value: "unknown",
                 Outcome.NOT_COMPUTABLE.value: "-"}


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(result: PrescreenResult, width: int = 110) -> str:
    """The verdict as a plain-text table: one line per criterion (``!!`` marks what makes the patient
    not eligible, ``??`` what needs review), then its reason and evidence."""
    data = result.to_json()
    lines = [
        f"{result.nct_id}  {result.patient}  on {result.server} ({result.fhir_version}), "
        f"as of {data['asOf']}",
        f"verdict: {data['verdict'].upper()}",
    ]
    for key, label in (("failedInclusion", "inclusion not met"), ("metExclusion", "exclusion met"),
                       ("unknown", "unknown (data missing or inconclusive)"),
                       ("review", "not computable or not read, to review"),
                       ("toConfirm", "to confirm at screening")):
        if data[key]:
            lines.append(f"  {label}: " + ", ".join(f"#{n}" for n in data[key]))
    against = set(data["failedInclusion"]) | set(data["metExclusion"])
    doubtful = set(data["unknown"]) | set(data["review"])
    lines += ["", f"{'#':>3}    {'criterion':18} {'outcome':9} text",
              f"{'':->3}    {'':-<18} {'':-<9} {'':-<40}"]
    indent = " " * 36
    for row in data["results"]:
        flag = "!!" if row["n"] in against else "??" if row["n"] in doubtful else "  "
        text = _short(row["text"], max(30, width - len(indent)))
        lines.append(f"{row['n']:>3} {flag} {row['criterion']:18} {_OUTCOME_MARK[row['outcome']]:9} {text}")
        reason = row["reason"] + (" [confirm at screening]" if row["atScreening"] else "")
        lines += textwrap.wrap(reason, width, initial_indent=indent + "why: ",
                               subsequent_indent=indent + "     ")
        for e in row["evidence"]:
            what = f" = {e['value']}" if "value" in e else ""
            when = f" ({e['date']})" if "date" in e and e.get("date") != e.get("value") else ""
            where = f" [{e['reference']}]" if "reference" in e else ""
            lines.append(indent + "- " + _short(f"{e['description']}{what}{when}{where}", width))
    if data["notUsed"]:
        lines += ["", "looked at and not used:"]
        lines += ["  - " + _short(f"{e['description']} [{e.get('reference', '')}]", width)
                  for e in data["notUsed"]]
    if data["issues"]:
        lines += ["", "issues reading the patient's data:"] + [f"  {i}" for i in data["issues"]]
    return "\n".join(lines) + "\n"
