"""Split an eligibility criteria text into inclusion and exclusion items, each kept verbatim.

The three ClinicalTrials.gov forms deliver the same criteria differently: API v2 JSON as Markdown
(``* item`` bullets, ``1.`` lists, two-space sub-lists, ``\\<`` escapes), the legacy XML as a dedented
textblock (``-  item`` bullets, numbers right-aligned, lines hard-wrapped at 70-100 characters with a
hanging indent), the classic page as plain lines (``1. item;``).  :func:`parse_criteria` reads any
of them in one pass over the lines:

* **headings** set the kind of the items that follow: ``Inclusion Criteria:``, ``Key inclusion
  criteria``, ``INCLUSION:``, ``**Exclusion criteria**``, phrases such as ``Patients are excluded
  if`` or ``Subjects meeting any of the following will be excluded:``; neutral headings
  (``Inclusion/Exclusion Criteria:``, ``Eligibility criteria``) change nothing.  A heading may
  carry its first item on the same line (``Inclusion criteria: age > 18``), and a line may hold
  both headings (``Inclusion criteria: ... Exclusion criteria: ...``).  Without any heading every
  item is taken as inclusion, and an issue says so.
* **markers** open items: bullets (``*`` ``-`` ``+`` ``•`` ``·`` ``–`` ...), numbers (``1.`` ``1)``
  ``(1)`` ``1-``, ``1.2``), letters (``a.`` ``(b)`` ``C)``) and roman numerals (``i.`` ``(iv)``).
  Letters and numerals are only taken as markers in sequence (``a``/``i`` to start, then the next
  one), so ``C. difficile`` on a wrapped line stays text and ``i.`` after ``h.`` is a letter.
* **nesting** follows indentation (one column of slack, for right-aligned ``9.``/``10.``); at the
  same indentation a different marker nests under an item that ends with ``:`` or under an
  enumerated item of higher outline rank (``1.`` > ``a.`` > ``i.`` > bullet), else it is a
  sibling.  Nesting deeper than :data:`MAX_DEPTH` is flattened.
* **continuations**: an unmarked line joins the open item (joined with one space) when it follows
  it directly or is indented past the marker (a hard wrap or a second paragraph); an unmarked line
  after a blank line, at the marker's indentation, starts an unmarked item.  In a list with no
  markers at all, each line is an item unless it looks like a hard wrap.  Unmarked text ending
  with ``:`` before the first item of a section is a lead-in, kept as a :class:`Note`.
* **run-on lines**: ``1. Age 18-65 2. HBsAg positive 3. consent`` is split when the inline numbers
  continue the sequence (two of them, or one after ``;``/``.``/``,``); likewise ``a) ... b) ...``
  and `` • `` separated lists.

Item texts are the source text with the marker and surrounding whitespace removed and wrapped
lines joined by one space; Markdown backslash escapes (``\\<``) are undone, since they are how the
v2 API transports ``<``, not part of the criterion.  The function never raises: any text gives a
(possibly empty) :class:`CriteriaList`.
"""

from __future__ import annotations

import re

from ..errors import MappingIssue
from .model import CriteriaList, CriterionItem, Kind, Note
from .prefilter import any_possible, prefiltered
from .runon import runon as _runon

#: Deepest nesting kept; deeper items become siblings at this depth.
MAX_DEPTH = 12
#: Indentation slack (columns) when comparing items: right-aligned numbers differ by one.
_TOL = 1
_FIELD = "eligibility/criteria"

_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def unescape_markdown(text: str) -> str:
    """Undo Markdown backslash escapes of ASCII punctuation (``\\<`` -> ``<``, ``\\*`` -> ``*``)."""
    return _MD_ESCAPE.sub(r"\1", text) if "\\" in text else text


# --------------------------------------------------------------------------------------------------
# Line patterns
# --------------------------------------------------------------------------------------------------

_SEPARATOR = re.compile(r"[\s\-_*=~#.]*")
_MARKER = re.compile(
    r"""(?:
        (?P<glyph>[•·‣◦▪▫■□●○►▸➢✓✔])[ \t]*
      | (?P<ascii>[*+]|-{1,2}|[–—])(?=\s|$)\s*
      | \((?P<pnum>\d{1,3})\)(?=\s|$)\s*
      | \((?P<palpha>[A-Za-z]{1,6})\)(?=\s|$)\s*
      | (?P<multi>\d{1,3}(?:\.\d{1,3})+)\.?(?=\s|$)\s*
      | (?P<num>\d{1,3})(?P<numsep>[.)]|-)(?=\s|$)\s*
      | (?P<alpha>[A-Za-z]{1,6})(?P<alphasep>[.)])(?=\s|$)\s*
    )""",
    re.X,
)
_LEAD_DECOR = re.compile(r"^[\s#*_>]+")
_TRAIL_DECOR = re.compile(r"[\s*_]+$")
_QUALIFIERS = (
    r"(?:key|main|major|principal|general|specific|additional|other|primary|secondary|study|basic|essential"
    r"|subjects?|patients?|participants?|volunteers?|[a-z]+-related|sub-?study)"
)
_H_STRICT = re.compile(
    rf"(?:{_QUALIFIERS}\s+)*(?P<kind>inclusion|exclusion|inclusionary|exclusionary)"
    r"(?P<crit>\s+(?:criteria|criterion|criterias|requirements?|conditions?|parameters?))?"
    r"(?P<tail>[^:]{0,60}?)\s*(?::(?P<rest>.*))?",
    re.I | re.S,
)
_TAIL_OK = re.compile(r"(?:\(.*\)|(?:for|in|of|at)\s.*|[-–—/].*)", re.S | re.I)
_H_NEUTRAL = re.compile(
    rf"(?:{_QUALIFIERS}\s+)*"
    r"(?:(?:inclusion\s*(?:/|and/or|and|&|or|-)\s*exclusion|exclusion\s*(?:/|and|&|-)\s*inclusion)"
    r"(?:\s+(?:criteria|criterion|requirements))?"
    r"|(?:eligibility|selection|enrol+ment)\s+(?:criteria|criterion|requirements)|criteria|eligibility)"
    r"(?P<tail>[^:]{0,40}?)\s*(?::(?P<rest>.*))?",
    re.I | re.S,
)
_DANGLING = prefiltered(r"\b(?:if|if they|if they have|if any|who|who have|who are|whom|that|with)\s*$", re.I)
_FOLLOWING_END = prefiltered(
    r"\bfollowing\b.*\b(?:be\s+)?(?:excluded|included|eligible|ineligible|enrol+ed)\s*\.?$", re.I | re.S
)
_EXCL_CUE = prefiltered(
    r"\b(?:exclu\w*|ineligible|not\s+(?:be\s+)?eligible|not\s+be\s+(?:included|enrol+ed|randomi[sz]ed)"
    r"|(?:cannot|can\s*not|may\s+not|will\s+not)\s+(?:be\s+)?(?:included|enrol+ed|participate|take\s+part))\b",
    re.I,
)
_INCL_CUE = prefiltered(
    r"\b(?:inclu\w*|eligible|eligibility|enrol+(?:ed|ment)?|qualify|must\s+(?:meet|have|fulfil+|satisfy))\b",
    re.I,
)
_INLINE_HEADING = prefiltered(
    r"(?<=\S)(?<!(?i:related))(?<!(?i:subject))(?<!(?i:patient))(?<!(?i:participant))(?<!(?i:study))"
    r"\s+(?=(?i:(?:key\s+)?(?:inclusion|exclusion)\s+criteria\s*:)|(?:INCLUSION|EXCLUSION)\s*:)"
)
#: What a strict or neutral heading needs (``inclusion``, ``criteria``...): one check per line.
_HEADING_WORDS = any_possible((prefiltered(_H_STRICT), prefiltered(_H_NEUTRAL)))
_DIGIT = re.compile(r"\d")
_TERMINAL = frozenset(".;:!?")

# Outline rank of marker families: a higher rank nests under a lower one at the same indentation.
_RANK = {"ROMAN": 0, "ALPHA": 1, "num": 2, "multi": 3, "alpha": 4, "roman": 5, "bullet": 6}
_ROMAN_VALUES = (
    ("m", 1000),
    ("cm", 900),
    ("d", 500),
    ("cd", 400),
    ("c", 100),
    ("xc", 90),
    ("l", 50),
    ("xl", 40),
    ("x", 10),
    ("ix", 9),
    ("v", 5),
    ("iv", 4),
    ("i", 1),
)


def _to_roman(n: int) -> str:
    out = []
    for sym, val in _ROMAN_VALUES:
        while n >= val:
            out.append(sym)
            n -= val
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------------


class _Node:
    """An item being built: its lines, marker, class ``(family, style)`` and ordinal value."""

    __slots__ = (
        "parts",
        "kind",
        "marker",
        "family",
        "style",
        "value",
        "indent",
        "line",
        "children",
        "last_len",
    )

    def __init__(
        self,
        kind: Kind,
        marker: str,
        family: str,
        style: str,
        value: object,
        indent: int,
        line: int,
        content: str,
    ) -> None:
        self.parts = [content] if content else []
        self.kind = kind
        self.marker = marker
        self.family = family
        self.style = style
        self.value = value
        self.indent = indent
        self.line = line
        self.children: list[_Node] = []
        self.last_len = len(content)

    def ends_with_colon(self) -> bool:
        return bool(self.parts) and self.parts[-1].endswith(":")


class _Parser:
    def __init__(self, markdown: bool) -> None:
        self.markdown = markdown
        self.kind = Kind.INCLUSION
        self.stack: list[_Node] = []
        self.roots: list[_Node] = []
        self.notes: list[Note] = []
        self.headings: list[str] = []
        self.specific_heading = False
        self.items_before_heading = 0
        self.section_items = 0
        self.blank_before = True

    # -- entry ------------------------------------------------------------------------------------

    def run(self, text: str) -> CriteriaList:
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.expandtabs()
            stripped = line.strip()
            if not stripped or _SEPARATOR.fullmatch(stripped):
                if stripped:  # a rule line (---, ***) ends the open items
                    self.stack.clear()
                self.blank_before = True
                continue
            indent = len(line) - len(line.lstrip())
            for segment in _INLINE_HEADING.split(stripped):
                self.segment(segment, indent, lineno, depth=0)
                self.blank_before = False
        return self.result()

    # -- one segment of a line --------------------------------------------------------------------

    def segment(self, seg: str, indent: int, lineno: int, depth: int) -> None:
        marker, family, style, value, content = self.marker(seg, indent)
        heading = _heading(content, bool(marker))
        if heading is not None:
            kind, rest = heading
            head = seg[: len(seg) - len(rest)] if rest else seg
            self.heading(_TRAIL_DECOR.sub("", _LEAD_DECOR.sub("", head)) or head, kind)
            if rest and rest.strip() and depth < 2:
                self.segment(rest.strip(), indent, lineno, depth + 1)
            return
        for piece_marker, piece in _runon(marker, family, style, value, content):
            if piece_marker is None:
                self.text(piece, indent, lineno)
                continue
            if piece_marker == marker:
                self.item(marker, family, style, value, piece, indent, lineno)
            else:
                m, f, s, v, c = self.marker(piece_marker + " " + piece, indent)
                if m:
                    self.item(m, f, s, v, c, indent, lineno)
                else:
                    self.text(piece_marker + " " + piece, indent, lineno)
            self.blank_before = False

    def marker(self, seg: str, indent: int) -> tuple[str, str, str, object, str]:
        """``(marker, family, style, value, content)``; marker ``""`` when the segment has none."""
        m = _MARKER.match(seg)
        if m is None:
            return "", "", "", None, seg
        content = seg[m.end() :]
        mk = m.group(0).rstrip()
        if m["glyph"] or m["ascii"]:
            return mk, "bullet", "", None, content
        if m["pnum"]:
            return mk, "num", "()", int(m["pnum"]), content
        if m["multi"]:
            parts = tuple(int(p) for p in m["multi"].split("."))
            if self.multi_ok(parts):
                return mk, "multi", "", parts, content
            return "", "", "", None, seg
        if m["num"]:
            return mk, "num", m["numsep"], int(m["num"]), content
        letters = m["palpha"] or m["alpha"]
        style = "()" if m["palpha"] else m["alphasep"]
        resolved = self.resolve_letters(letters, style, indent)
        if resolved is None:
            return "", "", "", None, seg
        family, value = resolved
        return mk, family, style, value, content

    def multi_ok(self, parts: tuple[int, ...]) -> bool:
        if parts[-1] == 1:
            return True
        prev = (*parts[:-1], parts[-1] - 1)
        return any(n.family == "multi" and n.value == prev for n in self.stack)

    def resolve_letters(self, letters: str, style: str, indent: int) -> tuple[str, int] | None:
        """Alphabetic or roman marker, by sequence with the open items at this indentation."""
        upper = letters.isupper()
        low = letters.lower()
        for node in reversed(self.stack):
            if abs(node.indent - indent) > _TOL or node.style != style:
                continue
            if not isinstance(node.value, int) or node.family.isupper() != upper:
                continue
            if node.family in ("alpha", "ALPHA") and len(low) == 1 and ord(low) - 96 == node.value + 1:
                return node.family, node.value + 1
            if node.family in ("roman", "ROMAN") and low == _to_roman(node.value + 1):
                return node.family, node.value + 1
        if low == "a":
            return ("ALPHA" if upper else "alpha"), 1
        if low == "i":
            return ("ROMAN" if upper else "roman"), 1
        return None

    # -- headings, items, text --------------------------------------------------------------------

    def heading(self, text: str, kind: Kind | None) -> None:
        self.headings.append(text.strip())
        self.stack.clear()
        self.section_items = 0
        if kind is not None:
            self.kind = kind
            self.specific_heading = True

    def attach(self, node: _Node, parent: _Node | None) -> None:
        if parent is None:
            self.roots.append(node)
            if not self.specific_heading:
                self.items_before_heading += 1
        else:
            parent.children.append(node)
        self.stack.append(node)
        self.section_items += 1

    def item(
        self, marker: str, family: str, style: str, value: object, content: str, indent: int, lineno: int
    ) -> None:
        node = _Node(self.kind, marker, family, style, value, indent, lineno, content.strip())
        stack = self.stack
        while stack and stack[-1].indent > indent + _TOL:
            stack.pop()
        if not stack:
            self.attach(node, None)
            return
        top = stack[-1]
        if indent > top.indent + _TOL:
            self.attach_child(node, top)
            return
        i = len(stack) - 1
        while i >= 0 and abs(stack[i].indent - indent) <= _TOL:
            if _same_class(stack[i], node):
                del stack[i:]
                self.attach(node, stack[-1] if stack else None)
                return
            i -= 1
        if _prefers_child(top, node):
            self.attach_child(node, top)
            return
        stack.pop()
        self.attach(node, stack[-1] if stack else None)

    def attach_child(self, node: _Node, parent: _Node) -> None:
        if len(self.stack) >= MAX_DEPTH:
            self.stack.pop()
            self.attach(node, self.stack[-1] if self.stack else None)
        else:
            self.attach(node, parent)

    def text(self, content: str, indent: int, lineno: int) -> None:
        content = content.strip()
        if not content:
            return
        stack = self.stack
        if stack:
            top = stack[-1]
            if not top.parts:
                _append(top, content)
                return
            if not self.blank_before:
                if top.marker or indent > top.indent + _TOL or _looks_wrapped(top, content):
                    _append(top, content)
                    return
            elif indent > top.indent + _TOL:
                _append(top, content)
                return
        if content.endswith(":") and self.section_items == 0:
            self.notes.append(Note(self.clean(content), self.kind, lineno))
            return
        node = _Node(self.kind, "", "", "", None, indent, lineno, content)
        while stack and stack[-1].indent > indent + _TOL:
            stack.pop()
        if stack and indent > stack[-1].indent + _TOL:
            self.attach_child(node, stack[-1])
            return
        if stack and stack[-1].ends_with_colon() and stack[-1].marker == "" and self.blank_before is False:
            self.attach_child(node, stack[-1])
            return
        if stack:
            stack.pop()
        self.attach(node, stack[-1] if stack else None)

    # -- result -----------------------------------------------------------------------------------

    def clean(self, text: str) -> str:
        return unescape_markdown(text) if self.markdown else text

    def freeze(self, node: _Node, position: int) -> CriterionItem:
        children: list[CriterionItem] = []
        for child in node.children:
            frozen = self.freeze(child, len(children) + 1)
            if frozen.text or frozen.children:
                children.append(frozen)
        return CriterionItem(
            self.clean(" ".join(node.parts)), node.kind, position, node.marker, node.line, tuple(children)
        )

    def result(self) -> CriteriaList:
        inclusion: list[CriterionItem] = []
        exclusion: list[CriterionItem] = []
        for node in self.roots:
            target = inclusion if node.kind is Kind.INCLUSION else exclusion
            item = self.freeze(node, len(target) + 1)
            if item.text or item.children:
                target.append(item)
        issues: list[MappingIssue] = []
        count = len(inclusion) + len(exclusion)
        if count and not self.specific_heading:
            issues.append(
                MappingIssue(
                    _FIELD,
                    f"no inclusion/exclusion heading: all {count} items taken as inclusion",
                    severity="warning",
                )
            )
        elif self.items_before_heading and self.specific_heading:
            issues.append(
                MappingIssue(
                    _FIELD,
                    f"{self.items_before_heading} item(s) before the first heading taken as inclusion",
                    severity="warning",
                )
            )
        if not count and (self.notes or self.headings):
            issues.append(MappingIssue(_FIELD, "no criteria items found", severity="information"))
        return CriteriaList(
            tuple(inclusion),
            tuple(exclusion),
            tuple(self.notes),
            tuple(self.clean(h) for h in self.headings),
            self.specific_heading,
            tuple(issues),
        )


def _append(node: _Node, content: str) -> None:
    node.parts.append(content)
    node.last_len = len(content)


def _looks_wrapped(top: _Node, content: str) -> bool:
    """For an unmarked item followed directly by another unmarked line: a hard wrap, not a new item?"""
    last = top.parts[-1]
    if last[-1] in _TERMINAL:
        return False
    return top.last_len >= 50 or (content[0].islower() and top.last_len >= 30)


def _same_class(a: _Node, b: _Node) -> bool:
    if a.family == "bullet" and b.family == "bullet":
        return True
    return a.family == b.family and a.style == b.style and a.family != ""


def _prefers_child(top: _Node, node: _Node) -> bool:
    if top.ends_with_colon():
        return True
    if top.family == "" or top.family == "bullet":
        return False
    return _RANK.get(node.family, 6) > _RANK.get(top.family, 6)


def _heading(content: str, marked: bool) -> tuple[Kind | None, str] | None:
    """``(kind, rest)`` when ``content`` is a heading (kind ``None`` for a neutral one); ``rest`` is
    the text after the heading's colon on the same line, as written ("" when nothing)."""
    lead = _LEAD_DECOR.match(content)
    offset = lead.end() if lead else 0
    core = _strip_trailing_decor(content[offset:])
    if core.endswith(".") and not core.endswith("..") and len(core) < 60:
        core = core[:-1]  # 'Exclusion Criteria.'
    if not core or len(core) > 250:
        return None
    words = _HEADING_WORDS.holds(core)
    m = _H_STRICT.fullmatch(core) if words else None
    if m is not None:
        tail = m["tail"].strip()
        if m["rest"] is None:
            ok = not tail or (
                not marked
                and m["crit"] is not None
                and len(tail) <= 30
                and _TAIL_OK.fullmatch(tail) is not None
            )
        else:
            ok = not tail or m["crit"] is not None
        if ok:
            kind = Kind.INCLUSION if m["kind"].lower().startswith("inclu") else Kind.EXCLUSION
            return kind, _rest(content, offset, m)
    m = _H_NEUTRAL.fullmatch(core) if words else None
    if m is not None and (not m["tail"].strip() or m["rest"] is not None):
        return None, _rest(content, offset, m)
    if marked or len(core) > 200:
        return None
    if core.endswith(":") or _DANGLING.search(core) or _FOLLOWING_END.search(core):
        if _EXCL_CUE.search(core):
            return Kind.EXCLUSION, ""
        if _INCL_CUE.search(core):
            return Kind.INCLUSION, ""
    return None


def _strip_trailing_decor(text: str) -> str:
    """``_TRAIL_DECOR.sub("", text)``: trailing whitespace, ``*`` and ``_`` removed, without a scan."""
    while True:
        stripped = text.rstrip().rstrip("*_")
        if len(stripped) == len(text):
            return text
        text = stripped


def _rest(content: str, offset: int, m: re.Match[str]) -> str:
    """The text of ``content`` after the heading's colon, without leading decorations."""
    if m["rest"] is None:
        return ""
    rest = content[offset + m.start("rest") :].lstrip("*_ \t")
    return rest if rest.strip() else ""


def parse_criteria(text: str | None, *, markdown: bool = True) -> CriteriaList:
    """Split criteria text (any ClinicalTrials.gov form) into inclusion and exclusion items.

    ``markdown``: undo Markdown backslash escapes in the item texts (the v2 API's ``\\<``); pass
    ``False`` to keep backslashes exactly as written.  Never raises.
    """
    if not text or not text.strip():
        return CriteriaList()
    return _Parser(markdown).run(text)
