"""``make demo``: the seed study (NCT03945487, the classic page text) end to end.

Maps it to FHIR R4 and R5, starts the local HAPI FHIR servers (``hapi/hapi.py start``), pushes the
study to each (after loading our CodeSystems, ValueSets and extension definitions: ``trialbridge
definitions push``), pulls it back, asks HAPI's own validator about every stored resource, and says what
happened in a few lines a person reads.  The servers are left running; the last line says how to
stop them.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import cast

from adapter.client import FhirClient
from adapter.config import FhirVersion, ServerConfig
from adapter.definitions import push_definitions
from adapter.errors import FhirClientError
from adapter.pull import pull_study
from adapter.push import push_protocol
from mappings.fhir import SUPPORTED_VERSIONS, read_bundle, write_bundle
from mappings.fhir.validate import validate_bundle
from mappings.model import Protocol
from mappings.sources import read_protocol

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "ctgov" / "NCT03945487.txt"


def summarise_mapping(p: Protocol, source_format: str) -> bool:
    """Print what the seed maps to in each FHIR version; True when every check passed."""
    print(f"{p.nct_id} ({source_format}): {p.brief_title}")
    print(f"  status {p.overall_status}, phases {', '.join(p.phases) or '-'}, "
          f"{len(p.arms)} arms, {len(p.interventions)} interventions, "
          f"{len(p.primary_outcomes)}+{len(p.secondary_outcomes)} outcomes, {len(p.locations)} site(s)")
    ok = True
    for version in SUPPORTED_VERSIONS:
        written = write_bundle(p, version)
        counts = Counter(e["resource"]["resourceType"] for e in written.bundle["entry"])
        problems = validate_bundle(written.bundle, version)
        same = read_bundle(written.bundle, version).protocol == p
        ok = ok and not problems and same
        parts = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
        print(f"  {version} mapping: {len(written.bundle['entry'])} entries ({parts}); "
              f"our checks {'passed' if not problems else 'FAILED: ' + problems[0]}; "
              f"read back {'identical' if same else 'DIFFERENT'}")
    return ok


def start_servers() -> dict[str, str]:
    """Start (or find) the local HAPI servers; ``{"R4": url, "R5": url}``."""
    print("starting the local HAPI FHIR servers (the first run builds them: a few minutes) ...", flush=True)
    proc = subprocess.run([sys.executable, str(ROOT / "hapi" / "hapi.py"), "start"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit("demo: the HAPI servers did not start (see above)")
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line[:3] in ("R4 ", "R5 "))


def push_and_pull(p: Protocol, version: str, url: str) -> bool:
    """Push the study, pull it back, validate what is stored; print one paragraph."""
    fhir_version = cast(FhirVersion, version)  # one of SUPPORTED_VERSIONS, which are the FhirVersion values
    with FhirClient(ServerConfig(name=version.lower(), base_url=url, fhir_version=fhir_version,
                                 timeout=(5.0, 120.0))) as client:
        client.check_version()
        loaded = push_definitions(client, version)  # our CodeSystems and extensions, so $validate knows them
        result = push_protocol(client, p)
        pulled = pull_study(client, p.nct_id)
        same = read_bundle(pulled, version).protocol == p
        errors = warnings = 0
        for entry in pulled["entry"]:
            issues = client.validate(entry["resource"]).get("issue", [])
            errors += sum(i.get("severity") in ("error", "fatal") for i in issues)
            warnings += sum(i.get("severity") == "warning" for i in issues)
    study = next(e for e in result.entries if e.resource_type == "ResearchStudy")
    print(f"  {version} at {url}: {len(loaded)} definitions loaded (CodeSystems, ValueSets, extensions)")
    print(f"  {version} at {url}: {result.count('created')} created, {result.count('updated')} updated, "
          f"{result.count('unchanged') + result.count('matched')} matched; study is {study.reference}")
    print(f"     pulled {len(pulled['entry'])} resources back: "
          f"{'the same protocol' if same else 'a DIFFERENT protocol'}; "
          f"HAPI $validate: {errors} errors, {warnings} warnings")
    return same and errors == 0


def main() -> int:
    read = read_protocol(SEED.read_bytes())
    ok = summarise_mapping(read.protocol, read.source_format)
    for issue in read.issues:
        print(f"  note: {issue}")
    servers = start_servers()
    try:
        for version in SUPPORTED_VERSIONS:
            ok = push_and_pull(read.protocol, version, servers[version]) and ok
    except FhirClientError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        ok = False
    print("the servers are still running (push again: nothing changes); stop them with: make hapi-stop")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
