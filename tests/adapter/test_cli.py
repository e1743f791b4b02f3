"""The command line: map, protocol, one-line errors with non-zero exits, the shared options and
--version; enrol against a server faked with ``responses``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import responses

from adapter.cli import main
from mappings.model import to_dict
from mappings.sources import read_protocol
from tests.conftest import BAD_RECORD_VALUES, ROOT, SEED, record_bytes


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_map_prints_a_transaction_bundle(capsys, version):
    code, out, _ = run(capsys, "map", str(SEED), "--fhir-version", version)
    assert code == 0
    bundle = json.loads(out)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"


def test_map_then_protocol_gives_the_model_back(capsys, tmp_path):
    target = tmp_path / "bundle.json"
    assert run(capsys, "map", str(SEED), "--fhir-version", "R5", "--out", str(target))[0] == 0
    code, out, _ = run(capsys, "protocol", str(target))
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(to_dict(read_protocol(SEED.read_bytes()).protocol)))


def test_map_reads_standard_input(monkeypatch, capsys, tmp_path):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(record_bytes("NCT00973089.json"))))
    code, out, _ = run(capsys, "map", "-")
    assert code == 0 and "NCT00973089" in out


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"protocolSection": {', "malformed JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b'{"protocolSection": {"identificationModule": {}}}', "nctId"),
        (b"Just some text that is not a registry page", "ClinicalTrials.gov"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><clinical_study>&e;'
            b"</clinical_study>",
            "entit",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, data, expected):
    source = tmp_path / "record"
    source.write_bytes(data)
    code, out, err = run(capsys, "map", str(source))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trialbridge: error: ")
    assert expected.lower() in lines[0].lower()


def test_missing_file_and_directory(capsys, tmp_path):
    assert run(capsys, "map", str(tmp_path / "nope.json"))[2].strip() == (
        f"trialbridge: error: no such file: {tmp_path / 'nope.json'}"
    )
    code, _, err = run(capsys, "map", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_protocol_refuses_what_is_not_a_bundle(capsys):
    code, _, err = run(capsys, "protocol", str(ROOT / "fixtures" / "ctgov" / "NCT00973089.json"))
    assert code == 2 and "expected a FHIR Bundle" in err


def test_unknown_configured_server_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("TRIALBRIDGE_CONFIG", raising=False)
    code, _, err = run(capsys, "pull", "NCT03945487", "--server", "nowhere")
    assert code == 1 and err.count("\n") == 1 and "no server named 'nowhere'" in err


def test_no_traceback_from_the_console_script(tmp_path):
    """The installed entry point, as a user runs it: an error is one line, never a traceback."""
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "map", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_fifty_megabyte_input_is_refused(capsys, tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b'{"protocolSection": "' + b"x" * (50 * 1024 * 1024) + b'"}')
    code, _, err = run(capsys, "map", str(big))
    assert code == 2 and "larger than the limit" in err


def test_version_answers_from_the_package_metadata(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    out, _ = capsys.readouterr()
    assert caught.value.code == 0 and out == f"trialbridge {metadata.version('trialbridge')}\n"


@pytest.mark.parametrize("command", [["push", "x.json"], ["pull", "NCT03945487"],
                                     ["observations", "NCT03945487"],
                                     ["prescreen", "--study", "NCT03945487", "--patient", "p1"],
                                     ["enrol", "x.csv", "--study", "NCT03945487"],
                                     ["labs", "x.csv", "--study", "NCT03945487"]])
def test_every_server_command_shares_the_server_options(command):
    from adapter.cli import build_parser

    parser = build_parser()
    args = parser.parse_args([*command, "--server", "r5", "--fhir-version", "R5", "--config", "c.toml"])
    assert (args.server, args.fhir_version, args.config) == ("r5", "R5", "c.toml")
    with pytest.raises(SystemExit):
        parser.parse_args(command)  # --server is required


def test_a_configuration_file_named_by_config_names_the_servers(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TRIALBRIDGE_CONFIG", raising=False)
    config = tmp_path / "trialbridge.toml"
    config.write_text('[servers.hospital]\nbase_url = "https://fhir.example.org/fhir"\n', encoding="utf-8")
    code, _, err = run(capsys, "pull", "NCT03945487", "--server", "r4", "--config", str(config))
    assert code == 1 and "no server named 'r4' (configured: hospital)" in err


BASE = "http://fhir.test/fhir"


@responses.activate
def test_enrol_prints_each_rows_mapping_issue_once_without_patient_data(capsys, tmp_path, monkeypatch):
    """Regression: fixtures/trial/README.md says S006's withdrawal reason is reported as an issue;
    ``trialbridge enrol`` printed nothing for it."""
    from tests.adapter.trial_service_helpers import STUDY, searchset

    monkeypatch.setenv("TRIALBRIDGE_LOCK_DIR", str(tmp_path / "locks"))
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))

    def created(request):
        entries = [{"response": {"status": "201 Created", "location": f"ResearchSubject/{i}/_history/1"}}
                   for i, _ in enumerate(json.loads(request.body)["entry"])]
        answer = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        return 200, {}, json.dumps(answer)

    responses.add_callback(responses.POST, BASE, callback=created)
    lines = (ROOT / "fixtures" / "trial" / "enrolments.csv").read_text("utf-8").splitlines()
    csv_file = tmp_path / "enrolments.csv"
    header = lines[0] + ",site_note"  # an unused column: reported once, not once per row
    rows = [line + ",x" for line in lines[1:]]
    csv_file.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "enrol", str(csv_file), "--study", "NCT03945487", "--server", BASE,
                         "--fhir-version", "R4")
    assert code == 0 and "24 created" in out
    warnings = err.splitlines()
    assert warnings == [
        "trialbridge: information: site_note: column not used; its values are ignored",
        "trialbridge: warning: S006.withdrawal_reason: no state-change-reason code for this reason; "
        "kept as text",
    ]
    assert "Liver" not in err and "MRN" not in err


def test_map_warnings_say_their_severity_once_and_each_fact_once(capsys, tmp_path):
    data = json.loads(record_bytes("NCT00763412.json"))
    data["protocolSection"]["designModule"]["designInfo"]["allocation"] = "SOMETIMES"
    source = tmp_path / "record.json"
    source.write_text(json.dumps(data), "utf-8")
    code, _, err = run(capsys, "map", str(source), "--fhir-version", "R4")
    assert code == 0
    lines = err.splitlines()
    assert lines == ["trialbridge: warning: designInfo.allocation: not a known allocation value; "
                     "kept as text ('SOMETIMES')"]


def _record_with(old: str, new: str) -> bytes:
    text = record_bytes("NCT00763412.json").decode("utf-8")
    assert old in text
    return text.replace(old, new, 1).encode("utf-8")




@pytest.mark.parametrize(("edit", "expected"), BAD_RECORD_VALUES)
def test_a_value_fhir_cannot_hold_is_one_line_naming_the_field(capsys, tmp_path, edit, expected):
    source = tmp_path / "record.json"
    source.write_bytes(_record_with(*edit))
    code, out, err = run(capsys, "map", str(source))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("trialbridge: error: ") and expected in err


@pytest.mark.parametrize(("argv", "replace"), [([], False), (["--replace"], True)])
def test_push_merges_unless_replace_and_prints_what_was_kept(capsys, monkeypatch, argv, replace):
    from adapter import cli
    from adapter.push import EntryResult, PushResult

    seen = {}

    def fake_push(client, protocol, *, replace):
        seen["replace"] = replace
        return PushResult([EntryResult("ResearchStudy", "ResearchStudy/h1", "updated", "2")],
                          kept=[] if replace else ["identifier urn:oid:1.2.3|S-1"])

    monkeypatch.setattr(cli, "push_protocol", fake_push)
    monkeypatch.setattr(cli.FhirClient, "check_version", lambda self: "R4")
    code, out, _ = run(capsys, "push", str(SEED), "--server", "http://fhir.test/fhir", "--fhir-version",
                       "R4", *argv)
    assert code == 0 and seen == {"replace": replace}
    assert ("kept      identifier urn:oid:1.2.3|S-1" in out) is not replace


def test_observations_names_each_observation_that_could_not_be_read(capsys, monkeypatch):
    """Issue 11: "an Observation could not be read; skipped", with no id, no reason and no count."""
    from adapter import cli, observations

    plan = observations.PullPlan(study={}, tests=("ALB",), loinc_codes=("1751-7",), window=None, grace_days=7)
    monkeypatch.setattr(cli.FhirClient, "check_version", lambda self: "R4")
    monkeypatch.setattr(observations, "plan_pull", lambda *a, **k: plan)

    def pulled(client, plan, *, skipped, **options):
        skipped.append(observations.Skipped("o-7", "valueQuantity has no value"))
        return iter(())

    monkeypatch.setattr(observations, "iter_outcome_observations", pulled)
    code, out, err = run(capsys, "observations", "NCT03945487", "--server", "http://fhir.test/fhir",
                         "--fhir-version", "R4", "--format", "csv")
    assert code == 0 and out.startswith("subject,arm,code,value,unit,")
    assert "trialbridge: warning: Observation o-7 could not be read: valueQuantity has no value" in err
    assert "0 observations of ALB (window no end), 1 could not be read" in err
