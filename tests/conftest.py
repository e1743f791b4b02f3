"""Shared fixtures: paths to the committed ClinicalTrials.gov records."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CTGOV = ROOT / "fixtures" / "ctgov"
SEED = CTGOV / "NCT03945487.txt"
V2_RECORDS = sorted(CTGOV.glob("*.json"))
ALL_RECORDS = sorted([*CTGOV.glob("*.json"), *CTGOV.glob("*.xml"), SEED])


@pytest.fixture
def seed_text() -> str:
    return SEED.read_text("utf-8")


def record_bytes(name: str) -> bytes:
    return (CTGOV / name).read_bytes()
