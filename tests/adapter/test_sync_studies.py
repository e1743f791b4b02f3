"""adapter/sync/studies.py: the sync config's ``[registry] studies`` list (the refresh itself runs
against the real HAPI servers in tests/integration/test_registry_studies.py)."""

from __future__ import annotations

import pytest

from adapter.errors import ConfigError
from adapter.sync.config import load_sync_config
from adapter.sync.studies import RegistryStats, read_study_list


def test_a_study_list_is_read_in_order_without_repeats():
    table = {"studies": ["NCT00763412", "NCT03475563", "NCT00763412"]}
    assert read_study_list(table) == ("NCT00763412", "NCT03475563")
    assert read_study_list(None) == ()


@pytest.mark.parametrize(
    "table",
    [{"studies": ["NCT123"]}, {"studies": "NCT00763412"}, {"studies": [1]}, {"nct": []}, ["NCT00763412"]],
)
def test_a_bad_study_list_is_a_config_error(table):
    with pytest.raises(ConfigError, match="registry"):
        read_study_list(table)


def test_the_sync_config_takes_a_registry_list_instead_of_sources(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('study = "NCT00763412"\nstate = "s.sqlite"\n[registry]\nstudies = ["NCT00763412"]\n')
    config = load_sync_config(path, environ={})
    assert config.studies == ("NCT00763412",)
    assert config.enrolments is None and config.labs is None


def test_a_sync_config_with_neither_sources_nor_studies_is_refused(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('study = "NCT00763412"\nstate = "s.sqlite"\n')
    with pytest.raises(ConfigError, match="registry.studies"):
        load_sync_config(path, environ={})


def test_stats_read_as_a_line():
    assert str(RegistryStats(current=2, pushed=1)) == "2 current, 1 pushed, 0 failed"
