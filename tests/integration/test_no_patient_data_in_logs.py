"""No patient data in logs: a full sync and the service's trial-data endpoints against the real HAPI R4.

Proves: every log record emitted (root logger at DEBUG, so ``urllib3`` too; also formatted as the
service's JSON lines) while (a) the example sync config runs a full pass (a temporary copy of its
state and pull output), then the same job through the CLI (``sync --once -v``, ``--log-format
json``) and a job whose only enrolment names an unknown MRN (the server refuses it, quoting the
match URL, and it goes to the dead letter), and (b) the service enrols subjects, pushes lab results,
reads the subjects back, streams the outcome labs (NDJSON and CSV), refuses an unknown MRN and
pre-screens a synthetic patient -- holds none of the fixture MRNs, patient names, synthetic patient
identifiers, birth dates, lab result ids or distinctive lab values, nor a FHIR ``value`` member.
The CLI's standard error is checked the same way; ``sync --report`` (the operator's report on
standard output, which does quote the server's messages by design) writes nothing to standard
error.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import re
import subprocess
import sys
import uuid

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.logs import configure
from adapter.push import push_protocol
from adapter.service import create_app
from adapter.sync.config import load_sync_config
from adapter.sync.runner import run
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED
from tests.service_keys import KEY_ENV, keyed_client

pytestmark = pytest.mark.hapi

NCT = "NCT03945487"
EXAMPLE = ROOT / "fixtures" / "sync.example.toml"
TRIAL = ROOT / "fixtures" / "trial"
PRESCREEN = ROOT / "fixtures" / "prescreen" / "patients.json"
ENROLMENT_HEADER = (TRIAL / "enrolments.csv").read_text("utf-8").splitlines()[0]
#: Loggers whose records we capture at DEBUG (a CLI test in this process may have raised their levels).
LOGGERS = ("trialbridge", "trialbridge.client", "trialbridge.sync", "urllib3", "werkzeug")
_DURATION = re.compile(r"\b\d+(?:\.\d+)? ?ms\b")


def _rows(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((TRIAL / name).read_text("utf-8"))))


def sensitive_values() -> dict[str, set[str]]:
    """What must never be logged, by kind: taken from the fixtures themselves."""
    enrolments, labs = _rows("enrolments.csv"), _rows("labs.csv")
    bundle = json.loads(PRESCREEN.read_text("utf-8"))
    patients = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    names = {n["text"] for p in patients for n in p["name"]}
    names |= {g for p in patients for n in p["name"] for g in n.get("given", [])}
    # lab values with four or more digits: distinctive (shorter ones are everywhere in timings)
    values = {r["value"].lstrip("<>") for r in labs if sum(c.isdigit() for c in r["value"]) >= 4}
    return {
        "mrn": {r["mrn"] for r in enrolments} | {r["mrn"] for r in labs},
        "birth date": {r["birth_date"] for r in enrolments} | {p["birthDate"] for p in patients},
        "name": names,
        "patient identifier": {i["value"] for p in patients for i in p["identifier"]},
        "lab result id": {r["lab_result_id"] for r in labs},
        "lab value": values,
    }


def leaks(text: str) -> list[str]:
    """Every sensitive value found in ``text`` (lab values only as numbers of their own, not within a
    path, server id or timing)."""
    text = _DURATION.sub("", text)
    found = []
    for kind, values in sensitive_values().items():
        for value in values:
            pattern = re.escape(value)
            if kind == "lab value":
                # not inside a path, an id or a longer number (server ids: "Patient/2505")
                pattern = rf"(?<![\w./%:-]){pattern}(?![\w]|\.\d)"
            if re.search(pattern, text):
                found.append(f"{kind} {value!r}")
    for member in ('"value"', "valueQuantity", "valueCodeableConcept", "birthDate"):
        if member in text:
            found.append(f"FHIR member {member}")
    return sorted(found)


@pytest.fixture
def all_logs(caplog):
    """Every record at DEBUG (caplog on the root logger) plus the same records as service JSON lines."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger("trialbridge")
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure("json", logging.DEBUG, handler=logging.StreamHandler(buffer))

    def text() -> str:
        lines = []
        for record in caplog.records:
            lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
            if record.exc_info:
                lines.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(lines) + "\n" + buffer.getvalue()

    yield text
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def r4_config(hapi_servers: dict[str, str]) -> ServerConfig:
    return ServerConfig(name="r4", base_url=hapi_servers["R4"], fhir_version="R4", timeout=(5.0, 120.0))


@pytest.fixture(scope="module")
def seeded(r4_config):
    """The seed study and the synthetic pre-screening patients on HAPI R4."""
    with FhirClient(r4_config) as client:
        push_protocol(client, read_protocol(SEED.read_bytes()).protocol)
        client.transaction(copy.deepcopy(json.loads(PRESCREEN.read_text("utf-8"))))
        identifier = "https://trialbridge.dev/fhir/sid/synthetic-patient|tb-prescreen-eligible"
        (patient,) = client.search("Patient", {"identifier": identifier})
    return {"patient": patient["id"]}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapter.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_checks_would_find_a_leak():
    assert leaks("POST /fhir/Patient?identifier=x|MRN-900105") == ["mrn 'MRN-900105'"]
    assert leaks("labs 2428 U/L") == ["lab value '2428'"] and leaks("in 2428.0 ms") == []
    assert leaks("GET /fhir/Patient/2428 -> 200") == []
    assert leaks('{"value": 1}') == ['FHIR member "value"']
    assert "name 'Eligible Synthetic'" in leaks("hello Eligible Synthetic")


def test_a_full_sync_logs_no_patient_data(r4_config, seeded, all_logs, tmp_path, hapi_servers):
    env_vars = {"TRIALBRIDGE_R4_URL": hapi_servers["R4"]}
    config = load_sync_config(EXAMPLE, env_vars, state=tmp_path / "state.sqlite", output=tmp_path / "pull")
    result = run(config, once=True)
    assert result.ok, result
    assert result.ingest.rows == 1614 and result.counts.rejected == 10
    text = all_logs()
    assert "trialbridge.client" in text and "trialbridge.sync" in text and "urllib3" in text  # not vacuous
    assert leaks(text) == []

    # the same job through the CLI (its second pass: reads skipped, pull), verbose, JSON lines
    import os

    env = {**{k: v for k, v in os.environ.items() if k != "TRIALBRIDGE_CONFIG"}, **env_vars}
    job = tmp_path / "sync.toml"
    job.write_text(EXAMPLE.read_text("utf-8")
                   .replace('"trial/', f'"{TRIAL}/')
                   .replace('"../out/sync/NCT03945487.sqlite"', f'"{tmp_path / "state.sqlite"}"')
                   .replace('"../out/sync/pull"', f'"{tmp_path / "pull"}"'))
    done = cli("sync", "--once", "-v", "--log-format", "json", "--config", str(job), env=env)
    assert done.returncode == 0, done.stderr
    assert '"logger": "trialbridge.client"' in done.stderr  # -v logs each request
    assert leaks(done.stderr) == [] and leaks(done.stdout) == []


def test_a_refused_enrolment_logs_no_patient_data(seeded, tmp_path, hapi_servers):
    """An unknown MRN without create_patients: HAPI refuses the match URL (quoting the MRN)."""
    import os

    mrn = f"MRN-900105-{uuid.uuid4().hex[:6]}"
    row = next(r for r in (TRIAL / "enrolments.csv").read_text("utf-8").splitlines() if r.startswith("S001,"))
    (tmp_path / "enrolments.csv").write_text(f"{ENROLMENT_HEADER}\n{row.replace('MRN-900105', mrn)}\n")
    job = tmp_path / "sync.toml"
    job.write_text(f'study = "{NCT}"\nstate = "state.sqlite"\ncreate_patients = false\n'
                   '[source]\nenrolments = "enrolments.csv"\n[target]\nserver = "r4"\n')
    env = {**{k: v for k, v in os.environ.items() if k != "TRIALBRIDGE_CONFIG"},
           "TRIALBRIDGE_R4_URL": hapi_servers["R4"]}
    done = cli("sync", "--once", "-v", "--no-progress", "--config", str(job), env=env)
    assert done.returncode == 3, done.stderr  # the run dead-lettered a record (adapter/sync/command.py)
    assert "dead letter" in done.stderr
    assert mrn not in done.stderr and leaks(done.stderr) == []
    report = cli("sync", "--report", "--config", str(job), env=env)
    assert report.returncode == 0 and report.stderr == ""
    assert "S001" in report.stdout  # the operator's report names the refused record


def done(resp):
    """``resp`` read to its end and closed (a streamed answer logs its access line then)."""
    resp.get_data()
    resp.close()
    return resp


def test_the_service_endpoints_log_no_patient_data(r4_config, seeded, all_logs):
    config = ServiceConfig(servers={"r4": r4_config}, api_keys_env=KEY_ENV)
    web = keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))
    enrolments = (TRIAL / "enrolments.csv").read_bytes()
    labs = (TRIAL / "labs.csv").read_text("utf-8").splitlines()
    some_labs = "\n".join(labs[:200] + [line for line in labs if ",LIS-29" in line]) + "\n"
    unknown = f"MRN-900105-{uuid.uuid4().hex[:6]}"
    row = next(r for r in enrolments.decode().splitlines() if r.startswith("S001,"))
    refused = f"{ENROLMENT_HEADER}\n{row.replace('MRN-900105', unknown)}\n".encode()
    prescreen = {"patient": seeded["patient"], "asOf": "2025-06-30"}
    answers = [
        done(web.post(f"/studies/{NCT}/subjects?server=r4&createPatients=true", data=enrolments,
                      content_type="text/csv")),
        done(web.post(f"/studies/{NCT}/observations?server=r4", data=some_labs.encode(),
                      content_type="text/csv")),
        done(web.get(f"/studies/{NCT}/subjects?server=r4")),
        done(web.get(f"/studies/{NCT}/observations?server=r4&format=ndjson")),
        done(web.get(f"/studies/{NCT}/observations?server=r4&format=csv")),
        done(web.post(f"/studies/{NCT}/prescreen?server=r4", json=prescreen)),
        done(web.post(f"/studies/{NCT}/subjects?server=r4", data=refused, content_type="text/csv")),
    ]
    assert [a.status_code in (200, 201) for a in answers] == [True] * 7, [a.get_data()[:300] for a in answers]
    assert "MRN-900105" in answers[2].get_data(as_text=True)  # the data is in the answers...
    assert unknown in answers[6].get_data(as_text=True)  # (the refused row, with the server's reason)
    text = all_logs()
    assert text.count('"logger": "trialbridge.access"') == len(answers)  # ...and the logs were written
    assert "trialbridge.client" in text and "urllib3" in text
    assert unknown not in text and leaks(text) == []
