"""Regular expressions made cheap for short criterion texts, with exactly the same matches.

Judging one criterion item applies some forty patterns to a text of a few dozen characters.  Calling
a pattern is cheap; scanning is not: a pattern that starts with ``\\b`` or a look-behind gives the
regex engine nothing to skip by, so every position of the text is tried.  These helpers avoid most
of that work without changing any result:

* :func:`required` reads a *necessary condition* off a pattern's syntax tree: clauses of needles,
  one needle of each clause occurring in any match (``consent`` / ``form`` / ``signature`` for the
  consent rule, ``for`` and a digit for ``for 6 months``).  A needle is a literal, possibly required
  at a word start or end (``\\bmen\\b``: ``men`` in ``treatment`` does not count), or "a digit".
  ``str in str`` is a fast substring search, so checking needles costs a fraction of a scan.
* :class:`Prefiltered` -- a compiled pattern with its condition: when the condition fails, the
  pattern cannot match, and ``search`` / ``finditer`` / ``sub``... return what the pattern itself
  would (no match, the text unchanged) without scanning.  Otherwise the pattern runs as written.
* :class:`FirstMatch` -- ordered rules ``(pattern, value)`` and the first that matches, behind one
  condition that any of them needs (most texts fail it, and skip every rule at once).
* :func:`trie_alternation` -- the regex source of an alternation of words, factored into a trie
  (``hepatitis(?:\\s+b(?:\\s+virus)?)?``) instead of one alternative per word.  At each position the
  engine then tries one branch per first character instead of every word.  It matches exactly what
  the flat, longest-first alternation ``(?:hepatitis b virus|hepatitis b|hepatitis)`` matches (see
  the function for why).

The condition is derived, never written by hand, so a pattern edited in a table keeps a correct
one; a construct the derivation does not know yields no condition (the pattern is always run).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # typeshed types re's private parser under its deprecated public names (same API)
    import sre_constants as _c
    import sre_parse as _sre_parse
else:
    try:  # the syntax tree of a pattern; private but stable across 3.11+ (falls back to no prefilter)
        from re import _constants as _c
        from re import _parser as _sre_parse
    except ImportError:  # pragma: no cover - other Python versions
        _sre_parse = None
        _c = None

#: Whether this Python exposes re's parser (without it, no pattern gets a prefilter).
_HAS_PARSER: bool = _sre_parse is not None

V = TypeVar("V")

#: A clause with more needles than this is not worth checking (the pattern is tried instead).
MAX_NEEDLES = 160
#: A clause with more needles than this is tested with one regex scan for them (not a loop).
LOOP_NEEDLES = 10
#: At most this many clauses are checked (the most selective first).
MAX_CLAUSES = 3
#: A clause after the first is kept only when each of its needles is at least this strong (see
#: :func:`_strength`): weak clauses rarely reject a text and cost time.
MIN_STRENGTH = 3
#: Clauses made for one alternation (its alternatives' best clauses, second best...).
BRANCH_CLAUSES = 3

# --------------------------------------------------------------------------------------------------
# Needles and clauses
# --------------------------------------------------------------------------------------------------

#: ``(literal, word_start, word_end)``: the literal occurs in the text -- at the start of a word
#: when ``word_start`` (no word character before it), at the end of one when ``word_end`` (no word
#: character after it).  :data:`DIGIT` stands for any character of ``\d``.
Needle = tuple[str, bool, bool]
Clause = frozenset[Needle]
DIGIT: Needle = ("\\d", False, False)
_DIGIT = re.compile(r"\d")


def _is_word(ch: str) -> bool:
    """``re``'s ``\\w`` for one character of a str (Unicode): alphanumeric or ``_``."""
    return ch.isalnum() or ch == "_"


def occurs(text: str, needle: Needle) -> bool:
    """Whether ``needle`` occurs in ``text`` (at a word start / end when it says so)."""
    if needle == DIGIT:
        return _DIGIT.search(text) is not None
    literal, word_start, word_end = needle
    n, size = len(literal), len(text)
    i = text.find(literal)
    while i >= 0:
        if (not word_start or i == 0 or not _is_word(text[i - 1])) and (
            not word_end or i + n == size or not _is_word(text[i + n])
        ):
            return True
        i = text.find(literal, i + 1)
    return False


def _strength(needle: Needle) -> int:
    """How rarely a needle occurs, roughly: its length, plus one per word edge (a digit: 4)."""
    if needle == DIGIT:
        return 4
    return len(needle[0]) + needle[1] + needle[2]


def _rank(clause: Clause) -> tuple[int, int, int]:
    """A clause rejects more texts when its weakest needle is strong and it has few needles."""
    return (min(map(_strength, clause)), sum(n[1] + n[2] for n in clause), -len(clause))


def _implies(a: Needle, b: Needle) -> bool:
    """Whether every occurrence of needle ``a`` contains an occurrence of needle ``b``."""
    if a == DIGIT or b == DIGIT:
        return b == DIGIT and (a == DIGIT or _DIGIT.search(a[0]) is not None)
    text, n = a[0], len(b[0])
    q = text.find(b[0])
    while q >= 0:
        start_ok = not b[1] or (a[1] if q == 0 else not _is_word(text[q - 1]))
        end_ok = not b[2] or (a[2] if q + n == len(text) else not _is_word(text[q + n]))
        if start_ok and end_ok:
            return True
        q = text.find(b[0], q + 1)
    return False


def _minimal(clause: Clause) -> Clause:
    """Drop needles implied by another needle of the clause (checking that one finds both)."""
    return frozenset(n for n in clause if not any(o != n and _implies(n, o) for o in clause))


# --------------------------------------------------------------------------------------------------
# Reading the condition off the syntax tree
# --------------------------------------------------------------------------------------------------


def _ops(name: str) -> Any:
    return getattr(_c, name, None)


def _edges(op: Any, av: Any) -> tuple[bool, bool]:
    """Whether the zero-width ``op`` makes what follows start a word (``\\b``, ``(?<!\\w)``) and
    what precedes end one (``\\b``, ``(?!\\w)``), for text that starts/ends with a word character."""
    if op is _c.AT:
        edge = av is _c.AT_BOUNDARY
        return edge, edge
    if op is _c.ASSERT_NOT:
        word = (_c.CATEGORY, _c.CATEGORY_WORD)
        if list(av[1]) in ([(_c.IN, [word])], [word]):
            return av[0] == -1, av[0] == 1
    return False, False


def _needle(text: str, word_start: bool, word_end: bool) -> Needle:
    return text, word_start and _is_word(text[0]), word_end and _is_word(text[-1])


def _cnf(seq: Any, fold: bool, at_start: bool = False, at_end: bool = False) -> list[Clause]:
    """Clauses such that every match of the parsed sequence ``seq`` contains, for each clause, one
    of its needles; literals lower-cased when ``fold``.  ``at_start`` / ``at_end``: the sequence is
    preceded by a word-start / followed by a word-end assertion."""
    c = _c
    repeats = (c.MAX_REPEAT, c.MIN_REPEAT, _ops("POSSESSIVE_REPEAT"))
    items = list(seq)
    clauses: list[Clause] = []
    run: list[str] = []
    run_start = False

    def ends_word(i: int) -> bool:  # whether element i is directly followed by a word end
        return _edges(*items[i + 1])[1] if i + 1 < len(items) else at_end

    for i, (op, av) in enumerate(items):
        starts_word = at_start
        at_start = _edges(op, av)[0]
        if op is c.LITERAL:
            if not run:
                run_start = starts_word
            run.append(chr(av).lower() if fold else chr(av))
            if i + 1 == len(items) or items[i + 1][0] is not c.LITERAL:  # the run ends here
                clauses.append(frozenset({_needle("".join(run), run_start, ends_word(i))}))
                run.clear()
        elif op is c.SUBPATTERN:
            clauses += _cnf(av[3], fold, starts_word, ends_word(i))
        elif op is _ops("ATOMIC_GROUP"):
            clauses += _cnf(av, fold, starts_word, ends_word(i))
        elif op is c.ASSERT:  # a look-ahead/behind must match too, inside the text
            clauses += _cnf(av[1], fold)
        elif op in repeats:
            low, _high, item = av
            if low >= 1:  # the first repetition starts where the repeat does
                clauses += _cnf(item, fold, starts_word)
        elif op is c.BRANCH:
            clauses += _branch([_cnf(alt, fold, starts_word, ends_word(i)) for alt in av[1]])
        elif op is c.IN and list(av) == [(c.CATEGORY, c.CATEGORY_DIGIT)]:  # \d
            clauses.append(frozenset({DIGIT}))
        elif op is c.IN and av and all(o is c.LITERAL for o, _ in av):  # a set of single characters
            chars = (chr(v).lower() if fold else chr(v) for _, v in av)
            clauses.append(frozenset(_needle(ch, starts_word, ends_word(i)) for ch in chars))
        # AT, ASSERT_NOT, other classes, ANY, NOT_LITERAL, GROUPREF...: nothing required
    return clauses


def _branch(alternatives: list[list[Clause]]) -> list[Clause]:
    """Clauses of an alternation: the k-th joins each alternative's k-th best clause (its last when
    it has fewer), since any match is a match of one alternative."""
    ranked = [sorted({_minimal(k) for k in alt if k}, key=_rank, reverse=True) for alt in alternatives]
    if not all(ranked):
        return []
    depth = min(BRANCH_CLAUSES, max(map(len, ranked)))
    return [frozenset().union(*(r[min(k, len(r) - 1)] for r in ranked)) for k in range(depth)]


def _scoped_flags(seq: Any, mask: int) -> bool:
    """Whether a group setting one of the flags ``mask`` (``(?i:...)``, ``(?a:...)``) occurs
    anywhere in the parsed sequence."""
    for op, av in seq:
        if op is _c.SUBPATTERN:
            if av[1] & mask or _scoped_flags(av[3], mask):
                return True
        elif op is _c.BRANCH:
            if any(_scoped_flags(alt, mask) for alt in av[1]):
                return True
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _ops("POSSESSIVE_REPEAT")):
            if _scoped_flags(av[2], mask):
                return True
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            if _scoped_flags(av[1], mask):
                return True
        elif op is _ops("ATOMIC_GROUP") and _scoped_flags(av, mask):
            return True
    return False


def _anchored_at_start(parsed: Any) -> bool:
    """Whether the pattern starts with ``^`` / ``\\A`` (and is not MULTILINE)."""
    data = list(parsed)
    return bool(
        data
        and data[0][0] is _c.AT
        and data[0][1] in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING)
        and not parsed.state.flags & re.MULTILINE
    )


def required(rx: re.Pattern[str]) -> tuple[tuple[Clause, ...], bool]:
    """``(clauses, fold)``: every match of ``rx`` contains, for each clause, one of its needles.

    ``fold`` is true when the pattern is case-insensitive anywhere: the literals are then lower-case
    ASCII and the condition holds for the lower-cased text of an ASCII text (see
    :class:`Condition`).  No clauses means no condition (the pattern is always tried)."""
    if not _HAS_PARSER or not isinstance(rx.pattern, str):
        return (), False
    try:
        parsed = _sre_parse.parse(rx.pattern, rx.flags)
        if _anchored_at_start(parsed):  # tried at the start only: a check would cost more
            return (), False
        fold = bool(parsed.state.flags & re.IGNORECASE) or _scoped_flags(parsed, re.IGNORECASE)
        clauses = _cnf(parsed, fold)
        if parsed.state.flags & (re.ASCII | re.LOCALE) or _scoped_flags(parsed, re.ASCII | re.LOCALE):
            # \w and \d are not Unicode's: keep plain literals only
            clauses = [frozenset((s, False, False) for s, _, _ in k) for k in clauses if DIGIT not in k]
        clauses = [_minimal(k) for k in clauses if k]
    except Exception:  # noqa: BLE001 - an unknown construct: no prefilter, never a wrong one
        return (), False
    if fold:
        clauses = [k for k in clauses if all(n[0].isascii() for n in k)]
    return _select(clauses), fold


def _select(clauses: Iterable[Clause]) -> tuple[Clause, ...]:
    """The clauses worth checking, most selective first: the best one, and up to
    :data:`MAX_CLAUSES` in all when selective too (each costs time and rarely rejects otherwise)."""
    ranked = sorted({k for k in clauses if k and len(k) <= MAX_NEEDLES}, key=_rank, reverse=True)
    return tuple(ranked[:1] + [k for k in ranked[1:MAX_CLAUSES] if _rank(k)[0] >= MIN_STRENGTH])


# --------------------------------------------------------------------------------------------------
# Checking a condition
# --------------------------------------------------------------------------------------------------


class Condition:
    """Clauses of needles, checked against a text: false only when some clause has no needle in it.

    ``fold``: the needles are lower-case and the text is lower-cased first -- only for ASCII text,
    since Unicode case folding (``ſ`` ~ ``s``, ``K`` ~ ``k``) is not ``str.lower``; a non-ASCII text
    then always passes."""

    __slots__ = ("clauses", "fold", "_checks")

    def __init__(self, clauses: Iterable[Clause], fold: bool = False) -> None:
        self.clauses = tuple(clauses)
        self.fold = fold
        # per clause: a regex finding its needles (many needles: one scan instead of a loop),
        # else plain literals (``in``) and needles at word edges; whether a digit will do
        self._checks = tuple(
            (
                _needle_scan(k) if len(k) > LOOP_NEEDLES else None,
                tuple(sorted((n[0] for n in k if n != DIGIT and not (n[1] or n[2])), key=len, reverse=True)),
                tuple(sorted((n for n in k if n[1] or n[2]), key=lambda n: len(n[0]), reverse=True)),
                DIGIT in k,
            )
            for k in self.clauses
        )

    def __repr__(self) -> str:
        return f"Condition({self.clauses!r}, fold={self.fold})"

    def __bool__(self) -> bool:
        return bool(self.clauses)

    def holds(self, text: str) -> bool:
        """False only when ``text`` lacks every needle of some clause."""
        if self.fold:
            if not text.isascii():
                return True
            text = text.lower()
        for scan, plain, edged, digit in self._checks:
            if scan is not None:
                if scan.search(text) is None and not (digit and _DIGIT.search(text)):
                    return False
                continue
            for literal in plain:
                if literal in text:
                    break
            else:
                for needle in edged:
                    if needle[0] in text and occurs(text, needle):
                        break
                else:
                    if not (digit and _DIGIT.search(text)):
                        return False
        return True


def _needle_scan(clause: Clause) -> re.Pattern[str]:
    """A regex matching exactly where a needle of ``clause`` other than :data:`DIGIT` occurs: its
    literals as a trie (the first characters let the engine skip the others), each word edge
    asserted where its literal ends -- a word start as a fixed-width look-behind over the literal
    (``(?<!\\w[\\s\\S]{n})``: no word character just before its ``n`` characters).  ``\\w`` is
    :func:`_is_word`."""
    root: dict[str, Any] = {}
    for needle in clause:
        if needle != DIGIT:
            node = root
            for ch in needle[0]:
                node = node.setdefault(re.escape(ch), {})
            node.setdefault("", set()).add(needle[1:])

    def emit(node: dict[str, Any], depth: int) -> str:
        edges = node.get("", set())
        if (False, False) in edges:  # a literal wanting no edge ends here: enough for a match
            return ""
        alts = [key + emit(child, depth + 1) for key, child in node.items() if key]
        alts += [(rf"(?<!\w[\s\S]{{{depth}}})" if start else "") + (r"(?!\w)" if end else "")
                 for start, end in sorted(edges)]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return re.compile(emit(root, 0)) if root else re.compile(r"(?!)")


class Prefiltered:
    """A compiled pattern that skips texts in which it cannot match (same results as the pattern).

    Offers the methods of :class:`re.Pattern` that the eligibility code uses; each returns exactly
    what the pattern would: ``None``, no matches, the text unchanged or ``[text]`` when
    :meth:`possible` is false, else the pattern's own result."""

    __slots__ = ("rx", "pattern", "condition")

    def __init__(self, rx: re.Pattern[str]) -> None:
        self.rx = rx
        self.pattern = rx.pattern
        self.condition = Condition(*required(rx))

    def __repr__(self) -> str:
        return f"Prefiltered({self.rx!r}, {self.condition!r})"

    def possible(self, text: str) -> bool:
        """False only when the pattern cannot match anywhere in ``text``."""
        return self.condition.holds(text)

    def search(self, text: str, pos: int = 0, endpos: int = 2**63 - 1) -> re.Match[str] | None:
        return self.rx.search(text, pos, endpos) if self.condition.holds(text) else None

    def match(self, text: str, pos: int = 0, endpos: int = 2**63 - 1) -> re.Match[str] | None:
        return self.rx.match(text, pos, endpos) if self.condition.holds(text) else None

    def fullmatch(self, text: str, pos: int = 0, endpos: int = 2**63 - 1) -> re.Match[str] | None:
        return self.rx.fullmatch(text, pos, endpos) if self.condition.holds(text) else None

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self.rx.finditer(text) if self.condition.holds(text) else iter(())

    def findall(self, text: str) -> list[Any]:
        return self.rx.findall(text) if self.condition.holds(text) else []

    def sub(self, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
        return self.rx.sub(repl, text) if self.condition.holds(text) else text

    def split(self, text: str) -> list[str]:
        return self.rx.split(text) if self.condition.holds(text) else [text]

    @property
    def groupindex(self) -> Any:
        return self.rx.groupindex


def prefiltered(pattern: str | re.Pattern[str], flags: int = 0) -> Prefiltered:
    """:class:`Prefiltered` of a pattern (source or compiled), its word starts factored
    (:func:`factor_word_starts`)."""
    source, flags = (pattern.pattern, pattern.flags) if isinstance(pattern, re.Pattern) else (pattern, flags)
    factored = source if flags & re.VERBOSE else factor_word_starts(source)
    if isinstance(pattern, re.Pattern) and factored == source:
        return Prefiltered(pattern)
    return Prefiltered(re.compile(factored, flags))


def _top_level(source: str) -> list[str]:
    """The top-level alternatives of a regex source (``|`` outside groups and classes)."""
    out, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(source):
        ch = source[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if source[i + 1 : i + 2] == "^":
                i += 1
            if source[i + 1 : i + 2] == "]":  # a ']' first in a class is a literal
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(source[start:i])
            start = i + 1
        i += 1
    out.append(source[start:])
    return out


def factor_word_starts(source: str) -> str:
    """The same regex with each run of top-level alternatives that all begin with ``\\b`` written
    as one ``\\b(?:...|...)``: the same matches in the same order (``\\b`` takes no characters),
    but the word edge is tested once per position, and each alternative that now begins with a
    literal is skipped at once where that character is not (``re`` checks a branch's first literal
    before entering it).  A source with global flags (``(?i)...``) is left as it is."""
    if source.startswith("(?") and not source.startswith(("(?:", "(?P", "(?=", "(?!", "(?<")):
        return source
    alternatives = _top_level(source)
    if len(alternatives) < 2:
        return source
    out: list[str] = []
    run: list[str] = []
    for alt in [*alternatives, None]:
        if alt is not None and alt.startswith("\\b"):
            run.append(alt[2:])
            continue
        if len(run) > 1:
            out.append("\\b(?:" + "|".join(run) + ")")
        else:
            out += ["\\b" + r for r in run]
        run = []
        if alt is not None:
            out.append(alt)
    return "|".join(out)


def any_possible(patterns: Iterable[Prefiltered]) -> Condition:
    """One condition that holds whenever any of ``patterns`` can match: clauses joining one clause
    of each (as for an alternation); no condition when one of them has none, or when they differ in
    case folding."""
    conditions = [p.condition for p in patterns]
    folds = {c.fold for c in conditions}
    if not conditions or len(folds) != 1 or not all(c.clauses for c in conditions):
        return Condition(())
    return Condition(_select(_branch([list(c.clauses) for c in conditions])), folds.pop())


def _blank_fails(condition: Condition) -> bool:
    """Whether ``condition`` fails on every text of whitespace only (some clause needs more)."""
    return not condition.fold and any(
        all(n == DIGIT or not n[0].isspace() for n in k) for k in condition.clauses
    )


class FirstMatch(Generic[V]):
    """Ordered rules ``(pattern, value)``: :meth:`search` gives the first rule whose pattern
    matches a text, as ``for rx, value in rules: if rx.search(text)`` would -- after one check of
    a condition that any matching rule needs."""

    __slots__ = ("rules", "gate", "blank_fails")

    def __init__(self, rules: Iterable[tuple[Prefiltered, V]]) -> None:
        self.rules: tuple[tuple[Prefiltered, V], ...] = tuple(rules)
        self.gate = any_possible(rx for rx, _ in self.rules)
        #: no rule can match a text of whitespace only (checked first: cheap)
        self.blank_fails = all(_blank_fails(rx.condition) for rx, _ in self.rules)

    def search(self, text: str) -> tuple[re.Match[str], V] | None:
        """``(match, value)`` of the first rule that matches ``text``, else ``None``."""
        if self.blank_fails and (not text or text.isspace()):
            return None
        if self.gate and not self.gate.holds(text):
            return None
        for rx, value in self.rules:
            m = rx.search(text)
            if m:
                return m, value
        return None

    def __iter__(self) -> Iterator[tuple[Prefiltered, V]]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __getitem__(self, index: int) -> tuple[Prefiltered, V]:
        return self.rules[index]


# --------------------------------------------------------------------------------------------------
# Word alternations as tries
# --------------------------------------------------------------------------------------------------


def flat_alternation(words: Iterable[str]) -> str:
    """``w1|w2|...``, longest first, each escaped, a space matching any run of whitespace."""
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(set(words), key=len, reverse=True))


def trie_alternation(words: Iterable[str]) -> str:
    """The regex source of :func:`flat_alternation` of ``words``, factored into a trie.

    Same matches: the words that can match at a given position form a chain of prefixes of one
    another (a word's characters are literals, a space is ``\\s+``, so two different next
    characters never match the same text -- words with other whitespace, doubled or edge spaces
    keep the flat form), and both forms try the chain longest first, backtracking to the shorter
    words when what follows fails.  The trie lists each node's continuations before its end.
    (Not for case-insensitive patterns, where two different characters may match the same one.)"""
    unique = set(words)
    if not unique or any(" ".join(w.split()) != w for w in unique):
        return flat_alternation(unique)
    root: dict[str, Any] = {}
    for w in sorted(unique, key=len, reverse=True):
        node = root
        for ch in w:
            node = node.setdefault(r"\s+" if ch == " " else re.escape(ch), {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alts = [key + emit(child) for key, child in node.items() if key]
        if not alts:
            return ""
        ends = "" in node
        if len(alts) == 1 and not ends:
            return alts[0]
        return "(?:" + "|".join(alts) + ")" + ("?" if ends else "")

    return emit(root)


__all__ = [
    "DIGIT",
    "Condition",
    "FirstMatch",
    "Needle",
    "Prefiltered",
    "any_possible",
    "factor_word_starts",
    "flat_alternation",
    "occurs",
    "prefiltered",
    "required",
    "trie_alternation",
]
