"""``trialbridge sync`` heals a real HAPI server that lost its data (adapter/sync/heal.py).

The test runs its OWN HAPI R4 JVM (``TRIALBRIDGE_HAPI_RUN_DIR``: a private run directory and a free
port; the shared servers on 18080/18081 are not touched) and wipes it mid-sync by stopping and
starting it (its H2 database is in memory).  The trial fixtures go out in two steps: enrolments and
the first lab rows, then -- after the wipe and the protocol pushed again (the sync job does not own
the ResearchStudy) -- every lab row.  The second pass meets HAPI's 404 (HAPI-1091) for labs whose
patient is gone and re-sends the subjects first (the sample check is switched off for that pass,
so the refusal path is what heals); the third pass's sample check finds the lost early labs and
re-sends every sent record.  At the end every subject, patient and lab is on the server exactly
once, nothing is dead-lettered and the CLI exits 0; a run that dead-letters records exits 3.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.push import push_protocol
from adapter.sync import runner
from adapter.sync.command import EXIT_DEAD_LETTERS
from adapter.sync.config import load_sync_config
from adapter.sync.outbox import Outbox
from mappings.fhir.identity import conditional_url
from mappings.fhir.observations import LAB_RESULT_SYSTEM
from mappings.fhir.subjects import SUBJECT_SYSTEM
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED

pytestmark = pytest.mark.hapi

HAPI = ROOT / "hapi" / "hapi.py"
TRIAL = ROOT / "fixtures" / "trial"
NCT = "NCT03945487"
MRN_SYSTEM = "https://hospital.example.org/mrn"
FIRST_LABS = 300  # lab rows of the first pass (the first subjects'); the rest come after the wipe


class PrivateHapi:
    """One HAPI R4 JVM of this test: own run directory, own port, small heap."""

    def __init__(self, run_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/fhir"
        self.env = {
            **os.environ,
            "TRIALBRIDGE_HAPI_RUN_DIR": str(run_dir),
            "TRIALBRIDGE_HAPI_R4_PORT": str(port),
            "TRIALBRIDGE_HAPI_JAVA_OPTS": "-Xmx1g -XX:TieredStopAtLevel=1",
        }

    def hapi(self, command: str) -> None:
        done = subprocess.run(
            [sys.executable, str(HAPI), command, "--only", "R4", "--timeout", "300"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=420,
        )
        assert done.returncode == 0, f"hapi.py {command}:\n{done.stdout}\n{done.stderr}"

    def wipe(self) -> None:
        """Stop and start the JVM: the in-memory database is gone."""
        self.hapi("stop")
        self.hapi("start")


@pytest.fixture(scope="module")
def private_hapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateHapi]:
    server = PrivateHapi(tmp_path_factory.mktemp("hapi-run"))
    server.hapi("start")
    try:
        yield server
    finally:
        server.hapi("stop")


def client_of(url: str) -> FhirClient:
    return FhirClient(ServerConfig(name="r4", base_url=url, fhir_version="R4", timeout=(5.0, 120.0)))


def push_study(url: str) -> None:
    with client_of(url) as client:
        push_protocol(client, read_protocol(SEED.read_bytes()).protocol)


def write_config(directory: Path, labs: list[str], *, create_patients: bool = True) -> Path:
    (directory / "enrolments.csv").write_text((TRIAL / "enrolments.csv").read_text("utf-8"), "utf-8")
    (directory / "labs.csv").write_text("\n".join(labs) + "\n", "utf-8")
    config = directory / "sync.toml"
    config.write_text(
        f'study = "{NCT}"\nstate = "state.sqlite"\nchunk_size = 50\n'
        f"create_patients = {str(create_patients).lower()}\n"
        '[source]\nenrolments = "enrolments.csv"\nlabs = "labs.csv"\n[target]\nserver = "r4"\n'
    )
    return config


def sync(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", "sync", "--once", "--no-progress", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def on_server(url: str, resource_type: str, system: str, values: list[str]) -> dict[str, int]:
    """How many resources carry each ``system|value``, and how many of the type there are at all."""
    found = dict.fromkeys(values, 0)
    with client_of(url) as client:
        for start in range(0, len(values), 50):
            batch = values[start : start + 50]
            query = ",".join(conditional_url(resource_type, system, v).partition("=")[2] for v in batch)
            for resource in client.search(resource_type, {"identifier": query, "_count": "200"}):
                for ident in resource.get("identifier") or []:
                    if ident.get("system") == system and ident.get("value") in found:
                        found[ident["value"]] += 1
        total = next(client.search_bundles(resource_type, {"_summary": "count"}))["total"]
    return {**found, "_total": total}


def test_a_wiped_server_is_healed_and_a_dead_letter_exits_3(private_hapi, tmp_path, monkeypatch):
    started = time.monotonic()
    url = private_hapi.url
    env = {k: v for k, v in os.environ.items() if k != "TRIALBRIDGE_CONFIG"} | {"TRIALBRIDGE_R4_URL": url}
    labs = (TRIAL / "labs.csv").read_text("utf-8").splitlines()
    enrolments = (TRIAL / "enrolments.csv").read_text("utf-8").splitlines()[1:]
    mrns = [line.split(",")[1] for line in enrolments]
    subjects = [f"{NCT}-{line.split(',')[0]}" for line in enrolments]
    lab_ids = sorted(
        {line.rsplit(",", 1)[1] for line in labs[1:]} - {f"LIS-29000{i:02d}" for i in range(1, 11)}
    )
    assert (len(subjects), len(lab_ids)) == (24, 1577)

    # pass 1: every enrolment, the first lab rows
    push_study(url)
    config = write_config(tmp_path, labs[: FIRST_LABS + 1])
    first = sync(config, env)
    assert first.returncode == 0, first.stderr
    with Outbox(tmp_path / "state.sqlite", lock=False) as box:
        sent_first = box.counts().sent
    assert sent_first > 24 + 250

    private_hapi.wipe()
    assert on_server(url, "Patient", MRN_SYSTEM, mrns)["_total"] == 0
    missing_study = sync(config, env)  # the sync job does not own the ResearchStudy: it says so
    assert missing_study.returncode == 1 and "push its protocol first" in missing_study.stderr
    push_study(url)

    # pass 2, in process, sample check off: HAPI's 404 for the new labs heals their patients
    write_config(tmp_path, labs)
    monkeypatch.setenv("TRIALBRIDGE_R4_URL", url)
    monkeypatch.delenv("TRIALBRIDGE_CONFIG", raising=False)
    monkeypatch.setattr(runner, "check_sample", lambda client, outbox: 0)
    second = runner.run(load_sync_config(config), once=True)
    assert second.ok, second
    assert second.push.dead == 0 and second.push.healed >= 1
    assert second.push.transactions < 100  # not bisected one by one (the defect: 2,441 transactions)
    monkeypatch.undo()

    # pass 3, the CLI: the sample check finds the lost first labs and re-sends every sent record
    third = sync(config, env)
    assert third.returncode == 0, third.stderr
    assert "missing on the server" in third.stderr and "MRN-" not in third.stderr
    with Outbox(tmp_path / "state.sqlite", lock=False) as box:
        counts = box.counts()
        assert all(d.origin == "source" for d in box.dead_letters())  # the fixture's bad rows only
    assert (counts.pending, counts.sent, counts.dead) == (0, 24 + 1577, 0)
    research_subjects = on_server(url, "ResearchSubject", SUBJECT_SYSTEM, subjects)
    patients = on_server(url, "Patient", MRN_SYSTEM, mrns)
    observations = on_server(url, "Observation", LAB_RESULT_SYSTEM, lab_ids)
    assert research_subjects == {**dict.fromkeys(subjects, 1), "_total": 24}
    assert patients == {**dict.fromkeys(mrns, 1), "_total": 24}
    assert observations == {**dict.fromkeys(lab_ids, 1), "_total": 1577}

    # a run that dead-letters records exits 3: patients the server does not have, not created
    other = tmp_path / "unknown-patients"
    other.mkdir()
    rewritten = [line.replace("MRN-", "MRN-UNKNOWN-") for line in labs[:4]]
    dead_config = write_config(other, rewritten, create_patients=False)
    enrolled = (other / "enrolments.csv").read_text().splitlines()[:3]  # two subjects
    (other / "enrolments.csv").write_text(
        "\n".join(x.replace("MRN-", "MRN-UNKNOWN-") for x in enrolled) + "\n"
    )
    refused = sync(dead_config, env)
    assert refused.returncode == EXIT_DEAD_LETTERS == 3, refused.stderr
    with Outbox(other / "state.sqlite", lock=False) as box:
        assert box.counts().dead == 2 + 3 and box.counts().sent == 0
    print(
        f"\nheal test: {sent_first} sent, wiped, healed: {time.monotonic() - started:.0f}s after JVM start"
    )
