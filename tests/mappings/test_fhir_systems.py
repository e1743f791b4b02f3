"""Our URLs (:mod:`mappings.fhir.systems`): one place for each, all under the trialbridge base."""

from __future__ import annotations

from mappings.fhir.systems import CS, SD, SID, TB, Ext
from mappings.fhir.tables import own_system


def test_extension_urls_are_ours_and_distinct():
    urls = [v for k, v in vars(Ext).items() if not k.startswith("_")]
    assert urls and all(u.startswith(SD) for u in urls)
    assert len(set(urls)) == len(urls)


def test_bases_nest_under_one_root():
    assert all(base.startswith(TB) for base in (SID, CS, SD))
    assert own_system("overall_status") == CS + "ctgov-overall-status"
