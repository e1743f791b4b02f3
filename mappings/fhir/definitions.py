"""The conformance resources of trialbridge, built from the tables: a CodeSystem and a ValueSet (all of
its codes) per code system of ours, and a StructureDefinition per extension, for FHIR R4 and R5.

:func:`build` is pure; the JSON files under ``mappings/definitions/<version>/`` are its output
(written by ``trialbridge definitions write``, kept in sync by a test) and what ``trialbridge
definitions push`` loads onto a server.  Every resource has a fixed id starting ``trialbridge-`` (so
a PUT by id is idempotent and never touches another tool's resources), its canonical URL under
``https://trialbridge.dev/fhir/`` and a generated narrative.  The codes come from
``ctgov_vocabulary.json`` (``ctgov-<list>``) and from every ``{system, code, display}`` entry of the
tables; the extensions from ``definitions.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .. import vocabulary
from .narrative import narrative
from .systems import CS, JSON, SD, TB
from .tables import load_table, own_system

FHIR_VERSIONS = {"R4": "4.0.1", "R5": "5.0.0"}
PUBLISHER = "trialbridge"
STATUS = "active"
VERSION = "1.0.0"


def resource_id(name: str) -> str:
    """The server id of one of our definitions (unique to trialbridge, at most 64 characters)."""
    return f"trialbridge-{name}"[:64]


# --- code systems --------------------------------------------------------------------------------


def _table_names() -> list[str]:
    folder = resources.files("mappings").joinpath("tables")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))


def _walk(node: Any, found: dict[str, dict[str, str]]) -> None:
    """Collect ``{system, code, display}`` entries of our code systems into ``found``."""
    if isinstance(node, dict):
        system, code = node.get("system"), node.get("code")
        if isinstance(system, str) and system.startswith(CS) and isinstance(code, str):
            found.setdefault(system, {}).setdefault(code, node.get("display") or code)
        for value in node.values():
            _walk(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk(value, found)


def code_systems() -> dict[str, dict[str, str]]:
    """``{code system URL: {code: display}}`` of every code system of ours the mapping writes."""
    found: dict[str, dict[str, str]] = {}
    for kind in vocabulary.kinds():
        found[own_system(kind)] = {c: vocabulary.display(kind, c) for c in vocabulary.codes(kind)}
    for name in _table_names():
        _walk(json.loads(resources.files("mappings").joinpath("tables", name).read_text("utf-8")), found)
    shared = load_table("fhir_shared.json")
    found.setdefault(CS + "ctgov-secondary-id-type", {}).update(
        {k: v["display"] for k, v in shared["secondary_id_types"].items() if not k.startswith("_")})
    for name, spec in load_table("definitions.json")["code_systems"].items():
        found.setdefault(CS + name, {}).update(spec.get("concepts", {}))
        for table, block in spec.get("from", []):
            entries = load_table(table)[block]
            found[CS + name].update({e["code"]: e["display"]
                                     for k, e in entries.items() if not k.startswith("_")})
    return dict(sorted(found.items()))


def _title(name: str) -> str:
    spec = load_table("definitions.json")["code_systems"].get(name, {})
    return str(spec.get("title") or "ClinicalTrials.gov " + name.removeprefix("ctgov-").replace("-", " "))


def code_system(url: str, concepts: dict[str, str], version: str) -> JSON:
    name = url[len(CS):]
    title = _title(name)
    return {
        "resourceType": "CodeSystem", "id": resource_id(name),
        "text": narrative(f"CodeSystem {title}", [f"{c}: {d}" for c, d in concepts.items()]),
        "url": url, "version": VERSION, "name": _pascal(name), "title": title, "status": STATUS,
        "experimental": False, "publisher": PUBLISHER,
        "description": f"{title}: the codes trialbridge writes (table-driven).",
        "caseSensitive": True, "valueSet": TB + "ValueSet/" + name, "content": "complete",
        "count": len(concepts),
        "concept": [{"code": c, "display": d} for c, d in concepts.items()],
    }


def value_set(url: str, concepts: dict[str, str], version: str) -> JSON:
    name = url[len(CS):]
    title = _title(name)
    return {
        "resourceType": "ValueSet", "id": resource_id(name),
        "text": narrative(f"ValueSet {title}", [f"All codes of {url}"]),
        "url": TB + "ValueSet/" + name, "version": VERSION, "name": _pascal(name), "title": title,
        "status": STATUS, "experimental": False, "publisher": PUBLISHER,
        "description": f"Every code of the {title} code system.",
        "compose": {"include": [{"system": url}]},
    }


# --- extensions ----------------------------------------------------------------------------------


def _types(codes: list[str]) -> list[JSON]:
    return [{"code": c} for c in codes]


def _slices(prefix: str, path: str, parts: dict[str, Any]) -> list[JSON]:
    """The differential of the sub-extensions ``parts`` under ``prefix`` (element id) / ``path``."""
    out: list[JSON] = [{"id": f"{prefix}.extension", "path": f"{path}.extension",
                        "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}}]
    for name, kind in parts.items():
        sid = f"{prefix}.extension:{name}"
        out.append({"id": sid, "path": f"{path}.extension", "sliceName": name, "min": 0, "max": "*"})
        if isinstance(kind, dict):
            out += _slices(sid, f"{path}.extension", kind)
            out += [{"id": f"{sid}.url", "path": f"{path}.extension.url", "fixedUri": name},
                    {"id": f"{sid}.value[x]", "path": f"{path}.extension.value[x]", "max": "0"}]
        else:
            out += [{"id": f"{sid}.extension", "path": f"{path}.extension.extension", "max": "0"},
                    {"id": f"{sid}.url", "path": f"{path}.extension.url", "fixedUri": name},
                    {"id": f"{sid}.value[x]", "path": f"{path}.extension.value[x]", "min": 1,
                     "type": _types(kind)}]
    return out


def structure_definition(name: str, spec: JSON, version: str) -> JSON:
    url = SD + name
    if "parts" in spec:
        body = [*_slices("Extension", "Extension", spec["parts"]),
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
                {"id": "Extension.value[x]", "path": "Extension.value[x]", "max": "0"}]
        shape = "sub-extensions " + ", ".join(spec["parts"])
    else:
        body = [{"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
                {"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1,
                 "type": _types(spec["value"])}]
        shape = "value " + " | ".join(spec["value"])
    return {
        "resourceType": "StructureDefinition", "id": resource_id(name),
        "text": narrative(f"Extension {spec['title']}", [spec["description"], f"URL {url}", shape]),
        "url": url, "version": VERSION, "name": _pascal(name), "title": spec["title"], "status": STATUS,
        "experimental": False, "publisher": PUBLISHER, "description": spec["description"],
        "fhirVersion": FHIR_VERSIONS[version], "kind": "complex-type", "abstract": False,
        "context": [{"type": "element", "expression": "Element"}],
        "type": "Extension", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {"element": [
            {"id": "Extension", "path": "Extension", "short": spec["title"],
             "definition": spec["description"]},
            *body]},
    }


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))


def build(version: str) -> list[JSON]:
    """Every conformance resource of ``version`` (R4 or R5): CodeSystems, ValueSets, StructureDefinitions."""
    systems = code_systems()
    out = [code_system(url, concepts, version) for url, concepts in systems.items()]
    out += [value_set(url, concepts, version) for url, concepts in systems.items()]
    out += [structure_definition(name, spec, version)
            for name, spec in load_table("definitions.json")["extensions"].items()
            if version in spec["versions"]]
    return sorted(out, key=_order)


def file_name(resource: JSON) -> str:
    """The file of a definition under ``mappings/definitions/<version>/``."""
    return f"{resource['resourceType']}-{resource['id']}.json"


def committed(version: str) -> list[JSON]:
    """The definitions committed under ``mappings/definitions/<version>/`` (what ``push`` loads)."""
    folder = resources.files("mappings").joinpath("definitions", version.lower())
    found = [json.loads(p.read_text("utf-8")) for p in folder.iterdir() if p.name.endswith(".json")]
    return sorted(found, key=_order)


def _order(resource: JSON) -> tuple[int, str]:
    """CodeSystems, then ValueSets, then StructureDefinitions; by id within each."""
    kinds = ("CodeSystem", "ValueSet", "StructureDefinition")
    return kinds.index(resource["resourceType"]), resource["id"]


__all__ = ["FHIR_VERSIONS", "build", "code_system", "code_systems", "committed", "file_name", "resource_id",
           "structure_definition", "value_set"]
