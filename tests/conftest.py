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


#: Edits of NCT00763412.json (old, new) that put a value no FHIR element may hold into the record, and
#: the field the refusal must name (issue 11: each passed into a bundle, or crashed with a traceback).
BAD_RECORD_VALUES = [
    (('"briefTitle": "', '"briefTitle": "\\ud800'), "briefTitle: a lone surrogate"),
    (('"count": 31', '"count": ' + "9" * 5000), "enrollmentInfo.count: a number of 5000 characters"),
    (('"count": 31', '"count": 3000000000'), "enrollment.count: 3000000000 does not fit a FHIR integer"),
    (('"briefTitle": "', '"briefTitle": "\\u0000'), "briefTitle: a control character (U+0000)"),
    (('"date": "2006-11"', '"date": "2021-02-30"'),
     "start_date.date: '2021-02-30' is not a date that exists"),
]


def record_bytes(name: str) -> bytes:
    return (CTGOV / name).read_bytes()


@pytest.fixture(scope="session")
def pg_url():
    """The URL of a real PostgreSQL server for this session (tests/pg.py: Debian's binaries, a fresh
    cluster in a temporary directory, stopped at the end)."""
    from tests.pg import server

    with server() as url:
        yield url


@pytest.fixture
def pg_namespace(request) -> str:
    """A schema name of this test alone (every test gets a fresh PostgreSQL state)."""
    import secrets

    return f"t{secrets.token_hex(6)}"
