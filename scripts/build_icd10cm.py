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
#: Chapters left out: pregnancy (O: read by the pregnancy rule), injury and poisoning (S, T: their
#: names -- injury, allergy, adverse effect -- are rarely the condition a criterion means), codes
#: for special purposes (U), external causes (V-Y) and factors influencing health status (Z).
SKIP_CHAPTERS = tuple("OSTUVWXYZ")
#: A name with these words is a residual or combined category, not what a criterion names.
SKIP_WORDS = re.compile(
    r"\b(?:other|unspecified|specified|with|without|classified|elsewhere|due|following|sequela|"
    r"nos|encounter|history|personal|family|involving|not|and|or|of\s+the|site|stage|episode|initial|"
    r"subsequent|type\s+[a-z]\b|part|region|in|by|from|for|at|on|to|use|exposure|contact)\b"
)
#: Single words too common in criteria text to be read as a condition.
COMMON = {
    "pain",
    "infection",
    "disease",
    "disorder",
    "injury",
    "shock",
    "fall",
    "abuse",
    "dependence",
    "complication",
    "syndrome",
    "failure",
    "obstruction",
    "deformity",
    "anomaly",
    "lesion",
    "mass",
    "abnormal",
    "abnormality",
    "cancer",
    "tumor",
    "tumour",
    "neoplasm",
    "carcinoma",
    "hemorrhage",
    "bleeding",
    "insufficiency",
    "effusion",
    "fever",
    "immunodeficiency",
    "dementia",
    "delirium",
    "psychosis",
    "depression",
    "anxiety",
    "malaise",
    "fatigue",
    "weakness",
    "headache",
    "edema",
}
MAX_WORDS = 5
#: Codes of up to six characters (F40.240 Claustrophobia); longer ones add laterality or encounter.
MAX_CODE = 6
#: A residual category's title: a name that lands there is wider than the code.
RESIDUAL = re.compile(
    r"^(?:other|illness)\b|not elsewhere classified|classified elsewhere|unknown cause", re.I
)


#: Common names criteria use that the tabular list does not title as such (or titles as a residual
#: category), with the ICD-10-CM categories they cover: each code must exist in the tabular list,
#: whose title is written beside it in the table.
CURATED = {
    "hypertension": ["I10"],
    "high blood pressure": ["I10"],
    "htn": ["I10"],
    "arterial hypertension": ["I10"],
    "essential hypertension": ["I10"],
    "hiv": ["B20"],
    "hiv infection": ["B20"],
    "hiv disease": ["B20"],
    "human immunodeficiency virus": ["B20"],
    "human immunodeficiency virus infection": ["B20"],
    "tuberculosis": ["A15", "A17", "A18", "A19"],
    "active tuberculosis": ["A15", "A17", "A18", "A19"],
    "breast cancer": ["C50"],
    "prostate cancer": ["C61"],
    "colon cancer": ["C18"],
    "colorectal cancer": ["C18", "C19", "C20"],
    "rectal cancer": ["C20"],
    "lung cancer": ["C34"],
    "pancreatic cancer": ["C25"],
    "gastric cancer": ["C16"],
    "stomach cancer": ["C16"],
    "ovarian cancer": ["C56"],
    "cervical cancer": ["C53"],
    "bladder cancer": ["C67"],
    "kidney cancer": ["C64"],
    "renal cell carcinoma": ["C64"],
    "melanoma": ["C43"],
    "liver cancer": ["C22"],
    "thyroid cancer": ["C73"],
    "esophageal cancer": ["C15"],
    "head and neck cancer": ["C76.0"],
    "leukemia": ["C91", "C92", "C93", "C94", "C95"],
    "lymphoma": ["C81", "C82", "C83", "C84", "C85", "C86"],
    "hodgkin lymphoma": ["C81"],
    "non-hodgkin lymphoma": ["C82", "C83", "C84", "C85"],
    "sepsis": ["A41"],
    "septic shock": ["R65.21"],
    "pneumonia": ["J12", "J13", "J14", "J15", "J16", "J17", "J18"],
    "coronary artery disease": ["I25.1"],
    "coronary heart disease": ["I25"],
    "cad": ["I25.1"],
    "ischemic heart disease": ["I20", "I21", "I22", "I23", "I24", "I25"],
    "copd": ["J44"],
    "chronic obstructive pulmonary disease": ["J44"],
    "liver failure": ["K72"],
    "hepatic failure": ["K72"],
    "renal failure": ["N17", "N18", "N19"],
    "kidney failure": ["N17", "N18", "N19"],
    "acute kidney injury": ["N17"],
    "aki": ["N17"],
    "chronic kidney disease": ["N18"],
    "ckd": ["N18"],
    "end stage renal disease": ["N18.6"],
    "end-stage renal disease": ["N18.6"],
    "esrd": ["N18.6"],
    "dyslipidemia": ["E78"],
    "hypercholesterolemia": ["E78.0"],
    "major depressive disorder": ["F32", "F33"],
    "major depression": ["F32", "F33"],
    "cerebral hemorrhage": ["I61"],
    "intracerebral hemorrhage": ["I61"],
    "subarachnoid hemorrhage": ["I60"],
    "ischemic stroke": ["I63"],
    "transient ischemic attack": ["G45"],
    "tia": ["G45"],
    "chf": ["I50"],
    "congestive heart failure": ["I50"],
    "mi": ["I21"],
    "dementia": ["F01", "F02", "F03"],
    "adhd": ["F90"],
    "covid-19": ["U07.1"],
    "covid": ["U07.1"],
    "sars-cov-2 infection": ["U07.1"],
    "influenza": ["J09", "J10", "J11"],
    "osteoarthritis": ["M15", "M16", "M17", "M18", "M19"],
    "rheumatoid arthritis": ["M05", "M06"],
    "lupus": ["M32"],
    "systemic lupus erythematosus": ["M32"],
    "sle": ["M32"],
    "inflammatory bowel disease": ["K50", "K51"],
    "ibd": ["K50", "K51"],
    "gerd": ["K21"],
    "anemia": [
        "D50",
        "D51",
        "D52",
        "D53",
        "D55",
        "D56",
        "D57",
        "D58",
        "D59",
        "D60",
        "D61",
        "D62",
        "D63",
        "D64",
    ],
    "osteoporosis": ["M80", "M81"],
    "seizure disorder": ["G40"],
    "seizure": ["G40", "R56"],
    "seizures": ["G40", "R56"],
    "stroke": ["I60", "I61", "I63"],
    "liver disease": ["K70-K77"],
    "chronic liver disease": ["K70-K77"],
    "hepatic disease": ["K70-K77"],
    "kidney disease": ["N00-N29"],
    "renal disease": ["N00-N29"],
    "renal insufficiency": ["N17-N19"],
    "renal impairment": ["N17-N19"],
    "cardiovascular disease": ["I00-I99"],
    "cardiovascular diseases": ["I00-I99"],
    "heart disease": ["I05-I09", "I11", "I20-I52"],
    "cardiac disease": ["I05-I09", "I11", "I20-I52"],
    "structural heart disease": ["I05-I09", "I20-I52", "Q20-Q24"],
    "congenital heart disease": ["Q20-Q24"],
    "peripheral vascular disease": ["I73"],
    "peripheral arterial disease": ["I73", "I70.2"],
    "peripheral artery disease": ["I73", "I70.2"],
    "thyroid disease": ["E00-E07"],
    "substance abuse": ["F10-F19"],
    "substance use disorder": ["F10-F19"],
    "drug abuse": ["F11-F19"],
    "alcohol abuse": ["F10"],
    "alcohol use disorder": ["F10"],
    "alcoholism": ["F10"],
    "diarrhea": ["R19.7", "K59.1", "A09"],
    "neuropathy": ["G60-G64"],
    "peripheral neuropathy": ["G60-G64"],
    "depression": ["F32", "F33"],
    "psychosis": ["F20-F29"],
    "psychotic disorder": ["F20-F29"],
    "delirium": ["F05"],
    "anxiety disorder": ["F41"],
    "preeclampsia": ["O14"],
    "pre-eclampsia": ["O14"],
    "eclampsia": ["O15"],
    "obese": ["E66"],
    "cognitive impairment": ["G31.84", "F06.7"],
    "mild cognitive impairment": ["G31.84", "F06.7"],
    "immunodeficiency": ["D80-D84"],
    "hepatitis b": ["B16", "B18.0", "B18.1", "B19.1"],
    "hepatitis c": ["B17.1", "B18.2", "B19.2"],
    "viral hepatitis": ["B15-B19"],
    "sexually transmitted disease": ["A50-A64"],
    "sexually transmitted infection": ["A50-A64"],
    "mental illness": ["F01-F99"],
    "mental disorder": ["F01-F99"],
    "psychiatric disorder": ["F01-F99"],
    "psychiatric illness": ["F01-F99"],
    "psychiatric disease": ["F01-F99"],
    "autoimmune disease": ["M30-M36"],
    "amd": ["H35.3"],
    "age-related macular degeneration": ["H35.3"],
    "aml": ["C92.0"],
    "acute myeloid leukemia": ["C92.0"],
    "afl": ["I48"],
    "atrial flutter": ["I48"],
    "af": ["I48"],
    "osa": ["G47.33"],
    "obstructive sleep apnea": ["G47.33"],
    "t2d": ["E11"],
    "t1d": ["E10"],
    "mci": ["G31.84", "F06.7"],
    "dvt": ["I82.4", "I82.5"],
    "deep vein thrombosis": ["I82.4", "I82.5"],
    "nsclc": ["C34"],
    "non-small cell lung cancer": ["C34"],
    "hcc": ["C22.0"],
    "crc": ["C18", "C19", "C20"],
    "rcc": ["C64"],
    "ibs": ["K58"],
    "irritable bowel syndrome": ["K58"],
    "uti": ["N39.0"],
    "urinary tract infection": ["N39.0"],
    "chd": ["I25"],
    "hf": ["I50"],
    "ptsd": ["F43.1"],
    "ocd": ["F42"],
    "hcv": ["B17.1", "B18.2", "B19.2"],
    "hbv": ["B16", "B18.0", "B18.1", "B19.1"],
    "hepatitis b virus infection": ["B16", "B18.0", "B18.1", "B19.1"],
    "hepatitis c virus infection": ["B17.1", "B18.2", "B19.2"],
    "hernia": ["K40-K46"],
    "gout": ["M10", "M1A"],
    "cataract": ["H25", "H26", "H28"],
    "anxiety": ["F41"],
    "metastasis": ["C77-C79"],
    "metastases": ["C77-C79"],
    "metastatic disease": ["C77-C79"],
    "cerebrovascular disease": ["I60-I69"],
    "lung disease": ["J40-J99"],
    "pulmonary disease": ["J40-J99"],
    "chronic lung disease": ["J40-J99"],
    "respiratory disease": ["J00-J99"],
    "neurological disease": ["G00-G99"],
    "neurological disorder": ["G00-G99"],
    "neurologic disease": ["G00-G99"],
    "neurologic disorder": ["G00-G99"],
    "gastrointestinal disease": ["K20-K95"],
    "gastrointestinal disorder": ["K20-K95"],
    "endocrine disease": ["E00-E89"],
    "endocrine disorder": ["E00-E89"],
    "eye disease": ["H00-H59"],
    "skin disease": ["L00-L99"],
    "infectious disease": ["A00-B99"],
    "heart attack": ["I21"],
    "intellectual disability": ["F70-F79"],
    "bleeding disorder": ["D65-D69"],
    "coagulopathy": ["D65-D69"],
    "hyponatremia": ["E87.1"],
    "hypokalemia": ["E87.6"],
    "hyperkalemia": ["E87.5"],
    "carotid stenosis": ["I65.2"],
    "carotid artery stenosis": ["I65.2"],
    "interstitial lung disease": ["J84"],
    "glioblastoma": ["C71"],
    "brain tumor": ["C71", "D33", "D43"],
    "thromboembolic disease": ["I26", "I74", "I82"],
    "venous thromboembolism": ["I26", "I82"],
    "vte": ["I26", "I82"],
    "pulmonary embolism": ["I26"],
    "heart valve disease": ["I05-I09", "I34-I39"],
    "mdd": ["F32", "F33"],
    "uc": ["K51"],
    "caries": ["K02"],
    "deafness": ["H90", "H91"],
    "tumor": ["C00-D49"],
    "tumour": ["C00-D49"],
    "neoplasm": ["C00-D49"],
    "infection": ["A00-B99", "J00-J22", "L00-L08", "N39.0"],
    "diabetic": ["E08-E13"],
    "hypertensive": ["I10-I16"],
    "arthritis": ["M00-M19"],
    "immunocompromised": ["D80-D84"],
    "immunosuppressed": ["D80-D84"],
    "immunosuppression": ["D80-D84"],
    "renal dysfunction": ["N17-N19"],
    "kidney dysfunction": ["N17-N19"],
    "liver dysfunction": ["K70-K77"],
    "hepatic dysfunction": ["K70-K77"],
    "liver insufficiency": ["K72"],
    "hepatic insufficiency": ["K72"],
    "psychological disorder": ["F01-F99"],
    "psychiatric condition": ["F01-F99"],
    "mental condition": ["F01-F99"],
    "developmental disability": ["F80-F89"],
    "developmental delay": ["F80-F89"],
    "hearing impairment": ["H90", "H91"],
    "metabolic disease": ["E70-E88"],
    "metabolic disorder": ["E70-E88"],
    "congenital malformation": ["Q00-Q99"],
    "congenital anomaly": ["Q00-Q99"],
    "congenital anomalies": ["Q00-Q99"],
    "drug addiction": ["F11-F19"],
    "drug dependence": ["F11-F19"],
    "hepatitis": ["B15-B19", "K70.1", "K71.6", "K73", "K75.2", "K75.4"],
    "oscc": ["C00-C06"],
    "oral squamous cell carcinoma": ["C00-C06"],
    "oral cancer": ["C00-C06"],
    "hnscc": ["C00-C14", "C30-C32"],
    "head and neck squamous cell carcinoma": ["C00-C14", "C30-C32"],
    "postmenopausal": ["N95.1", "Z78.0"],
    "hypersensitivity": ["Z88", "T78.4", "T88.7"],
    "malformation": ["Q00-Q99"],
    "herpes": ["B00"],
    "herpes infection": ["B00"],
    "herpes simplex": ["B00"],
    "active infection": ["A00-B99", "J00-J22", "L00-L08", "N39.0"],
    "systemic infection": ["A00-B99", "J00-J22", "L00-L08", "N39.0"],
    "kawasaki disease": ["M30.3"],
    "insomnia": ["G47.0", "F51.0"],
    "diverticulitis": ["K57"],
    "arrhythmia": ["I47-I49"],
    "cardiac arrhythmia": ["I47-I49"],
    "ventricular arrhythmia": ["I47.2", "I49.0"],
    "gvhd": ["D89.81"],
    "graft versus host disease": ["D89.81"],
    "pheochromocytoma": ["D35.0", "C74.1"],
    "aortic dissection": ["I71.0"],
    "spinal cord compression": ["G95.2"],
    "angioedema": ["T78.3"],
    "intraventricular hemorrhage": ["I61.5", "P52"],
    "diabetic ketoacidosis": ["E10.1", "E11.1"],
    "burns": ["T20-T32"],
    "suicidal ideation": ["R45.851"],
    "glioma": ["C71"],
    "placenta previa": ["O44"],
    "strabismus": ["H49", "H50"],
    "malabsorption": ["K90"],
    "tb": ["A15", "A17", "A18", "A19"],
    "pah": ["I27.0", "I27.2"],
    "pulmonary arterial hypertension": ["I27.0", "I27.2"],
    "pkd": ["Q61.2", "Q61.3"],
    "polycystic kidney disease": ["Q61.2", "Q61.3"],
    "pku": ["E70.0"],
    "phenylketonuria": ["E70.0"],
    "cf": ["E84"],
    "oa": ["M15-M19"],
    "pda": ["Q25.0"],
    "patent ductus arteriosus": ["Q25.0"],
    "pfo": ["Q21.1"],
    "patent foramen ovale": ["Q21.1"],
    "bowel obstruction": ["K56"],
    "intestinal obstruction": ["K56"],
    "nephropathy": ["N00-N29"],
    "hearing loss": ["H90", "H91"],
    "fracture": [
        "S02",
        "S12",
        "S22",
        "S32",
        "S42",
        "S52",
        "S62",
        "S72",
        "S82",
        "S92",
        "M80",
        "M84.3",
        "M84.4",
    ],
    "valvular heart disease": ["I05-I09", "I34-I39"],
    "connective tissue disease": ["M30-M36"],
    "chronic renal failure": ["N18"],
    "chronic renal insufficiency": ["N18"],
    "t2dm": ["E11"],
    "t1dm": ["E10"],
    "diabetes mellitus type 2": ["E11"],
    "diabetes mellitus type 1": ["E10"],
}
CURATED["anaemia"] = CURATED["anemia"]  # the British spelling: the same codes


#: Leading words a criterion often leaves out: 'nonrheumatic aortic stenosis' is named 'aortic stenosis'.
QUALIFIERS = re.compile(r"^(?:nonrheumatic|non-rheumatic|acquired|idiopathic|primary|essential|benign)\s+")


def _clean(d: str) -> str | None:
    d = re.sub(r",?\s*\bunspecified\b|\bnos\b", "", d)
    d = re.sub(r"[^a-z0-9' -]+", " ", d)
    d = " ".join(d.replace("'s", "").split())
    if not d or SKIP_WORDS.search(d):
        return None
    words = d.split()
    if len(words) > MAX_WORDS or len(d) < 4:
        return None
    if len(words) == 1 and (d in COMMON or len(d) < 5):
        return None
    return d


def _variants(desc: str) -> set[str]:
    """A title's names: without its parenthetical parts, with their words kept ('aortic (valve)
    stenosis' -> 'aortic stenosis', 'aortic valve stenosis'), without a leading qualifier."""
    d = desc.lower().replace("’", "'")
    forms = {
        re.sub(r"\s*\[[^\]]*\]|\s*\([^)]*\)", "", d),
        re.sub(r"\s*\[[^\]]*\]", "", d).replace("(", " ").replace(")", " "),
    }
    forms |= {QUALIFIERS.sub("", f) for f in forms}
    return {c for f in forms if (c := _clean(f)) is not None}


def _read(xml: bytes) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Names (titles first, then inclusion terms) -> codes, and every code's title."""
    root = ET.fromstring(xml)  # noqa: S314
    names: dict[str, set[str]] = defaultdict(set)  # from the codes' own titles
    included: dict[str, set[str]] = defaultdict(set)  # from their inclusion terms
    display: dict[str, str] = {}
    for diag in root.iter("diag"):
        code = diag.findtext("name") or ""
        if not code or len(code.replace(".", "")) > MAX_CODE:
            continue
        display[code] = diag.findtext("desc") or ""  # every code may be curated
        if code.startswith(SKIP_CHAPTERS):
            continue
        for v in _variants(display[code]):
            names[v].add(code)
        for term in diag.findall("inclusionTerm/note"):
            for v in _variants(term.text or ""):
                included[v].add(code)
    for phrase, codes in included.items():
        if phrase not in names:  # a title wins over an inclusion term
            names[phrase] = codes
    return names, display


def _code(codes: set[str], display: dict[str, str]) -> str | None:
    """The one code a name stands for: the common category of its codes, or ``None``."""
    stems = [c.replace(".", "") for c in codes]
    prefix = stems[0]
    for s in stems[1:]:
        while not s.startswith(prefix):
            prefix = prefix[:-1]
    if len(prefix) < 3:
        return None  # names codes of different categories: ambiguous
    code = prefix if len(prefix) == 3 else prefix[:3] + "." + prefix[3:]
    if "unspecified" in display.get(code, "").lower():
        code = code[:3]  # 'Epilepsy, unspecified' names epilepsy: its category (G40), not G40.9
    if RESIDUAL.search(display.get(code, "")):
        return None  # 'liver disease NOS' under 'Other diseases of liver': the name is wider than the code
    return code if code in display else None


def _curated(display: dict[str, str]) -> dict[str, list[str]]:
    """The curated names with their codes and ranges as written (``K70-K77``: a range of
    three-character categories, matched as such), each end of each range checked to exist."""
    curated: dict[str, list[str]] = {}
    for phrase, written in CURATED.items():
        ends = [end for w in written for end in w.split("-")]
        missing = [c for c in ends if c not in display]
        if missing or not written:
            raise SystemExit(f"curated name {phrase!r}: {missing or written} not in the tabular list")
        curated[phrase] = list(written)
    return curated


def build(xml: bytes) -> dict:
    names, display = _read(xml)
    curated = _curated(display)
    phrases = {
        phrase: code
        for phrase, codes in sorted(names.items())
        if phrase not in curated and (code := _code(codes, display)) is not None
    }
    used = set(phrases.values()) | {end for codes in curated.values() for c in codes for end in c.split("-")}
    return {
        "_about": {
            "what": "Condition names of ICD-10-CM (lower case, without parenthetical parts and "
            "'unspecified') -> the ICD-10-CM code they name (when a name belongs to several codes: "
            "their common category; names of codes of different categories are left out; a name whose "
            "code is an 'unspecified' one names the whole category: epilepsy -> G40, not G40.9).",
            "source": "CMS/NCHS ICD-10-CM tabular list April 1, 2026 (public domain), as shipped by "
            "the simple-icd-10-cm package 1.5.0 (MIT); built by scripts/build_icd10cm.py.",
            "left_out": "chapters O, S, T, U, V-Z; names with residual or combining words (other, "
            "unspecified, with, without, due to, and, or...); names of more than "
            f"{MAX_WORDS} words; one-word names that are too common in criteria text.",
            "curated": "common names criteria use that no ICD-10-CM title states (hypertension, "
            "breast cancer, COPD...), with the categories they cover: chosen by hand in "
            "scripts/build_icd10cm.py, each code -- each end of a range such as K70-K77, which "
            "stands for the three-character categories between them -- checked to exist in the "
            "tabular list (its CMS "
            "title is in 'display').",
        },
        "names": phrases,
        "curated": curated,
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
