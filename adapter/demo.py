"""``make demo``: map the seed study (NCT03945487, the classic page text) to FHIR R4 and R5 and say
what came out, in a few lines a person reads."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from mappings.fhir import SUPPORTED_VERSIONS, read_bundle, write_bundle
from mappings.fhir.validate import validate_bundle
from mappings.sources import read_protocol

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "ctgov" / "NCT03945487.txt"


def summarise_mapping(source: Path = SEED) -> bool:
    """Print what the seed maps to in each FHIR version; True when every check passed."""
    read = read_protocol(source.read_bytes())
    p = read.protocol
    print(f"{p.nct_id} ({read.source_format}): {p.brief_title}")
    print(
        f"  status {p.overall_status}, phases {', '.join(p.phases) or '-'}, "
        f"{len(p.arms)} arms, {len(p.interventions)} interventions, "
        f"{len(p.primary_outcomes)}+{len(p.secondary_outcomes)} outcomes, {len(p.locations)} site(s)"
    )
    ok = True
    for version in SUPPORTED_VERSIONS:
        written = write_bundle(p, version)
        counts = Counter(e["resource"]["resourceType"] for e in written.bundle["entry"])
        problems = validate_bundle(written.bundle, version)
        same = read_bundle(written.bundle, version).protocol == p
        ok = ok and not problems and same
        parts = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
        print(
            f"  {version}: transaction of {len(written.bundle['entry'])} entries ({parts}); "
            f"validation {'passed' if not problems else 'FAILED: ' + problems[0]}; "
            f"read back {'identical' if same else 'DIFFERENT'}"
        )
    for issue in read.issues:
        print(f"  note: {issue}")
    return ok


def main() -> int:
    return 0 if summarise_mapping() else 1


if __name__ == "__main__":
    sys.exit(main())
