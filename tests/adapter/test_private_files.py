"""Files holding patient data are the user's alone (:mod:`adapter.private_files`): the sync state
database with its -wal/-shm/lock files, the sync job's pulled NDJSON and the command line's ``--out``
files are created 0600 and the directories trialbridge creates for them 0700, even under umask 0."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import responses

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.private_files import open_private
from adapter.sync.outbox import Outbox
from adapter.sync.pull import pull_study_changes
from tests.adapter.test_service_observations import _pull_fixture
from tests.adapter.trial_service_helpers import BASE, NCT
from tests.conftest import SEED


@pytest.fixture(autouse=True)
def open_umask():
    """umask 0: every file would be created 0666 and every directory 0777 without the explicit modes."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sync_state_and_its_wal_shm_and_lock_files_are_0600_in_a_0700_directory(tmp_path):
    state = tmp_path / "state" / "job" / "state.sqlite"
    with Outbox(state):
        files = [state, Path(f"{state}-wal"), Path(f"{state}-shm"), Path(f"{state}.lock")]
        assert all(f.exists() for f in files)
        assert {str(f.name): mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert mode(state.parent) == mode(state.parent.parent) == 0o700


def test_an_existing_world_readable_state_database_is_narrowed(tmp_path):
    with Outbox(tmp_path / "state.sqlite"):
        pass
    os.chmod(tmp_path / "state.sqlite", 0o644)
    with Outbox(tmp_path / "state.sqlite"):
        assert mode(tmp_path / "state.sqlite") == 0o600


@responses.activate
def test_the_pulled_ndjson_is_0600_in_a_0700_directory(tmp_path):
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    responses.get(f"{BASE}/ResearchSubject", json=empty)
    responses.get(f"{BASE}/Observation", json=empty)
    config = ServerConfig.from_url(BASE, max_retries=0)
    with FhirClient(config) as client, Outbox(tmp_path / "s.sqlite") as box:
        pull_study_changes(client, box, "st1", NCT, tmp_path / "out" / "pulls", safety_margin=5)
    (written,) = (tmp_path / "out" / "pulls").glob("*.ndjson")
    assert mode(written) == 0o600
    assert mode(tmp_path / "out") == mode(tmp_path / "out" / "pulls") == 0o700


@pytest.mark.parametrize("existing", [False, True])
def test_a_cli_out_file_is_0600(tmp_path, capsys, existing):
    target = tmp_path / "bundle.json"
    if existing:
        target.write_text("old")
        os.chmod(target, 0o644)
    assert main(["map", str(SEED), "--fhir-version", "R4", "--out", str(target)]) == 0
    assert mode(target) == 0o600 and target.read_text().startswith("{")


@responses.activate
def test_the_observations_out_file_is_0600(tmp_path, capsys):
    _pull_fixture()
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    target = tmp_path / "labs.csv"
    code = main(["observations", NCT, "--server", BASE, "--format", "csv", "--tests", "TBIL",
                 "--time-frame", "96 weeks", "--out", str(target)])
    assert code == 0, capsys.readouterr().err
    assert mode(target) == 0o600 and target.read_text().startswith("subject,arm,")


def test_a_device_given_as_out_keeps_its_mode(tmp_path):
    with open_private("/dev/null") as handle:
        handle.write("x")
    assert stat.S_IMODE(os.stat("/dev/null").st_mode) == 0o666
