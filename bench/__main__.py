"""Run every benchmark, print one table, write it as JSON under bench/results/."""

from __future__ import annotations

import gc
import sys

from . import criteria, eligibility, lab_results, mapping, service
from .report import print_table, write_json

SUITES = [
    ("mapping", mapping.run),
    ("eligibility", eligibility.run),
    ("criteria", criteria.run),
    ("lab_results", lab_results.run),
    ("service", service.run),
]


def main() -> int:
    # What the service and the sync job do after start-up: move the (large) fhir.resources model
    # graph out of the cyclic collector's sight, so collections scan only new objects.
    gc.collect()
    gc.freeze()
    rows = []
    for name, run in SUITES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(run())
    print_table(rows)
    path = write_json(rows)
    print(f"\nwritten {path.relative_to(path.parent.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
