"""Golden outputs of the public mapping API for every committed fixture, R4 and R5.

For each record of ``fixtures/ctgov`` and each FHIR version, ``golden/outputs_<record>_<version>.json``
holds, byte for byte, what the code produced when it was captured:

* ``write`` -- :func:`mappings.fhir.write_bundle` (the Bundle and its issues);
* ``read`` -- :func:`mappings.fhir.read_bundle` of that Bundle (the neutral model and its issues).

``golden/trial_<version>.json`` holds the enrolments and lab results of ``fixtures/trial`` read from
their CSV and written as ResearchSubject / Observation entries (a spread sample of the labs), and read
back; ``golden/verdicts.json``
the eligibility verdict of every patient of ``fixtures/prescreen`` against the seed study's criteria.

They guard restructurings that must not change any output.  When an output is changed ON PURPOSE,
regenerate the files and review the diff::

    .venv/bin/python -m tests.mappings.test_golden_outputs
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import importlib.util
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings import fhir, fhirjson
from mappings.eligibility import evaluate, patient_facts_from_fhir, recognise_eligibility
from mappings.model import to_dict
from mappings.sources import read_protocol
from mappings.sources.trial_csv import read_enrolments, read_labs
from tests.conftest import ALL_RECORDS, ROOT, SEED

GOLDEN = Path(__file__).resolve().parent / "golden"
VERSIONS = ("R4", "R5")
TRIAL = ROOT / "fixtures" / "trial"
PRESCREEN = ROOT / "fixtures" / "prescreen"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON, exact: dataclasses as their fields, Decimals as ``{"$decimal": text}``,
    enumerations by value, sets sorted (class names left out: a rename is not an output change)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _dump(data: Any) -> str:
    return json.dumps(_plain(data), ensure_ascii=False, indent=1) + "\n"


def _issues(issues: Any) -> list[Any]:
    return [_plain(i) for i in issues]


def record_snapshot(record: Path, version: str) -> str:
    protocol = read_protocol(record.read_bytes()).protocol
    written = fhir.write_bundle(protocol, version)
    read = fhir.read_bundle(fhirjson.loads(fhirjson.dumps(written.bundle)), version)
    return _dump({
        "record": record.name, "version": version,
        "write": {"bundle": written.bundle, "issues": _issues(written.issues)},
        "read": {"protocol": to_dict(read.protocol), "issues": _issues(read.issues),
                 "source_format": read.source_format},
    })


def trial_snapshot(version: str) -> str:
    protocol = read_protocol(SEED.read_bytes()).protocol
    issues: list[Any] = []
    enrolments_csv = (TRIAL / "enrolments.csv").read_text("utf-8")
    enrolments, enrolment_errors = read_enrolments(enrolments_csv, protocol, issues)
    labs, lab_errors = read_labs((TRIAL / "labs.csv").read_text("utf-8"), protocol, subjects=enrolments)
    study_ref = f"ResearchStudy?identifier=https://clinicaltrials.gov|{protocol.nct_id}"
    arms = fhir.study_arms(protocol, version)
    subjects = []
    for e in enrolments:
        entries = fhir.subject_entries(e, version, study_ref=study_ref, create_patient=True, arms=arms)
        subject = next(x["resource"] for x in entries if x["resource"]["resourceType"] == "ResearchSubject")
        patient = next((x["resource"] for x in entries if x["resource"]["resourceType"] == "Patient"), None)
        back = fhir.read_subject(fhirjson.loads(fhirjson.dumps(subject)), version, patient=patient, arms=arms)
        subjects.append({"entries": entries, "read": _plain(back)})
    observations = []
    step = max(1, len(labs) // 80)  # a spread sample: every test, flag and unit of the fixture
    for lab in labs[::step]:
        entry = fhir.observation_entry(lab, version, study_ref=study_ref, subject_ref="Patient/p1")
        resource = fhirjson.loads(fhirjson.dumps(entry["resource"]))
        back = fhir.read_observation(resource, version, subject_id=lab.subject_id)
        observations.append({"entry": entry, "read": _plain(back)})
    return _dump({
        "version": version, "issues": _issues(issues),
        "enrolment_errors": _plain(enrolment_errors), "lab_errors": _plain(lab_errors),
        "subjects": subjects, "observations": observations,
    })


def _prescreen_fixtures() -> Any:
    spec = importlib.util.spec_from_file_location("prescreen_fixtures_golden", PRESCREEN / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def verdicts_snapshot() -> str:
    gen = _prescreen_fixtures()
    bundle = json.loads((PRESCREEN / "patients.json").read_text("utf-8"))
    as_of = datetime.date.fromisoformat(gen.AS_OF)
    criteria = recognise_eligibility(read_protocol(SEED.read_bytes()).protocol.eligibility)
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        res = entry["resource"]
        key = entry["fullUrl"] if res["resourceType"] == "Patient" else res["subject"]["reference"]
        by_patient.setdefault(key, []).append(res)
    out = {}
    for _key, resources in sorted(by_patient.items()):
        ident = next(r["identifier"][0]["value"] for r in resources if r["resourceType"] == "Patient")
        out[ident] = _plain(evaluate(criteria, patient_facts_from_fhir(resources, as_of)))
    return _dump(out)


def snapshots() -> dict[str, str]:
    """Golden file name -> its text, as the current code produces it."""
    out = {f"outputs_{r.stem}_{v}.json": record_snapshot(r, v) for r in ALL_RECORDS for v in VERSIONS}
    out.update({f"trial_{v}.json": trial_snapshot(v) for v in VERSIONS})
    out["verdicts.json"] = verdicts_snapshot()
    return out


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_bundle_outputs_equal_the_golden_files(record: Path, version: str) -> None:
    expected = (GOLDEN / f"outputs_{record.stem}_{version}.json").read_text("utf-8")
    assert record_snapshot(record, version) == expected, (
        f"{record.name} {version}: write_bundle/read_bundle output changed; if on purpose, regenerate with "
        "`python -m tests.mappings.test_golden_outputs` and review the diff")


@pytest.mark.parametrize("version", VERSIONS)
def test_trial_outputs_equal_the_golden_files(version: str) -> None:
    assert trial_snapshot(version) == (GOLDEN / f"trial_{version}.json").read_text("utf-8")


def test_verdicts_equal_the_golden_file() -> None:
    assert verdicts_snapshot() == (GOLDEN / "verdicts.json").read_text("utf-8")


def test_golden_files_are_not_trivial() -> None:
    seed = json.loads((GOLDEN / "outputs_NCT03945487_R5.json").read_text("utf-8"))
    assert len(seed["write"]["bundle"]["entry"]) >= 5 and seed["read"]["protocol"]["nct_id"] == "NCT03945487"
    trial = json.loads((GOLDEN / "trial_R4.json").read_text("utf-8"))
    assert len(trial["subjects"]) >= 5 and len(trial["observations"]) >= 20
    verdicts = json.loads((GOLDEN / "verdicts.json").read_text("utf-8"))
    assert len({v["status"] for v in verdicts.values()}) >= 3


def main() -> None:
    """Write the golden files from the current code."""
    GOLDEN.mkdir(exist_ok=True)
    for name, text in snapshots().items():
        (GOLDEN / name).write_text(text, "utf-8")
        print("wrote", GOLDEN / name, file=sys.stderr)


if __name__ == "__main__":
    main()
