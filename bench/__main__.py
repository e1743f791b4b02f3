"""Run every benchmark, print one table, write it as JSON under bench/results/.

``python -m bench [suite ...]`` runs only the named suites (``mapping``, ``eligibility``,
``lab_results``, ``bulk``, ``service``, ``sync_workers``, ``cohort``); without names, all of them.
"""

from __future__ import annotations

import gc
import sys

from . import bulk, cohort, criteria, eligibility, lab_results, mapping, service, sync_workers
from .report import print_table, write_json

SUITES = [
    ("mapping", mapping.run),
    ("eligibility", eligibility.run),
    ("criteria", criteria.run),
    ("lab_results", lab_results.run),
    ("bulk", bulk.run),
    ("service", service.run),
    ("cohort", cohort.run),
    ("sync_workers", sync_workers.run),
]


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    unknown = sorted(set(names) - {name for name, _ in SUITES})
    if unknown:
        print(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(n for n, _ in SUITES)}",
              file=sys.stderr)
        return 2
    # What the service and the sync job do after start-up: move the (large) fhir.resources model
    # graph out of the cyclic collector's sight, so collections scan only new objects.
    gc.collect()
    gc.freeze()
    rows = []
    for name, run in SUITES:
        if names and name not in names:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(run())
    print_table(rows)
    path = write_json(rows)
    print(f"\nwritten {path.relative_to(path.parent.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
