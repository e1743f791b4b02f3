"""The version facade (:mod:`mappings.fhir`): version detection, bad inputs, and output of one
version carrying nothing of the other."""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

import mappings.fhir
from mappings.errors import InputError, MappingError
from mappings.fhir import SUPPORTED_VERSIONS, detect_version, read_bundle, write_bundle
from mappings.model import Eligibility, Protocol
from tests.mappings.strategies import resources, seed_protocol, study

NCT = "NCT03945487"


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_version_is_detected_from_the_study(version):
    assert detect_version(write_bundle(seed_protocol(), version).bundle) == version


def test_version_from_the_group_meta_or_default():
    minimal = Protocol(nct_id="NCT00000001", eligibility=Eligibility(criteria="Adults"))
    for version in SUPPORTED_VERSIONS:
        bundle = write_bundle(minimal, version).bundle
        assert set(study(bundle)) <= {"resourceType", "text", "identifier", "status", "relatedArtifact",
                                      "extension", "enrollment", "recruitment"}
        rs = study(bundle)
        rs.pop("enrollment", None), rs.pop("recruitment", None)
        assert detect_version(bundle) == version  # from the eligibility Group
    bare = {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "ResearchStudy", "status": "active"}}]}
    assert detect_version(bare) == "R4"
    bare["meta"] = {"profile": ["http://hl7.org/fhir/R5/StructureDefinition/Bundle"]}
    assert detect_version(bare) == "R5"


def test_bad_inputs():
    with pytest.raises(InputError, match="unsupported FHIR version"):
        write_bundle(seed_protocol(), "DSTU2")
    with pytest.raises(InputError, match="Bundle"):
        read_bundle({"resourceType": "ResearchStudy"})
    with pytest.raises(MappingError, match="no ResearchStudy"):
        read_bundle({"resourceType": "Bundle", "type": "collection", "entry": []}, "R4")
    with pytest.raises(MappingError, match="NCT"):
        write_bundle(Protocol(nct_id=""), "R4")
    with pytest.raises(MappingError, match="partial ISO date"):
        write_bundle(replace(seed_protocol(), status_verified_date="May 2019"), "R5")


def test_r5_no_r4_elements_in_r5_output(r5_bundle, r5_rs):
    assert not {"arm", "objective", "enrollment", "sponsor", "principalInvestigator", "category", "contact",
                "reasonStopped", "location"} & set(r5_rs)
    (group,) = resources(r5_bundle, "Group")
    assert "actual" not in group and "quantity" not in group


def _fhir_imports() -> dict[str, set[str]]:
    """Module of mappings.fhir -> the modules of mappings.fhir it imports (anywhere in its text)."""
    root = Path(mappings.fhir.__file__).parent
    graph = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                module = f"{target}.{alias.name}"
                found.add(module if importlib.util.find_spec(module.split(".")[0]) and _is_module(module)
                          else target)
        graph[name] = {m for m in found if m.startswith("mappings.fhir") and m != name}
    return graph


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_no_import_cycle_in_mappings_fhir():
    graph = _fhir_imports()
    assert "mappings.fhir.study_context" in graph and "mappings.fhir.r4.study" in graph
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join([*path, name])
        if name in done:
            return
        for dep in sorted(graph.get(name, ())):
            visit(dep, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_no_module_of_mappings_fhir_over_600_lines():
    root = Path(mappings.fhir.__file__).parent
    long = {p.name: n for p in root.rglob("*.py") if (n := len(p.read_text("utf-8").splitlines())) > 600}
    assert long == {}
