"""Golden outputs of the eligibility pipeline for every committed ClinicalTrials.gov record.

For each record of ``fixtures/ctgov`` the golden file ``golden/criteria_<record>.json`` holds, byte
for byte, what the code produced when it was captured:

* ``parsed`` -- :func:`parse_criteria` of the criteria text (items, markers, lines, notes, headings,
  issues);
* ``recognised`` -- :func:`recognise_eligibility` (registry fields + every item: status, reason,
  test tree, notes, at-screening, children);
* ``r4`` -- the R4 ``Group.characteristic`` entries derived from the criteria;
* ``r5`` -- the R5 contained EvidenceVariable and its referencing characteristic.

It guards refactorings (speed work in particular) that must not change any output.  When an output
is changed ON PURPOSE (a new rule, a table entry), regenerate the files and review the diff::

    .venv/bin/python -m tests.mappings.test_eligibility_golden
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings.eligibility import parse_criteria, recognise_eligibility
from mappings.fhir.r4 import criteria as r4_criteria
from mappings.fhir.r5 import criteria as r5_criteria
from mappings.fhir.tables import load_table
from mappings.sources import read_protocol
from tests.conftest import ALL_RECORDS

GOLDEN = Path(__file__).resolve().parent / "golden"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON, exact: dataclasses tagged with their type, Decimals as strings,
    enumerations by value, sets sorted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"$type": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _plain(getattr(value, f.name))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def snapshot(record: Path) -> str:
    """The golden text of one record (what the current code produces)."""
    protocol = read_protocol(record.read_bytes()).protocol
    e = protocol.eligibility
    r5_codes = load_table("fhir_r5.json")["characteristics"]
    data = {
        "record": record.name,
        "parsed": _plain(parse_criteria(e.criteria if e else None)),
        "recognised": _plain(recognise_eligibility(e)),
        "r4": _plain(r4_criteria.characteristics(e, load_table("fhir_r4.json")["characteristics"])),
        "r5": _plain(r5_criteria.group_parts(protocol.nct_id, e, r5_codes)),
    }
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def golden_path(record: Path) -> Path:
    return GOLDEN / f"criteria_{record.stem}.json"


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda p: p.name)
def test_criteria_outputs_equal_the_golden_files(record: Path) -> None:
    expected = golden_path(record).read_text("utf-8")
    assert snapshot(record) == expected, (
        f"{record.name}: parse/recognise/FHIR criteria output changed; if on purpose, regenerate "
        "with `python -m tests.mappings.test_eligibility_golden` and review the diff"
    )


def test_golden_files_cover_computable_items() -> None:
    """The golden set is not trivially empty: the seed has computable R4 and R5 criteria."""
    seed = json.loads(golden_path(next(p for p in ALL_RECORDS if p.stem == "NCT03945487")).read_text("utf-8"))
    assert len(seed["r4"]) >= 5 and seed["r5"][0]
    assert sum(len(json.loads(golden_path(p).read_text("utf-8"))["recognised"]) for p in ALL_RECORDS) > 30


def main() -> None:
    """Write the golden files from the current code."""
    GOLDEN.mkdir(exist_ok=True)
    for record in ALL_RECORDS:
        golden_path(record).write_text(snapshot(record), "utf-8")
        print("wrote", golden_path(record), file=sys.stderr)


if __name__ == "__main__":
    main()
