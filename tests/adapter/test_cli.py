"""The command line without a server: map, protocol, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adapter.cli import main
from mappings.model import to_dict
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED, record_bytes


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
