"""Build ``mappings/tables/eligibility_icd10cm.json`` from the CMS ICD-10-CM tabular list.

The tabular list (public domain, US Centers for Medicare & Medicaid Services / NCHS) is read from
the ``simple-icd-10-cm`` package (MIT; it ships the CMS XML file unchanged), a dev dependency:
``.venv/bin/python scripts/build_icd10cm.py``.  Which names are kept, and why: the ``_about`` of
the table and ``docs/design/criteria-evaluation.md``.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET  # noqa: S405 -- a trusted file shipped by a PyPI package
from collections import defaultdict
from importlib import resources
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "mappings" / "tables" / "eligibility_icd10cm.json"
#: Chapters left out: pregnancy (O: read by the pregnancy rule), codes for special purposes (U),
#: external causes (V-Y) and factors influencing health status (Z): not conditions a criterion names.
SKIP_CHAPTERS = tuple("OUVWXYZ")
#: A name with these words is a residual or combined category, not what a criterion names.
SKIP_WORDS = re.compile(
    r"\b(?:other|unspecified|specified|with|without|classified|elsewhere|due|following|sequela|"
    r"nos|encounter|history|personal|family|involving|not|and|or|of\s+the|site|stage|episode|initial|"
    r"subsequent|type\s+[a-z]\b|part|region|in|by|from|for|at|on|to|use|exposure|contact)\b"
)
#: Single words too common in criteria text to be read as a condition.
COMMON = {"pain", "infection", "disease", "disorder", "injury", "shock", "fall", "abuse", "dependence",
          "complication", "syndrome", "failure", "obstruction", "deformity", "anomaly", "lesion", "mass",
          "abnormal", "abnormality", "cancer", "tumor", "tumour", "neoplasm", "carcinoma", "hemorrhage",
          "bleeding", "insufficiency", "effusion", "fever", "immunodeficiency", "dementia", "delirium",
          "psychosis", "depression", "anxiety", "malaise", "fatigue", "weakness", "headache", "edema"}
MAX_WORDS = 5


def _variants(desc: str) -> set[str]:
    d = desc.lower().replace("’", "'")
    d = re.sub(r"\s*\[[^\]]*\]|\s*\([^)]*\)", "", d)  # parenthetical and bracketed parts
    d = re.sub(r",?\s*\bunspecified\b|\bnos\b", "", d)
    d = re.sub(r"[^a-z0-9' -]+", " ", d)
    d = " ".join(d.replace("'s", "").split())
    if not d or SKIP_WORDS.search(d):
        return set()
    words = d.split()
    if len(words) > MAX_WORDS or len(d) < 4:
        return set()
    if len(words) == 1 and (d in COMMON or len(d) < 5):
        return set()
    return {d}


def build(xml: bytes) -> dict:
    root = ET.fromstring(xml)  # noqa: S314
    names: dict[str, set[str]] = defaultdict(set)
    display: dict[str, str] = {}
    for diag in root.iter("diag"):
        code = diag.findtext("name") or ""
        desc = diag.findtext("desc") or ""
        if not code or code.startswith(SKIP_CHAPTERS) or len(code.replace(".", "")) > 5:
            continue
        display[code] = desc
        terms = [desc] + [n.text or "" for n in diag.findall("inclusionTerm/note")]
        for term in terms:
            for v in _variants(term):
                names[v].add(code)
    phrases: dict[str, str] = {}
    for phrase, codes in sorted(names.items()):
        stems = [c.replace(".", "") for c in codes]
        prefix = stems[0]
        for s in stems[1:]:
            while not s.startswith(prefix):
                prefix = prefix[:-1]
        if len(prefix) < 3:
            continue  # names codes of different categories: ambiguous
        code = prefix if len(prefix) == 3 else prefix[:3] + "." + prefix[3:]
        if code in display:
            phrases[phrase] = code
    used = {c for c in phrases.values()}
    return {
        "_about": {
            "what": "Condition names of ICD-10-CM (lower case, without parenthetical parts and "
            "'unspecified') -> the ICD-10-CM code they name (when a name belongs to several codes: "
            "their common category; names of codes of different categories are left out).",
            "source": "CMS/NCHS ICD-10-CM tabular list April 1, 2026 (public domain), as shipped by "
            "the simple-icd-10-cm package 1.5.0 (MIT); built by scripts/build_icd10cm.py.",
            "left_out": "chapters O, U, V-Z; names with residual or combining words (other, "
            "unspecified, with, without, due to, and, or...); names of more than "
            f"{MAX_WORDS} words; one-word names that are too common in criteria text.",
        },
        "names": phrases,
        "display": {c: display[c] for c in sorted(used)},
    }


def main() -> int:
    xml = resources.files("simple_icd_10_cm").joinpath("data/icd10c-tabular-April-1-2026.xml").read_bytes()
    table = build(xml)
    OUT.write_text(json.dumps(table, indent=0, ensure_ascii=False, sort_keys=False) + "\n", "utf-8")
    print(f"{len(table['names'])} names, {len(table['display'])} codes -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
