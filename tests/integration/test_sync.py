"""``trialbridge sync`` against the real local HAPI R4 server.

Proves: one pass of the example config pushes every fixture enrolment and lab result, a second pass
sends nothing, and every resource exists exactly once; a sync SIGKILLed mid-push and run again
leaves every resource exactly once and resends at most the chunk that was in flight; a rejected
resource lands in the dead letter with the server's message while the rest of its chunk is sent;
a pull after a checkpoint writes only what changed; SIGTERM finishes the current chunk and exits 0.

Each test but the first uses a fresh synthetic study (a random NCT number, MRNs and lab result ids
rewritten with a run id), so counts stay exact on a long-running server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.push import push_protocol
from adapter.sync.config import load_sync_config
from adapter.sync.outbox import Outbox
from adapter.sync.runner import run
from mappings.fhir.identity import conditional_url
from mappings.fhir.observations import LAB_RESULT_SYSTEM
from mappings.fhir.subjects import SUBJECT_SYSTEM
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED

pytestmark = pytest.mark.hapi

EXAMPLE = ROOT / "fixtures" / "sync.example.toml"
TRIAL = ROOT / "fixtures" / "trial"
MRN_SYSTEM = "https://hospital.example.org/mrn"


@pytest.fixture(scope="module")
def r4_url(hapi_servers: dict[str, str]) -> str:
    return hapi_servers["R4"]


@pytest.fixture
def r4(r4_url: str):
    with FhirClient(ServerConfig(name="r4", base_url=r4_url, fhir_version="R4", timeout=(5.0, 120.0))) as c:
        yield c


@pytest.fixture
def r5(hapi_servers: dict[str, str]):
    config = ServerConfig(name="r5", base_url=hapi_servers["R5"], fhir_version="R5", timeout=(5.0, 120.0))
    with FhirClient(config) as c:
        yield c


@pytest.fixture
def env(r4_url: str, hapi_servers: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "TRIALBRIDGE_CONFIG"}
    return {**clean, "TRIALBRIDGE_R4_URL": r4_url, "TRIALBRIDGE_R5_URL": hapi_servers["R5"]}


def push_study(client: FhirClient, nct: str) -> None:
    protocol = read_protocol(SEED.read_bytes()).protocol
    if nct != protocol.nct_id:
        protocol = dataclasses.replace(protocol, nct_id=nct)
    push_protocol(client, protocol)


def count_by_identifier(client: FhirClient, resource_type: str, system: str, values: list[str]) -> Counter:
    """How many resources carry each ``system|value`` (searched in batches of 50)."""
    found: Counter = Counter()
    for start in range(0, len(values), 50):
        batch = values[start : start + 50]
        query = ",".join(conditional_url(resource_type, system, v).partition("identifier=")[2] for v in batch)
        for resource in client.search(resource_type, {"identifier": query, "_count": "200"}):
            for ident in resource.get("identifier") or []:
                if ident.get("system") == system and ident.get("value") in batch:
                    found[ident["value"]] += 1
    return found


@dataclasses.dataclass
class Study:
    """A synthetic study: fixture rows with run-unique NCT, MRNs and lab result ids."""

    nct: str
    dir: Path
    subjects: list[str]
    mrns: list[str]
    lab_ids: list[str]

    def config(self, **options: object) -> Path:
        values = {"chunk_size": 20, "create_patients": True, "pull": True, "safety_margin": 5, "server": "r4",
                  **options}
        text = [
            f'study = "{self.nct}"',
            'state = "state.sqlite"',
            f"chunk_size = {values['chunk_size']}",
            "interval = 1",
            f"create_patients = {str(values['create_patients']).lower()}",
            "[source]",
            'enrolments = "enrolments.csv"',
            'labs = "labs.csv"',
            "[target]",
            f'server = "{values["server"]}"',
        ]
        if values["pull"]:
            text += ["[pull]", 'output = "pull"', f"safety_margin = {values['safety_margin']}"]
        path = self.dir / "sync.toml"
        path.write_text("\n".join(text) + "\n")
        return path


def synthetic_study(
    tmp_path: Path, client: FhirClient, *, subjects: int | None = None, labs_per_subject: int | None = None
) -> Study:
    """Copy the fixtures with fresh identifiers: the first ``subjects`` subjects; with
    ``labs_per_subject``, the first N valid lab rows of each (else every row, the error rows too)."""
    run_id = f"{random.randrange(16**6):06x}"
    nct = f"NCT9{random.randrange(10**7):07d}"
    enrol_lines = (TRIAL / "enrolments.csv").read_text("utf-8").splitlines()
    lab_lines = (TRIAL / "labs.csv").read_text("utf-8").splitlines()
    keep_subjects = [line.split(",")[0] for line in enrol_lines[1:]][:subjects]
    rows_out = [enrol_lines[0]] + [line for line in enrol_lines[1:] if line.split(",")[0] in keep_subjects]
    taken: Counter = Counter()
    labs_out = [lab_lines[0]]
    for line in lab_lines[1:]:
        subject = line.split(",")[0]
        if subject not in keep_subjects or (labs_per_subject and taken[subject] >= labs_per_subject):
            continue
        if labs_per_subject and line.rsplit(",", 1)[1].startswith("LIS-29"):
            continue  # a deliberate error row of the fixture
        taken[subject] += 1
        labs_out.append(line)

    def rewrite(text: str) -> str:
        return text.replace("MRN-", f"MRN-{run_id}-").replace("LIS-", f"LIS-{run_id}-")

    study_dir = tmp_path / nct
    study_dir.mkdir()
    (study_dir / "enrolments.csv").write_text(rewrite("\n".join(rows_out)) + "\n", "utf-8")
    (study_dir / "labs.csv").write_text(rewrite("\n".join(labs_out)) + "\n", "utf-8")
    mrns = [rewrite(line.split(",")[1]) for line in rows_out[1:]]
    lab_ids = sorted({rewrite(line.rsplit(",", 1)[1]) for line in labs_out[1:]})
    push_study(client, nct)
    return Study(nct, study_dir, keep_subjects, mrns, lab_ids)


def outbox_rows(state: Path) -> dict[str, tuple[str, int]]:
    """key -> (status, attempts), read while another process may write (WAL readers do not block)."""
    if not state.exists():
        return {}
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=10)
    try:
        return {k: (s, a) for k, s, a in db.execute("SELECT key, status, attempts FROM outbox")}
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    finally:
        db.close()


def sync_process(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """``trialbridge sync`` in a child process, its output in files beside the config (no pipe to fill)."""
    out = (config.parent / "stdout.txt").open("w")
    err = (config.parent / "stderr.txt").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "sync", "--config", str(config), *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=err,
        text=True,
    )


def wait_until_sent(proc: subprocess.Popen, state: Path, count: int, timeout: float = 180) -> None:
    """Poll the outbox (every 20 ms) until ``count`` records are sent; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for s, _ in outbox_rows(state).values() if s == "sent") >= count:
            return
        if proc.poll() is not None:
            log = (state.parent / "stderr.txt").read_text()
            pytest.fail(f"sync exited ({proc.returncode}) before {count} records were sent:\n{log}")
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {count} records sent")


def assert_exactly_once_on_server(client: FhirClient, study: Study) -> None:
    subjects = count_by_identifier(
        client, "ResearchSubject", SUBJECT_SYSTEM, [f"{study.nct}-{s}" for s in study.subjects]
    )
    assert sorted(subjects.values()) == [1] * len(study.subjects)
    patients = count_by_identifier(client, "Patient", MRN_SYSTEM, study.mrns)
    assert sorted(patients.values()) == [1] * len(study.mrns)
    observations = count_by_identifier(client, "Observation", LAB_RESULT_SYSTEM, study.lab_ids)
    assert set(observations) == set(study.lab_ids) - _invalid(study)
    assert set(observations.values()) == {1}


def _invalid(study: Study) -> set[str]:
    """The lab ids of the fixture's deliberate error rows (``LIS-<run>-29000xx``)."""
    return {i for i in study.lab_ids if i.rsplit("-", 1)[1].startswith("29")}


# -- (1) the example config ------------------------------------------------------------------------


def test_one_pass_of_the_example_config_then_nothing_new(r4, env, tmp_path):
    push_study(r4, "NCT03945487")
    config = load_sync_config(EXAMPLE, env, state=tmp_path / "state.sqlite", output=tmp_path / "pull")
    first = run(config, once=True)
    assert first.ok, first
    assert first.ingest.rows == 1614  # 24 enrolments, 1590 lab rows
    assert first.push.sent == 24 + 1577 and first.push.dead == 0
    assert (first.counts.pending, first.counts.sent, first.counts.dead, first.counts.rejected) == (
        0,
        1601,
        0,
        10,
    )

    second = run(config, once=True)
    assert second.ok and second.ingest.skipped == 2 and second.ingest.rows == 0
    assert second.push.sent == 0 and second.push.transactions == 0

    subjects = count_by_identifier(
        r4, "ResearchSubject", SUBJECT_SYSTEM, [f"NCT03945487-S{i:03d}" for i in range(1, 25)]
    )
    assert len(subjects) == 24 and set(subjects.values()) == {1}
    lab_ids = sorted(
        {line.rsplit(",", 1)[1] for line in (TRIAL / "labs.csv").read_text().splitlines()[1:]}
        - {f"LIS-29000{i:02d}" for i in range(1, 11)}
    )
    observations = count_by_identifier(r4, "Observation", LAB_RESULT_SYSTEM, lab_ids)
    assert len(observations) == 1577 and set(observations.values()) == {1}
    # the three corrected rows won: their Observations carry the correction
    with Outbox(config.state, lock=False) as box:
        corrected = [
            k
            for k in (box.record(f"lab:NCT03945487:{i}") for i in lab_ids)
            if k["entries"][0]["resource"]["status"] == "corrected"
        ]
    assert len(corrected) == 3


# -- (2) the kill test -----------------------------------------------------------------------------


def test_sigkill_mid_push_then_resume_sends_everything_exactly_once(r4, env, tmp_path):
    study = synthetic_study(tmp_path, r4, labs_per_subject=12)
    config = study.config(chunk_size=20, pull=False)
    state = study.dir / "state.sqlite"
    total = len(study.subjects) + len(set(study.lab_ids) - _invalid(study))  # 24 + about 290

    proc = sync_process(config, env, "--once")
    try:
        wait_until_sent(proc, state, 100)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    at_kill = outbox_rows(state)
    sent_before = {k for k, (s, _) in at_kill.items() if s == "sent"}
    in_flight = {k for k, (s, a) in at_kill.items() if s == "pending" and a > 0}
    assert len(at_kill) == total  # every row was in the outbox before anything was sent
    assert 100 <= len(sent_before) < total
    assert len(in_flight) <= 20  # at most the one chunk whose answer never arrived

    resumed = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "sync", "--once", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr

    after = outbox_rows(state)
    assert Counter(s for s, _ in after.values()) == {"sent": total}
    assert all(after[k][1] == 1 for k in sent_before)  # nothing confirmed before the kill went again
    # the chunk in flight was sent again (more than once if the server, still finishing the killed
    # run's transaction, answered 409 to the first try): conditional writes make that safe
    assert all(after[k][1] >= 2 for k in in_flight)
    assert_exactly_once_on_server(r4, study)
    print(
        f"\nkill test: {len(sent_before)} sent before SIGKILL, {len(in_flight)} in flight, "
        f"{total - len(sent_before)} sent after resume, {total} on the server exactly once"
    )


# -- (3) a rejected resource ------------------------------------------------------------------------


def test_a_rejected_record_goes_to_dead_letter_and_the_rest_of_its_chunk_is_sent(
    r4, env, tmp_path, capsys, caplog
):
    study = synthetic_study(tmp_path, r4, subjects=3, labs_per_subject=6)
    for mrn in study.mrns[:2]:  # the third subject's patient is unknown to the server
        r4.conditional_update(
            {"resourceType": "Patient", "identifier": [{"system": MRN_SYSTEM, "value": mrn}]},
            {"identifier": f"{MRN_SYSTEM}|{mrn}"},
        )
    config = load_sync_config(study.config(chunk_size=10, create_patients=False, pull=False), env)
    result = run(config, once=True)
    assert result.ok
    unknown = study.subjects[2]
    labs = [line.split(",") for line in (study.dir / "labs.csv").read_text().splitlines()[1:]]
    rejected_labs = {f"lab:{study.nct}:{row[-1]}" for row in labs if row[0] == unknown}
    expected_dead = {f"subject:{study.nct}:{unknown}"} | rejected_labs
    with Outbox(config.state, lock=False) as box:
        letters = list(box.dead_letters())
        counts = box.counts()
    assert {d.key for d in letters} == expected_dead
    assert all(d.origin == "server" and d.status == 404 for d in letters)
    assert all("HAPI-1091" in d.reason and "No resources match" in d.reason for d in letters)
    assert all(d.outcome["resourceType"] == "OperationOutcome" for d in letters)
    assert (counts.dead, counts.pending, counts.sent) == (len(expected_dead), 0, 2 + 12)
    assert (
        "dead letter: " in caplog.text and "MRN-" not in caplog.text
    )  # the log: keys, not the server's text
    assert (
        len(
            count_by_identifier(
                r4, "ResearchSubject", SUBJECT_SYSTEM, [f"{study.nct}-{s}" for s in study.subjects]
            )
        )
        == 2
    )

    capsys.readouterr()
    assert main(["sync", "--report", "--config", str(study.dir / "sync.toml")]) == 0
    report = capsys.readouterr().out.splitlines()
    listed = [line.split("\t") for line in report if not line.startswith("#")]
    assert {key for key, _, _ in listed} == expected_dead
    assert all(
        source.startswith(("enrolments.csv:", "labs.csv:")) and "HAPI-1091" in reason
        for _, source, reason in listed
    )
    assert report[-1].startswith(f"# outbox: pending 0, sent 14, dead {len(expected_dead)}")


# -- (4) pull since the checkpoint ------------------------------------------------------------------


def test_pull_since_the_checkpoint_writes_only_what_changed(r4, env, tmp_path):
    study = synthetic_study(tmp_path, r4, subjects=2, labs_per_subject=5)
    config = load_sync_config(study.config(safety_margin=0.5), env)
    first = run(config, once=True)
    assert first.pull.counts == {"ResearchSubject": 2, "Observation": 10}
    time.sleep(1.2)  # past the safety margin: the next pull's checkpoint is after every write above
    quiet = run(config, once=True)
    assert quiet.push.sent == 0
    time.sleep(1.2)
    empty = run(config, once=True)
    assert empty.pull.counts == {"ResearchSubject": 0, "Observation": 0}
    assert empty.pull.path.read_text() == ""

    labs = study.dir / "labs.csv"
    lines = labs.read_text().splitlines()
    cells = lines[3].split(",")
    cells[3], cells[8] = "99.9", "corrected"  # a corrected result: same lab result id, new value
    lines[3] = ",".join(cells)
    labs.write_text("\n".join(lines) + "\n")
    changed = run(config, once=True)
    assert changed.push.sent == 1
    pulled = [json.loads(line) for line in changed.pull.path.read_text().splitlines()]
    assert [(r["resourceType"], r["identifier"][0]["value"]) for r in pulled] == [("Observation", cells[-1])]
    assert str(pulled[0]["valueQuantity"]["value"]) == "99.9" and pulled[0]["status"] == "corrected"
    assert len(list((study.dir / "pull").glob("pull-*.ndjson"))) == 4  # one file per pass


# -- R5 -------------------------------------------------------------------------------------------


def test_sync_to_an_r5_server_writes_r5_resources_exactly_once_and_pulls_them_back(r5, env, tmp_path):
    study = synthetic_study(tmp_path, r5, subjects=3, labs_per_subject=4)
    config = load_sync_config(study.config(server="r5"), env)
    first = run(config, once=True)
    assert first.ok, first
    assert first.push.sent == 3 + 12 and first.push.dead == 0
    assert first.pull.counts == {"ResearchSubject": 3, "Observation": 12}
    assert run(config, once=True).push.sent == 0
    assert_exactly_once_on_server(r5, study)
    pulled = [json.loads(line) for line in first.pull.path.read_text().splitlines()]
    subjects = [r for r in pulled if r["resourceType"] == "ResearchSubject"]
    # R5's shape: ``subject`` (R4: ``individual``) and ``progress`` (R4: ``status`` + an extension)
    assert all("subject" in r and "individual" not in r and r.get("progress") for r in subjects)


# -- SIGTERM in the interval loop -------------------------------------------------------------------


def test_sigterm_finishes_the_current_chunk_and_exits_cleanly(r4, env, tmp_path):
    study = synthetic_study(tmp_path, r4, labs_per_subject=12)  # about 310 records
    config = study.config(chunk_size=10, pull=False)
    state = study.dir / "state.sqlite"
    proc = sync_process(config, env, "--interval", "30", "--no-progress")
    try:
        wait_until_sent(proc, state, 40)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (study.dir / "stderr.txt").read_text()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err
    rows = outbox_rows(state)
    assert not [k for k, (s, a) in rows.items() if s == "pending" and a > 0]  # no chunk left half-done
    assert 40 <= Counter(s for s, _ in rows.values())["sent"] < len(rows)  # it stopped early
    assert "MRN-" not in err  # log lines: keys and counts only
