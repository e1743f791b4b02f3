"""adapter.sync.records and .config: the fixture CSVs as outbox records (offline, through the real
FHIR entry builders), the job file, and the ``sync`` command's offline paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.cli import main
from adapter.errors import ConfigError
from adapter.sync.config import load_sync_config
from adapter.sync.outbox import Outbox
from adapter.sync.records import TrialRecords, patient_ref, study_ref
from adapter.sync.sources import ingest
from mappings.enrolments import PatientIdentifier
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED

TRIAL = ROOT / "fixtures" / "trial"
EXAMPLE = ROOT / "fixtures" / "sync.example.toml"
NCT = "NCT03945487"


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox(tmp_path / "state.sqlite") as box:
        yield box


def test_references_are_conditional_and_server_independent():
    assert study_ref(NCT) == "ResearchStudy?identifier=https://clinicaltrials.gov|NCT03945487"
    assert patient_ref(PatientIdentifier("MRN-1", "https://hospital.example.org/mrn")) == (
        "Patient?identifier=https://hospital.example.org/mrn|MRN-1"
    )


def test_the_fixtures_become_records_and_dead_letters(outbox):
    records = TrialRecords(outbox, NCT, "R4", create_patients=True)
    enrolments = ingest(outbox, "enrolments", TRIAL / "enrolments.csv", records.enrolments)
    labs = ingest(outbox, "labs", TRIAL / "labs.csv", records.labs)
    assert enrolments.outcomes == {"new": 24}
    # 1,580 good lab rows: 1,577 results, 3 of them corrected later in the file (same key, new content)
    assert labs.outcomes == {"new": 1577, "changed": 3, "rejected": 10}
    subject = outbox.record(f"subject:{NCT}:S001")
    assert subject["source"] == "enrolments.csv:2"
    assert [e["request"]["method"] for e in subject["entries"]] == ["POST", "PUT"]  # Patient, ResearchSubject
    lab = outbox.record(f"lab:{NCT}:LIS-2000001")
    assert lab["source"] == "labs.csv:2"
    [entry] = lab["entries"]
    assert entry["request"]["url"].startswith("Observation?identifier=")
    assert entry["resource"]["subject"]["reference"].startswith("Patient?identifier=")
    assert str(entry["resource"]["valueQuantity"]["value"]) == "29.4"
    letters = {d.key: d for d in outbox.dead_letters()}
    assert len(letters) == 10
    assert letters[f"lab:{NCT}:LIS-2900001"].source == "labs.csv:62"
    assert "not an accepted unit" in letters[f"lab:{NCT}:LIS-2900001"].reason
    assert "not enrolled" in letters[f"lab:{NCT}:LIS-2900006"].reason  # checked against the enrolments


def test_keys_and_sources_carry_no_patient_data(outbox):
    records = TrialRecords(outbox, NCT, "R4")
    ingest(outbox, "enrolments", TRIAL / "enrolments.csv", records.enrolments)
    ingest(outbox, "labs", TRIAL / "labs.csv", records.labs)
    rows = outbox._db.execute("SELECT key, source FROM outbox").fetchall()
    assert rows and not [r for r in rows if "MRN" in r[0] + r[1]]


def test_arms_are_checked_against_the_protocol(outbox, tmp_path):
    protocol = read_protocol(SEED.read_bytes()).protocol
    text = (
        (TRIAL / "enrolments.csv")
        .read_text()
        .replace("Comprehensive treatment,2019-05-31", "Placebo,2019-05-31")
    )
    path = tmp_path / "enrolments.csv"
    path.write_text(text)
    records = TrialRecords(outbox, NCT, "R5", protocol=protocol)
    stats = ingest(outbox, "enrolments", path, records.enrolments)
    assert stats.outcomes == {"new": 23, "rejected": 1}
    [letter] = outbox.dead_letters()
    assert letter.key == f"subject:{NCT}:S001" and "not an arm" in letter.reason
    r5 = outbox.record(f"subject:{NCT}:S002")["entries"][-1]["resource"]
    assert "assignedComparisonGroup" in r5  # R5 names the arm by linkId: needs the protocol's arms


def test_example_config(monkeypatch):
    monkeypatch.delenv("TRIALBRIDGE_CONFIG", raising=False)
    config = load_sync_config(EXAMPLE, {"TRIALBRIDGE_R4_URL": "http://127.0.0.1:9999/fhir"})
    assert config.study == NCT and config.create_patients and config.chunk_size == 50
    assert config.server.base_url == "http://127.0.0.1:9999/fhir" and config.server.fhir_version == "R4"
    assert config.enrolments.samefile(TRIAL / "enrolments.csv")
    assert config.pull is not None and config.pull.safety_margin == 5
    default = load_sync_config(EXAMPLE, {})
    assert default.server.base_url == "http://127.0.0.1:18080/fhir"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('study = "NCT1"\nstate = "s"\n[source]\nlabs = "l"', "NCT number"),
        ('study = "NCT03945487"\nstate = "s"', "give enrolments, labs"),
        ('study = "NCT03945487"\nstate = "s"\nchunk_size = 0\n[source]\nlabs = "l"', "chunk_size"),
        ('study = "NCT03945487"\nstate = "s"\ntoken = "x"\n[source]\nlabs = "l"', "unknown key"),
        (
            'study = "NCT03945487"\nstate = "s"\n[source]\nlabs = "l"\n[target]\nserver = "epic"',
            "no server named",
        ),
        ('study = "NCT03945487"\n[source]\nlabs = "l"', "state is required"),
    ],
)
def test_bad_configs_are_refused(tmp_path, text, message):
    path = tmp_path / "sync.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_sync_config(path, {})


def test_report_without_state_and_with_state(tmp_path, capsys):
    config = tmp_path / "sync.toml"
    config.write_text('study = "NCT03945487"\nstate = "state.sqlite"\n[source]\nlabs = "labs.csv"\n')
    assert main(["sync", "--report", "--config", str(config)]) == 1
    assert "no state database" in capsys.readouterr().err
    with Outbox(tmp_path / "state.sqlite") as box:
        box.reject_row("lab:NCT03945487:LIS-1", "labs.csv:3", "unit: bad", {})
    assert main(["sync", "--report", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "lab:NCT03945487:LIS-1\tlabs.csv:3\tunit: bad"
    assert main(["sync", "--retry-dead", "--config", str(config)]) == 0
    assert "0 record(s) back" in capsys.readouterr().out


def test_sync_modes_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["sync", "--once", "--report", "--config", "x.toml"])
