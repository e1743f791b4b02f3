"""CSV that a spreadsheet cannot run: every CSV line trialbridge writes goes through :func:`csv_line`.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a formula
by Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``,
``@SUM(1+1)``): a subject id or a lab value from a hostile source would run on the analyst's
machine.  As OWASP recommends ("CSV Injection"), such a cell is written with a single quote before
it and always quoted (``"'=HYPERLINK(...)"``, inner ``"`` doubled); the quote shows the text as text.

One exemption: a cell that is a plain decimal number (``-3.5``, ``+2``, ``-1E+2``) is written as it
is.  A spreadsheet reads it as a number, never a formula, and a negative lab value (base excess)
must stay a number for the analysis.  Every other cell is written as :mod:`csv` writes it (quoted
only when it holds a comma, a quote or a line break), so ordinary output is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["FORMULA_LEADS", "csv_line", "neutralise"]

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")

_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def neutralise(cell: str) -> str:
    """``cell`` with a ``'`` before it when a spreadsheet would read it as a formula (see above)."""
    if cell.startswith(FORMULA_LEADS) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _field(cell: str) -> str:
    safe = neutralise(cell)
    if safe != cell or _NEEDS_QUOTES.search(safe):
        return '"' + safe.replace('"', '""') + '"'
    return safe


def csv_line(cells: Iterable[str]) -> str:
    """One CSV line (``\\n``-terminated) of ``cells``, formula-leading cells neutralised."""
    return ",".join(_field(str(cell)) for cell in cells) + "\n"
