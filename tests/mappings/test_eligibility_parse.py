"""Criteria text -> inclusion/exclusion items: the seed in three forms, the shared records, 20+ layouts,
and properties over arbitrary text (never raises, item texts come from the input)."""

from __future__ import annotations

import json
import textwrap
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.eligibility import CriteriaList, Kind, parse_criteria, unescape_markdown
from mappings.sources import read_protocol
from tests.conftest import CTGOV, SEED

SEED_INCLUSION = [
    "Age 18-69 years;",
    "Decompensated liver cirrhosis (manifestations including gastrointestinal bleeding, hepatic "
    "encephalopathy, and ascites, based on previously stable cirrhosis);",
    "Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months (chronic "
    "hepatitis B patients);",
    "Written consent.",
]
SEED_EXCLUSION = [
    "Hepatocellular carcinoma or other malignancies;",
    "Liver cirrhosis caused by other reasons, such as autoimmune diseases, alcocal, drugs and so on;",
    "Pregnant women;",
    "The presence of other vital organ severe dysfunction;",
    "Participate in other studies;",
    "Lack of a supportive family;",
    "Refusal to sign the informed consent form.",
]


def shape(cl: CriteriaList) -> list[tuple]:
    """Nested (kind, marker, text, children) tuples for compact comparisons."""

    def one(item):
        return (item.kind.value[:3], item.marker, item.text, [one(c) for c in item.children])

    return [one(i) for i in cl.items()]


def flat(cl: CriteriaList) -> tuple[list[str], list[str]]:
    return cl.texts(Kind.INCLUSION), cl.texts(Kind.EXCLUSION)


# --------------------------------------------------------------------------------------------------
# The seed, in its three forms
# --------------------------------------------------------------------------------------------------


def seed_criteria() -> str:
    criteria = read_protocol(SEED.read_bytes()).protocol.eligibility.criteria
    assert criteria is not None
    return criteria


def test_seed_page_text_items_verbatim():
    cl = parse_criteria(seed_criteria())
    assert flat(cl) == (SEED_INCLUSION, SEED_EXCLUSION)
    assert [i.marker for i in cl.inclusion] == ["1.", "2.", "3.", "4."]
    assert [i.position for i in cl.exclusion] == [1, 2, 3, 4, 5, 6, 7]
    assert all(i.kind is Kind.EXCLUSION for i in cl.exclusion)
    assert cl.has_headings and cl.headings == ("Inclusion Criteria:", "Exclusion Criteria:")
    assert cl.issues == ()


def v2_markdown(inclusion: list[str], exclusion: list[str], bullet: str | None = None) -> str:
    """How API v2 delivers a criteria text: Markdown, numbered (or bulleted) lists, no wrapping."""

    def block(items):
        return "\n".join(f"{bullet or f'{n}.'} {t}" for n, t in enumerate(items, 1))

    return f"Inclusion Criteria:\n\n{block(inclusion)}\n\nExclusion Criteria:\n\n{block(exclusion)}"


def legacy_textblock(inclusion: list[str], exclusion: list[str]) -> str:
    """How the legacy XML printed the same list: 8-space textblock, right-aligned numbers, lines
    hard-wrapped at 90 columns with a hanging indent, a blank line between items."""

    def block(items):
        out = []
        for n, t in enumerate(items, 1):
            first = f"{n:>11}. "
            out.append(textwrap.fill(t, width=90, initial_indent=first, subsequent_indent=" " * len(first)))
        return "\n\n".join(out)

    return (
        f"\n        Inclusion Criteria:\n\n{block(inclusion)}\n\n        Exclusion Criteria:\n\n"
        f"{block(exclusion)}\n      "
    )


def test_seed_v2_json_form_gives_the_same_items():
    data = json.loads((CTGOV / "NCT00763412.json").read_text("utf-8"))
    data["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] = v2_markdown(
        SEED_INCLUSION, SEED_EXCLUSION
    )
    criteria = read_protocol(json.dumps(data)).protocol.eligibility.criteria
    assert flat(parse_criteria(criteria)) == (SEED_INCLUSION, SEED_EXCLUSION)


def test_seed_legacy_xml_form_gives_the_same_items():
    xml = (CTGOV / "NCT00734539.xml").read_text("utf-8")
    start = xml.index("<textblock>", xml.index("<criteria>")) + len("<textblock>")
    end = xml.index("</textblock>", start)
    block = legacy_textblock(SEED_INCLUSION, SEED_EXCLUSION)
    assert any(len(line) > 80 for line in block.splitlines())  # the long items really are wrapped
    assert sum(1 for line in block.splitlines() if line.startswith(" " * 13) and line.strip()) >= 2
    criteria = read_protocol(xml[:start] + escape(block) + xml[end:]).protocol.eligibility.criteria
    cl = parse_criteria(criteria)
    assert flat(cl) == (SEED_INCLUSION, SEED_EXCLUSION)
    assert [i.marker for i in cl.inclusion] == ["1.", "2.", "3.", "4."]


def test_seed_bulleted_v2_and_ten_plus_items_right_aligned():
    inc = [f"criterion number {n} with some words" for n in range(1, 13)]
    assert flat(parse_criteria(v2_markdown(inc, SEED_EXCLUSION, bullet="*"))) == (inc, SEED_EXCLUSION)
    assert flat(parse_criteria(textwrap.dedent(legacy_textblock(inc, SEED_EXCLUSION)))) == (
        inc,
        SEED_EXCLUSION,
    )


# --------------------------------------------------------------------------------------------------
# The shared records
# --------------------------------------------------------------------------------------------------

RECORDS = {
    "NCT00763412.json": (
        5,
        6,
        "Male or females 12 -24 years old",
        "Patients taking medications that affect glucose metabolism or contraindicated with repaglinide",
    ),
    "NCT00973089.json": (5, 3, "Healthy children", "Clinical or radiographic signs of pathology"),
    "NCT03475563.json": (5, 7, "Age over 18 years.", "Cardiogenic shock."),
    "NCT00734539.xml": (
        4,
        8,
        "Informed consent from the legally authorized representative.",
        "triplet or higher multiple gestations",
    ),
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_shared_records_parse_into_sensible_lists(name):
    n_inc, n_exc, first, last = RECORDS[name]
    cl = parse_criteria(read_protocol((CTGOV / name).read_bytes()).protocol.eligibility.criteria)
    assert (len(cl.inclusion), len(cl.exclusion)) == (n_inc, n_exc)
    assert cl.inclusion[0].text == first and cl.exclusion[-1].text == last
    assert cl.has_headings and cl.issues == () and cl.notes == ()
    assert all(not i.children for i in cl.walk())


def test_shared_xml_record_joins_the_wrapped_line():
    cl = parse_criteria(read_protocol((CTGOV / "NCT00734539.xml").read_bytes()).protocol.eligibility.criteria)
    assert cl.exclusion[2].text == (
        "medical condition, in the opinion of the Investigator, may create an unacceptable additional risk"
    )
    assert cl.exclusion[2].marker == "-" and cl.exclusion[2].line == 17


def test_shared_v2_record_undoes_markdown_escapes():
    cl = parse_criteria(
        read_protocol((CTGOV / "NCT00763412.json").read_bytes()).protocol.eligibility.criteria
    )
    assert (
        "fasting blood glucose <126 mg/dl and 2 hour: 140 - 199 mg/dl or >200 mg/dl." in cl.inclusion[2].text
    )
    raw = parse_criteria(r"Inclusion Criteria:" "\n" r"* glucose \<126", markdown=False)
    assert raw.inclusion[0].text == r"glucose \<126"


# --------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------

INC, EXC = "inc", "exc"

LAYOUTS: dict[str, tuple[str, list[tuple]]] = {
    "v2 nested sub-bullets": (
        "Inclusion Criteria:\n\n* Adequate organ function:\n  * ANC >= 1.5 x10^9/L\n"
        "  * Platelets >= 100 x10^9/L\n"
        "* Age >= 18\n\nExclusion Criteria:\n\n* Pregnancy",
        [
            (
                INC,
                "*",
                "Adequate organ function:",
                [(INC, "*", "ANC >= 1.5 x10^9/L", []), (INC, "*", "Platelets >= 100 x10^9/L", [])],
            ),
            (INC, "*", "Age >= 18", []),
            (EXC, "*", "Pregnancy", []),
        ],
    ),
    "key inclusion criteria, no colon": (
        "Key inclusion criteria\n1. Age 18-65\n2. HBsAg positive\nKey exclusion criteria\n1. HCC",
        [(INC, "1.", "Age 18-65", []), (INC, "2.", "HBsAg positive", []), (EXC, "1.", "HCC", [])],
    ),
    "upper-case INCLUSION:/EXCLUSION:": (
        "INCLUSION:\n- adults\n- cirrhosis\nEXCLUSION:\n- HIV",
        [(INC, "-", "adults", []), (INC, "-", "cirrhosis", []), (EXC, "-", "HIV", [])],
    ),
    "patients are excluded if": (
        "Patients are eligible if:\n- age > 18\nPatients are excluded if\n- pregnant\n- HIV positive",
        [(INC, "-", "age > 18", []), (EXC, "-", "pregnant", []), (EXC, "-", "HIV positive", [])],
    ),
    "only exclusion": (
        "Exclusion Criteria:\n\n* Pregnancy\n* HIV",
        [(EXC, "*", "Pregnancy", []), (EXC, "*", "HIV", [])],
    ),
    "run-on numbered line": (
        "Inclusion criteria: 1. Age 18-65 years; 2. HBsAg positive; 3. Written consent. "
        "Exclusion criteria: 1) pregnancy 2) HIV",
        [
            (INC, "1.", "Age 18-65 years;", []),
            (INC, "2.", "HBsAg positive;", []),
            (INC, "3.", "Written consent.", []),
            (EXC, "1)", "pregnancy", []),
            (EXC, "2)", "HIV", []),
        ],
    ),
    "inclusion and exclusion on one line, unmarked": (
        "Inclusion Criteria: age 18 to 65 years old. Exclusion Criteria: pregnancy.",
        [(INC, "", "age 18 to 65 years old.", []), (EXC, "", "pregnancy.", [])],
    ),
    "roman numerals": (
        "Inclusion:\ni. age 18 or more\nii. cirrhosis\niii. consent\niv. HBsAg positive\nv. ALT < 80 U/L\n"
        "Exclusion:\ni. HCC\nii. pregnant",
        [
            (INC, "i.", "age 18 or more", []),
            (INC, "ii.", "cirrhosis", []),
            (INC, "iii.", "consent", []),
            (INC, "iv.", "HBsAg positive", []),
            (INC, "v.", "ALT < 80 U/L", []),
            (EXC, "i.", "HCC", []),
            (EXC, "ii.", "pregnant", []),
        ],
    ),
    "letters nested under numbers without indentation": (
        "Inclusion Criteria:\n1. Adequate labs\na. ALT < 2x ULN\nb. TBIL < 3 mg/dL\n2. Consent\n"
        "Exclusion Criteria:\n1. HIV",
        [
            (
                INC,
                "1.",
                "Adequate labs",
                [(INC, "a.", "ALT < 2x ULN", []), (INC, "b.", "TBIL < 3 mg/dL", [])],
            ),
            (INC, "2.", "Consent", []),
            (EXC, "1.", "HIV", []),
        ],
    ),
    "parenthesised numbers and letters": (
        "Inclusion criteria:\n(1) age\n(2) disease\n  (a) sub a\n  (b) sub b\n(3) consent",
        [
            (INC, "(1)", "age", []),
            (INC, "(2)", "disease", [(INC, "(a)", "sub a", []), (INC, "(b)", "sub b", [])]),
            (INC, "(3)", "consent", []),
        ],
    ),
    "legacy XML wrapped lines and a nested sub-bullet": (
        "Inclusion Criteria:\n\n  -  medical condition, in the opinion of the Investigator, may create an\n"
        "     unacceptable additional risk\n\n  -  second item\n\n"
        "       -  sub item one that is long and wraps onto\n"
        "          the next line\n\nExclusion Criteria:\n\n  -  x",
        [
            (
                INC,
                "-",
                "medical condition, in the opinion of the Investigator, may create an unacceptable "
                "additional risk",
                [],
            ),
            (
                INC,
                "-",
                "second item",
                [(INC, "-", "sub item one that is long and wraps onto the next line", [])],
            ),
            (EXC, "-", "x", []),
        ],
    ),
    "no headings at all": (
        "Age over 18\nDiagnosed with HCC\nWilling to sign consent",
        [
            (INC, "", "Age over 18", []),
            (INC, "", "Diagnosed with HCC", []),
            (INC, "", "Willing to sign consent", []),
        ],
    ),
    "mixed markers": (
        "Inclusion Criteria:\n1. Age > 18\n- sub bullet\n2. Cirrhosis\n* other bullet\n+ plus bullet\n"
        "Exclusion Criteria:\n• HCC\n· Pregnancy\n- HIV",
        [
            (INC, "1.", "Age > 18", [(INC, "-", "sub bullet", [])]),
            (INC, "2.", "Cirrhosis", [(INC, "*", "other bullet", []), (INC, "+", "plus bullet", [])]),
            (EXC, "•", "HCC", []),
            (EXC, "·", "Pregnancy", []),
            (EXC, "-", "HIV", []),
        ],
    ),
    "markdown bold headings": (
        "**Inclusion Criteria:**\n\n* a\n\n**Exclusion Criteria:**\n\n* b",
        [(INC, "*", "a", []), (EXC, "*", "b", [])],
    ),
    "lead-in lines": (
        "Inclusion Criteria:\nPatients must fulfil all of the following:\n1. A\n2. B\nExclusion Criteria:\n"
        "Any of the following:\n1. C",
        [(INC, "1.", "A", []), (INC, "2.", "B", []), (EXC, "1.", "C", [])],
    ),
    "right-aligned numbers past nine": (
        "Inclusion Criteria:\n\n  9. nine\n\n 10. ten\n     wrapped ten\n\n 11. eleven",
        [(INC, "9.", "nine", []), (INC, "10.", "ten wrapped ten", []), (INC, "11.", "eleven", [])],
    ),
    "multi-level numbers and a wrapped decimal": (
        "Inclusion:\n1. Main\n1.1 sub one\n1.2 sub two\n"
        "2. Second criterion whose threshold is\n2.5 mg/dL or less",
        [
            (INC, "1.", "Main", [(INC, "1.1", "sub one", []), (INC, "1.2", "sub two", [])]),
            (INC, "2.", "Second criterion whose threshold is 2.5 mg/dL or less", []),
        ],
    ),
    "inclusion/exclusion neutral heading": (
        "Inclusion/Exclusion Criteria:\n\nInclusion:\n- a\nExclusion:\n- b",
        [(INC, "-", "a", []), (EXC, "-", "b", [])],
    ),
    "dashes and en dashes": (
        "Inclusion Criteria:\n-- double dash item\n– en dash item\n— em dash item\nExclusion Criteria:\n- x",
        [
            (INC, "--", "double dash item", []),
            (INC, "–", "en dash item", []),
            (INC, "—", "em dash item", []),
            (EXC, "-", "x", []),
        ],
    ),
    "numbers with closing parenthesis and dash": (
        "Inclusion Criteria:\n1) first\n2) second\nExclusion Criteria:\n1- third\n2- fourth",
        [
            (INC, "1)", "first", []),
            (INC, "2)", "second", []),
            (EXC, "1-", "third", []),
            (EXC, "2-", "fourth", []),
        ],
    ),
    "letters in sequence only: C. difficile stays text": (
        "Exclusion Criteria:\n- active infection with\nC. difficile or other enteric pathogens",
        [(EXC, "-", "active infection with C. difficile or other enteric pathogens", [])],
    ),
    "i. after h. is a letter": (
        "Inclusion:\n" + "\n".join(f"{ch}. item {ch}" for ch in "abcdefghij"),
        [(INC, f"{ch}.", f"item {ch}", []) for ch in "abcdefghij"],
    ),
    "unmarked paragraphs with hard wraps": (
        "Inclusion Criteria:\n\nPatients with compensated or decompensated cirrhosis confirmed by biopsy or\n"
        "imaging within the last year\n\nSerum albumin above 2.8 g/dL\n\n"
        "Exclusion Criteria:\n\nActive variceal bleeding",
        [
            (
                INC,
                "",
                "Patients with compensated or decompensated cirrhosis confirmed by biopsy or imaging "
                "within the last year",
                [],
            ),
            (INC, "", "Serum albumin above 2.8 g/dL", []),
            (EXC, "", "Active variceal bleeding", []),
        ],
    ),
    "marker alone on its line": (
        "Inclusion Criteria:\n1.\nAge 18 or more\n2.\nCirrhosis",
        [(INC, "1.", "Age 18 or more", []), (INC, "2.", "Cirrhosis", [])],
    ),
    "inline bullets": (
        "Exclusion criteria: • HIV • HCC • pregnancy",
        [(EXC, "•", "HIV", []), (EXC, "•", "HCC", []), (EXC, "•", "pregnancy", [])],
    ),
    "tabs, CRLF and trailing spaces": (
        "Inclusion Criteria:\r\n\r\n\t*\tAge 18 or more   \r\n\t*\tCirrhosis\r\n\r\n"
        "Exclusion Criteria:\r\n\t*\tHCC",
        [(INC, "*", "Age 18 or more", []), (INC, "*", "Cirrhosis", []), (EXC, "*", "HCC", [])],
    ),
    "rule lines between sections": (
        "Inclusion Criteria:\n* a\n---\nExclusion Criteria:\n* b",
        [(INC, "*", "a", []), (EXC, "*", "b", [])],
    ),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layouts(name):
    text, expected = LAYOUTS[name]
    assert shape(parse_criteria(text)) == expected


def test_layout_count():
    assert len(LAYOUTS) >= 20


def test_no_headings_is_flagged():
    cl = parse_criteria(LAYOUTS["no headings at all"][0])
    assert not cl.has_headings
    assert [i.severity for i in cl.issues] == ["warning"]
    assert "all 3 items taken as inclusion" in cl.issues[0].message


def test_items_before_first_heading_are_flagged():
    cl = parse_criteria("- stray item\nExclusion Criteria:\n- HIV")
    assert flat(cl) == (["stray item"], ["HIV"])
    assert "before the first heading" in cl.issues[0].message


def test_lead_in_is_kept_as_note():
    cl = parse_criteria(LAYOUTS["lead-in lines"][0])
    assert [(n.text, n.kind) for n in cl.notes] == [("Any of the following:", Kind.EXCLUSION)]
    assert "Patients must fulfil all of the following:" in cl.headings


@pytest.mark.parametrize("text", [None, "", "   \n\t\n", "---\n***"])
def test_empty(text):
    cl = parse_criteria(text)
    assert cl.items() == () and cl.issues == ()


def test_headings_only_report_no_items():
    cl = parse_criteria("Inclusion Criteria:\n\nExclusion Criteria:\n")
    assert cl.items() == () and cl.issues[0].message == "no criteria items found"


def test_positions_lines_and_walk():
    cl = parse_criteria(LAYOUTS["v2 nested sub-bullets"][0])
    parent = cl.inclusion[0]
    assert [c.position for c in parent.children] == [1, 2]
    assert [i.line for i in cl.walk()] == [3, 4, 5, 6, 10]
    assert len(list(cl.walk())) == 5


def test_deep_nesting_is_flattened_not_recursed():
    text = "Inclusion:\n" + "\n".join(" " * (2 * d) + f"- level {d}" for d in range(200))
    cl = parse_criteria(text)
    assert len(list(cl.walk())) == 200


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


def _norm(s: str) -> str:
    return " ".join(s.split())


def _check_items_come_from(text: str, cl: CriteriaList, markdown: bool = True) -> None:
    source = _norm(unescape_markdown(text) if markdown else text)
    for item in cl.walk():
        assert item.text == item.text.strip()
        assert _norm(item.text) in source, (item.text, text)
    for note in cl.notes:
        assert _norm(note.text) in source


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_property_arbitrary_text_never_raises(text):
    cl = parse_criteria(text)
    _check_items_come_from(text, cl)
    _check_items_come_from(text, parse_criteria(text, markdown=False), markdown=False)


_LINE = st.tuples(
    st.sampled_from(["", " ", "  ", "    ", "\t", "         "]),
    st.sampled_from(
        [
            "",
            "* ",
            "- ",
            "-- ",
            "• ",
            "·",
            "+ ",
            "1. ",
            "2. ",
            "10. ",
            "1) ",
            "(1) ",
            "(2) ",
            "a. ",
            "b. ",
            "(a) ",
            "i. ",
            "ii. ",
            "I. ",
            "A. ",
            "1.1 ",
            "1.2 ",
            "2.5 ",
            "\\* ",
            "**",
        ]
    ),
    st.sampled_from(
        [
            "",
            "Inclusion Criteria:",
            "Exclusion Criteria:",
            "Key inclusion criteria",
            "INCLUSION:",
            "Patients are excluded if",
            "Inclusion/Exclusion Criteria:",
            "Age 18-69 years;",
            "HBsAg \\< 5",
            "decompensated cirrhosis 1. age 2. consent",
            "a) one b) two",
            "x • y • z",
            "wrapped lower text",
            "Exclusion criteria: 1) HIV 2) HCC",
            "Any of the following:",
            "C. difficile",
            "---",
            "(",
            ")",
            "ends with colon:",
            "\\\\",
            "é ü 中文",
            "1.",
            "  ",
        ]
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINE, max_size=25), st.sampled_from(["\n", "\n\n", "\r\n"]))
def test_property_structured_text_never_raises(lines, sep):
    text = sep.join(indent + marker + body for indent, marker, body in lines)
    cl = parse_criteria(text)
    _check_items_come_from(text, cl)
    assert all(i.kind in (Kind.INCLUSION, Kind.EXCLUSION) for i in cl.walk())


# --- headings with a subject word, inline roman and numbered lists (issue 12) ---------------------


@pytest.mark.parametrize(
    "text",
    [
        "Subject Inclusion Criteria\n- aged 18 or older\nSubject Exclusion Criteria\n- pregnant",
        "Patient Inclusion Criteria\n1. aged 18 or older\nPatient Exclusion Criteria\n1. pregnant",
        "INCLUSION CRITERIA FOR PATIENTS\n- aged 18 or older\nEXCLUSION CRITERIA FOR PATIENTS\n- pregnant",
        "Subject Inclusion/Exclusion\nInclusion:\n- aged 18 or older\nExclusion:\n- pregnant",
        "Participant-Related Inclusion Criteria:\n- aged 18 or older\nExclusion Criteria.\n- pregnant",
    ],
)
def test_headings_with_a_subject_word(text: str) -> None:
    parsed = parse_criteria(text)
    assert [(i.kind, i.text) for i in parsed.items()] == [
        (Kind.INCLUSION, "aged 18 or older"),
        (Kind.EXCLUSION, "pregnant"),
    ]


def test_inline_roman_list_is_split() -> None:
    text = "Exclusion Criteria:\n- Any of: (i) pregnancy, (ii) HIV infection, (iii) cirrhosis"
    parsed = parse_criteria(text)
    (item,) = parsed.items()
    assert [c.marker for c in item.children] == ["(i)", "(ii)", "(iii)"]
    assert [c.text for c in item.children] == ["pregnancy,", "HIV infection,", "cirrhosis"]


def test_inline_numbered_list_after_a_lead_in_is_split() -> None:
    text = "Exclusion Criteria:\n1. Patients with: 1) pregnancy; 2) HIV infection; 3) cirrhosis"
    parsed = parse_criteria(text)
    (item,) = parsed.items()
    assert item.text == "Patients with:"
    assert [c.text for c in item.children] == ["pregnancy;", "HIV infection;", "cirrhosis"]
