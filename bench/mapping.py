"""Mapping speed: v2 JSON bytes -> validated FHIR Bundle JSON, against json.loads + json.dumps."""

from __future__ import annotations

import json
from pathlib import Path

from mappings import fhirjson
from mappings.fhir import write_bundle
from mappings.fhir.validate import validate_bundle
from mappings.sources import read_protocol

from .report import Row, round_rates, spread

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ctgov"


def _records() -> list[bytes]:
    return [p.read_bytes() for p in sorted(FIXTURES.glob("*.json"))]


def map_once(data: bytes, version: str) -> str:
    """The full ``map`` path: read, write, validate, serialise."""
    bundle = write_bundle(read_protocol(data).protocol, version).bundle
    problems = validate_bundle(bundle, version)
    if problems:
        raise AssertionError(f"invalid {version} bundle: {problems[0]}")
    return fhirjson.dumps(bundle)


def run() -> list[Row]:
    records = _records()

    def floor() -> int:
        for data in records:
            json.dumps(json.loads(data), ensure_ascii=False)
        return len(records)

    def mapper(version: str):
        def mapped() -> int:
            for data in records:
                map_once(data, version)
            return len(records)

        return mapped

    versions = ("R4", "R5")
    for version in versions:  # first use builds models, validators and tables: not a round's cost
        mapper(version)()
    floor_rates, *mapped_rates = round_rates([floor, *(mapper(v) for v in versions)], seconds=4.5)
    return [
        Row(f"map v2 JSON -> validated {version} Bundle", max(values), "rec/s", "json.loads+dumps",
            max(floor_rates), target=0.10, detail=spread(values, floor_rates))
        for version, values in zip(versions, mapped_rates)
    ]
