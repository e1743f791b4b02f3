"""The code tables of ``mappings/tables`` and the :class:`Coder` they drive.

:func:`load_table` reads a table once; a table that lists ``includes`` (the version tables include
``fhir_shared.json``) gets the blocks of those tables merged in, so a fact the versions share is
written in one table.  :class:`Coder` turns model codes (ClinicalTrials.gov API v2 enum names) into
CodeableConcepts and back, driven by a version table's ``codings``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import overload

from .. import vocabulary
from ..errors import MappingIssue
from .systems import CS, JSON


@cache
def load_table(name: str) -> JSON:
    """A code table from ``mappings/tables`` (parsed once), with the tables it ``includes`` merged in."""
    text = resources.files("mappings").joinpath("tables", name).read_text("utf-8")
    table = json.loads(text)
    for included in table.get("includes", []):
        _merge(table, load_table(included), f"{name} includes {included}")
    return table


def _merge(table: JSON, shared: JSON, where: str) -> None:
    """Add the blocks of ``shared`` to ``table``: a block both have is merged one level down (e.g.
    ``codings``), and a fact written in both is an error (one table per fact)."""
    for key, block in shared.items():
        if key.startswith("_") or key == "includes":
            continue
        if key not in table:
            table[key] = dict(block) if isinstance(block, dict) else block
            continue
        if not (isinstance(table[key], dict) and isinstance(block, dict)):
            raise ValueError(f"{where}: {key!r} is in both tables")
        twice = sorted(k for k in block if k in table[key] and not k.startswith("_"))
        if twice:
            raise ValueError(f"{where}: {key}.{twice} are in both tables")
        table[key].update({k: v for k, v in block.items() if not k.startswith("_")})


def own_system(kind: str) -> str:
    """Our code system for a ClinicalTrials.gov code list: ``.../CodeSystem/ctgov-<list>``."""
    return CS + "ctgov-" + kind.replace("_", "-")


@cache
def _vocabulary_codes(kind: str) -> frozenset[str]:
    try:
        return frozenset(vocabulary.codes(kind))
    except KeyError:
        return frozenset()


def _from_text(kind: str, text: str) -> str | None:
    """The model code whose code or first display form ``text`` is (any case, ``_`` or spaces),
    else ``None``; never a legacy alias (``ANTICIPATED`` stays text: the model keeps it so)."""
    wanted = " ".join(text.replace("_", " ").split()).lower()
    for code in _vocabulary_codes(kind):
        if wanted in (code.replace("_", " ").lower(), vocabulary.display(kind, code).lower()):
            return code
    return None


class Coder:
    """Turns model codes into CodeableConcepts and back, driven by one version table."""

    def __init__(self, table: JSON) -> None:
        self._specs: dict[str, JSON] = table.get("codings", {})
        self._reverse: dict[str, dict[tuple[str, str], list[str]]] = {}
        self._known: dict[str, dict[str, tuple[JSON, ...]]] = {}
        self._systems_to_kind = {own_system(k): k for k in self._all_kinds()}
        enums = table.get("ctgov_enums") or {}
        #: ClinicalTrials.gov's enumeration systems -> code list (codes read as they are).
        self._enum_kind = {enums["base"] + name: kind for name, kind in enums.get("enums", {}).items()}
        self._systems_to_kind.update(self._enum_kind)
        for kind, spec in self._specs.items():
            rev: dict[tuple[str, str], list[str]] = {}
            for m in (*spec.get("maps", []), *spec.get("read_maps", [])):
                for value, (code, _display) in m["codes"].items():
                    for system in (m["system"], *m.get("also_systems", [])):
                        rev.setdefault((system, code), []).append(value)
            self._reverse[kind] = rev

    def _all_kinds(self) -> set[str]:
        kinds = set(self._specs)
        kinds.update(k for k in load_table("ctgov_vocabulary.json") if not k.startswith("_"))
        return kinds

    def kind_of_system(self, system: str | None) -> str | None:
        """The code list whose own (ctgov) code system is ``system``."""
        return self._systems_to_kind.get(system or "")

    @overload
    def concept(self, kind: str, value: str, issues: list[MappingIssue], field_name: str,
                label: str | None = None) -> JSON: ...
    @overload
    def concept(self, kind: str, value: str | None, issues: list[MappingIssue], field_name: str,
                label: str | None = None) -> JSON | None: ...
    def concept(self, kind: str, value: str | None, issues: list[MappingIssue], field_name: str,
                label: str | None = None) -> JSON | None:
        """The CodeableConcept for ``value`` of code list ``kind`` (``None`` for ``None``)."""
        if value is None:
            return None
        codings = self._codings(kind).get(value)
        if codings is None:
            issues.append(MappingIssue(field_name, f"no code for this {kind} value; kept as text", value))
            return {"text": f"{label}: {value}" if label else value}
        return {"coding": [dict(c) for c in codings]}

    def _codings(self, kind: str) -> dict[str, tuple[JSON, ...]]:
        """The codings of each value of code list ``kind`` that has any (our own code, mapped
        codes), worked out once per code list (:meth:`concept` copies them)."""
        known = self._known.get(kind)
        if known is None:
            spec = self._specs.get(kind, {})
            values = set(_vocabulary_codes(kind))
            values.update(v for m in spec.get("maps", []) for v in m["codes"])
            known = self._known[kind] = {}
            for value in values:
                codings = self._work_out(kind, spec, value)
                if codings:
                    known[value] = codings
        return known

    def _work_out(self, kind: str, spec: JSON, value: str) -> tuple[JSON, ...]:
        mapped = []
        for m in spec.get("maps", []):
            hit = m["codes"].get(value)
            if hit:
                mapped.append({"system": m["system"], "code": hit[0], "display": hit[1]})
        own = None
        if value in _vocabulary_codes(kind):
            own = {"system": own_system(kind), "code": value, "display": vocabulary.display(kind, value)}
        if own is None:
            return tuple(mapped)
        rev = self._reverse.get(kind, {})
        recoverable = any(rev.get((c["system"], c["code"])) == [value] for c in mapped)
        if spec.get("source_coding") == "always":
            return (own, *mapped)
        if not recoverable:
            return (*mapped, own)
        return tuple(mapped)

    def value(self, kind: str, concept: JSON | None, issues: list[MappingIssue], field_name: str,
              label: str | None = None) -> str | None:
        """The model code of a CodeableConcept written by :meth:`concept` (or by someone else)."""
        if not concept:
            return None
        codings = [c for c in concept.get("coding", []) if isinstance(c, dict)]
        mine = own_system(kind)
        for c in codings:
            if c.get("system") == mine and c.get("code"):
                return c["code"]
            if self._enum_kind.get(c.get("system", "")) == kind and c.get("code") in _vocabulary_codes(kind):
                return c["code"]
        rev = self._reverse.get(kind, {})
        for c in codings:
            hit = rev.get((c.get("system", ""), c.get("code", "")))
            if hit:
                return hit[0]
        text = concept.get("text")
        if text is not None:
            if label and text.lower().startswith(label.lower() + ": "):
                text = text[len(label) + 2:]
            known = _from_text(kind, text)
            if known is not None:
                return known  # another writer's text of a known value (code or display, any case)
            issues.append(MappingIssue(field_name, f"not a coded {kind} value; kept as text", text))
            return text
        for c in codings:
            kept = c.get("code") or c.get("display")
            if kept:
                issues.append(MappingIssue(field_name, f"unknown {kind} code {c.get('system')}; kept", kept))
                return kept
        return None

    def classify(self, concept: JSON, candidates: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
        """Which of ``candidates`` (code list, label) a CodeableConcept belongs to: by our coding's
        system, else by a mapped FHIR code, else by the ``"<label>: "`` prefix of its text.
        Returns (code list, the label when found by text, else "")."""
        candidates = list(candidates)
        kinds = [k for k, _ in candidates]
        for c in concept.get("coding", []):
            kind = self.kind_of_system(c.get("system"))
            if kind in kinds:
                return kind, ""
        for c in concept.get("coding", []):
            for kind in kinds:
                if (c.get("system", ""), c.get("code", "")) in self._reverse.get(kind, {}):
                    return kind, ""
        text = (concept.get("text") or "").lower()
        for kind, label in candidates:
            if text.startswith(label.lower() + ": "):
                return kind, label
        return None

    def known(self, kind: str, value: str) -> bool:
        """True when ``value`` has a FHIR code in this table (e.g. a combined phase)."""
        return any(value in m["codes"] for m in self._specs.get(kind, {}).get("maps", []))


def coding(entry: JSON) -> JSON:
    """A Coding from a table entry ``{system, code, display}``."""
    return {"system": entry["system"], "code": entry["code"], "display": entry["display"]}


def has_coding(concept: JSON | None, entry: JSON) -> bool:
    """True when ``concept`` carries the coding of table entry ``entry``."""
    return any(c.get("system") == entry["system"] and c.get("code") == entry["code"]
               for c in (concept or {}).get("coding", []))


@cache
def coder_for(table_name: str) -> Coder:
    """The (cached) coder of a version table."""
    return Coder(load_table(table_name))


__all__ = ["Coder", "coder_for", "coding", "has_coding", "load_table", "own_system"]
