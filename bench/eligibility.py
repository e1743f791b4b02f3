"""Eligibility speed: criteria parsing (items/s) and pre-screening against the local HAPI R4 server
(patients/s), each against a floor measured in the same run.

Parsing
    The criteria texts of every committed record (``fixtures/ctgov``: v2 JSON, legacy XML, page
    text), read once.  Both figures count the items ``parse_criteria`` finds (nested ones too), so
    the ratio is a ratio of times over the same texts.  The floor is the least any item splitter
    must do: ``str.splitlines`` and one compiled marker regex (``1.``, ``-``, ``*``, ``(a)``...) per
    line -- no headings, nesting, wrapped lines or Markdown escapes.  ``parse + recognise`` adds
    judging every item (tables of phrases, conditions, labs, units).

Pre-screening
    The seed study pushed and the SYNTHETIC fixture patients (``fixtures/prescreen``) loaded on the
    R4 server (both idempotent), then each of the six patients pre-screened in turn.  The floor is
    one plain ``GET Patient/<id>`` per patient over the same keep-alive session: the least any
    pre-screen must do.  Pre-screening reads the Patient, searches Conditions and the needed
    Observations, and -- unless the criteria were read once beforehand -- pulls the study (search,
    one batch read) and re-parses its criteria.  The server URL is ``$TRIALBRIDGE_BENCH_R4``
    (default ``http://127.0.0.1:18080/fhir``, ``make hapi``); when it does not answer, these rows
    are left out with a note on stderr.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import re
import sys
from pathlib import Path

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirClientError
from adapter.prescreen import prescreen, study_criteria
from adapter.push import push_protocol
from mappings.eligibility import parse_criteria, recognise_all
from mappings.sources import read_protocol

from .report import Row, rate

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "fixtures" / "ctgov"
PATIENTS = ROOT / "fixtures" / "prescreen" / "patients.json"
SEED = RECORDS / "NCT03945487.txt"
NCT = "NCT03945487"
AS_OF = datetime.date(2025, 6, 30)
PATIENT_SYSTEM = "https://trialbridge.dev/fhir/sid/synthetic-patient"
R4_URL = os.environ.get("TRIALBRIDGE_BENCH_R4", "http://127.0.0.1:18080/fhir")

#: The floor's item marker: a list bullet or an enumerator at the start of a line.
_MARKER = re.compile(r"\s*(?:[-*•·]|\d{1,3}[.)]|\(?[a-zA-Z0-9]{1,3}\))\s+\S")


def criteria_texts() -> list[str]:
    """The criteria text of every committed record that has one."""
    out = []
    for path in sorted(RECORDS.iterdir()):
        if path.suffix in (".json", ".xml", ".txt") and path.name != "SOURCES.md":
            e = read_protocol(path.read_bytes()).protocol.eligibility
            if e is not None and e.criteria:
                out.append(e.criteria)
    return out


def parsing_rows() -> list[Row]:
    texts = criteria_texts()
    items = sum(len(list(parse_criteria(t).walk())) for t in texts)

    def floor() -> int:
        for t in texts:
            [line for line in t.splitlines() if _MARKER.match(line)]
        return items

    def parsed() -> int:
        for t in texts:
            parse_criteria(t)
        return items

    def recognised() -> int:
        for t in texts:
            recognise_all(parse_criteria(t))
        return items

    floor_rate = rate(floor)
    return [
        Row("parse criteria text -> items", rate(parsed), "it/s", "splitlines + marker re", floor_rate),
        Row("parse + recognise (computable?) items", rate(recognised), "it/s", "splitlines + marker re",
            floor_rate),
    ]


def _loaded(client: FhirClient) -> list[str]:
    """Push the seed, load the fixture patients; their ids."""
    push_protocol(client, read_protocol(SEED.read_bytes()).protocol)
    client.transaction(copy.deepcopy(json.loads(PATIENTS.read_text("utf-8"))))
    ids = []
    for entry in json.loads(PATIENTS.read_text("utf-8"))["entry"]:
        r = entry["resource"]
        if r["resourceType"] == "Patient":
            ident = f"{PATIENT_SYSTEM}|{r['identifier'][0]['value']}"
            ids.append(next(iter(client.search("Patient", {"identifier": ident})))["id"])
    return ids


def prescreen_rows() -> list[Row]:
    config = ServerConfig(name="bench-r4", base_url=R4_URL, fhir_version="R4", timeout=(5.0, 60.0))
    with FhirClient(config) as client:
        try:
            client.check_version()
            ids = _loaded(client)
        except FhirClientError as exc:
            print(f"eligibility: no HAPI R4 server at {R4_URL} ({exc}); pre-screening rows left out",
                  file=sys.stderr)
            return []
        criteria = study_criteria(client, NCT)

        def floor() -> int:
            for pid in ids:
                client.read("Patient", pid)
            return len(ids)

        def full() -> int:
            for pid in ids:
                prescreen(client, NCT, pid, as_of=AS_OF)
            return len(ids)

        def cached() -> int:
            for pid in ids:
                prescreen(client, NCT, pid, as_of=AS_OF, criteria=criteria)
            return len(ids)

        floor_rate = rate(floor)
        return [
            Row("prescreen a patient, HAPI R4 (study pulled)", rate(full), "pt/s", "GET Patient/id",
                floor_rate),
            Row("prescreen a patient, HAPI R4 (criteria once)", rate(cached), "pt/s", "GET Patient/id",
                floor_rate),
        ]


def run() -> list[Row]:
    return parsing_rows() + prescreen_rows()
