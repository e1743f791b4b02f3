"""Run-on lines: a list written inside one line, split into its items.

``Patients with a) pregnancy b) HIV infection``, ``Any of: (i) ... (ii) ...``, ``1. Patients with:
1) ...; 2) ...``, ``... • ... • ...``: :func:`runon` cuts a line's content at the markers of an
inline list (numbers, letters, roman numerals, bullets) when they run in sequence, so that the
parser (:mod:`.parse`) sees one item per piece.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .prefilter import prefiltered

_DIGIT = re.compile(r"\d")
_INLINE_NUM = prefiltered(r"(?<!\S)(?:\((?P<p>\d{1,2})\)|(?P<n>\d{1,2})(?P<s>[.)]))(?=\s)")
_INLINE_ALPHA = re.compile(r"(?<!\S)(?:\((?P<p>[a-z])\)|(?P<n>[a-z])\))(?=\s)")
_INLINE_BULLET = re.compile(r"\s+[•▪●]\s+")
_ROMANS = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
_INLINE_ROMAN = re.compile(
    r"(?<!\S)(?:\((?P<p>x|ix|iv|v?i{1,3}|v)\)|(?P<n>x|ix|iv|v?i{1,3}|v)\))(?=\s)", re.I
)


def _chain(
    matches: list[tuple[int, int, int, str]], start: int, style: str | None
) -> list[tuple[int, int, int, str]]:
    out = []
    expected = start
    for m in matches:
        if m[2] == expected and (style is None or m[3] == style):
            out.append(m)
            expected += 1
            style = m[3]
    return out


def _split_at(
    content: str, first: str | None, chain: list[tuple[int, int, int, str]]
) -> list[tuple[str | None, str]]:
    pieces: list[tuple[str | None, str]] = []
    head = content[: chain[0][0]].strip()
    if head or first:
        pieces.append((first, head))
    for i, (s, e, _, _) in enumerate(chain):
        end = chain[i + 1][0] if i + 1 < len(chain) else len(content)
        pieces.append((content[s:e], content[e:end].strip()))
    return pieces


def _split_list(pieces: list[tuple[str | None, str]], rx: re.Pattern[str],
                number: Callable[[str], int]) -> list[tuple[str | None, str]]:
    """Split each piece at an inline list of ``rx``'s markers (``(p)`` or ``n)``, numbered by
    ``number``) that run 1, 2, ... at least twice."""
    out: list[tuple[str | None, str]] = []
    for mk, text in pieces:
        found = [(m.start(), m.end(), number(m["p"] or m["n"]), "()" if m["p"] else ")")
                 for m in rx.finditer(text)]
        chain = _chain(found, 1, None) if found else []
        if len(chain) >= 2:
            out.extend(_split_at(text, mk, chain))
        else:
            out.append((mk, text))
    return out


def _letter(marker: str) -> int:
    return ord(marker) - 96


def _roman(marker: str) -> int:
    return _ROMANS.index(marker.lower()) + 1


def runon(marker: str, family: str, style: str, value: object, content: str) -> list[tuple[str | None, str]]:
    """Split a run-on line into ``(marker, text)`` pieces (marker ``None`` for unmarked text)."""
    first: str | None = marker or None
    pieces: list[tuple[str | None, str]] = [(first, content)]
    if not content:
        return pieces
    if _DIGIT.search(content):  # the inline numbers are \d
        found = [
            (m.start(), m.end(), int(m["p"] or m["n"]), "()" if m["p"] else m["s"])
            for m in _INLINE_NUM.finditer(content)
        ]
        if found:
            if family == "num" and isinstance(value, int):
                chain = _chain(found, value + 1, style)
                ok = len(chain) >= 2 or (
                    len(chain) == 1
                    and (style in (")", "()") or content[: chain[0][0]].rstrip()[-1:] in (";", ".", ",", ":"))
                )
            else:
                chain, ok = [], False
            if not ok:  # a list of its own inside the item: 'Patients with: 1) ...; 2) ...'
                chain = _chain(found, 1, None)
                ok = len(chain) >= 2
            if ok:
                pieces = _split_at(content, first, chain)
    if ")" in content:
        pieces = _split_list(pieces, _INLINE_ALPHA, _letter)
    if "i)" in content.lower():
        pieces = _split_list(pieces, _INLINE_ROMAN, _roman)
    if "•" in content or "▪" in content or "●" in content:
        out: list[tuple[str | None, str]] = []
        for mk, text in pieces:
            parts = _INLINE_BULLET.split(text)
            if len(parts) > 1:
                out.append((mk, parts[0].strip()))
                out.extend(("•", p.strip()) for p in parts[1:])
            else:
                out.append((mk, text))
        pieces = out
    return pieces
