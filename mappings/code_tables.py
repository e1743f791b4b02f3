"""The JSON code tables of ``mappings/tables``, read once through :mod:`importlib.resources`, and the
text -> code index of a table section (codes and their aliases, matched in any case, blanks collapsed).

Used by :mod:`mappings.enrolments` (``enrolment_codes.json``) and :mod:`mappings.lab_results`
(``loinc_labs.json``, ``lab_result_codes.json``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """The table ``tables/<name>`` as JSON data (cached: callers must not change it)."""
    return json.loads(resources.files(__package__).joinpath(f"tables/{name}").read_text("utf-8"))


def key(text: str) -> str:
    """``text`` as the indexes hold it: lower case, blanks collapsed."""
    return " ".join(text.split()).lower()


@cache
def text_index(name: str, section: str, with_aliases: bool) -> dict[str, str]:
    """text -> code for a section of ``code: [texts]`` (or ``code: {"aliases": [texts]}`` with
    ``with_aliases``); each code matches itself too, and ``_``-keys (notes) are skipped."""
    index: dict[str, str] = {}
    for code, entry in load(name)[section].items():
        if code.startswith("_"):
            continue
        index[key(code)] = code
        texts = entry.get("aliases", []) if with_aliases else entry
        for text in texts:
            index[key(text)] = code
    return index
