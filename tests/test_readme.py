"""README.md's endpoint table against the service's OpenAPI document (``adapter/service/openapi.json``).

The table (``| method | route | query parameters | body | what it does |``) must list exactly the
documented operations, each with exactly its query parameters (``name`` or ``name=a|b`` where the
document enumerates the values), the media types its body may have, and every member of a JSON body's
schema. ``server`` is the only required query parameter, as the README says. The document itself is
kept equal to the served routes by ``tests/adapter/test_service.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.service.openapi import document

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HEADER = "| method | route | query parameters | body | what it does |"
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")
_MEDIA_TYPE = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")


@dataclass(frozen=True)
class Row:
    method: str
    route: str
    query: dict[str, frozenset[str] | None]  # name -> the values shown (name=a|b), or None
    media_types: frozenset[str]
    body: str


def _code(cell: str) -> list[str]:
    return [c.replace("\\|", "|") for c in _CODE.findall(cell)]


def readme_rows(text: str) -> list[Row]:
    lines = text.splitlines()
    assert HEADER in lines, f"README.md has no endpoint table headed {HEADER!r}"
    start = lines.index(HEADER) + 2  # past the header and the --- row
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]
        assert len(cells) == 5, line
        method, route, query, body, _ = cells
        params: dict[str, frozenset[str] | None] = {}
        for token in _code(query):
            name, _, values = token.partition("=")
            params[name] = frozenset(values.split("|")) if values else None
        media = frozenset(t for t in _code(body) if _MEDIA_TYPE.match(t))
        rows.append(Row(_code(method)[0], _code(route)[0], params, media, body))
    return rows


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def openapi_operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    }


def test_the_table_lists_exactly_the_documented_operations() -> None:
    rows = readme_rows(README.read_text("utf-8"))
    listed = [(r.method, r.route) for r in rows]
    assert len(listed) == len(set(listed)), "an operation is listed twice"
    assert set(listed) == set(openapi_operations(document()))


def test_each_operation_lists_its_query_parameters_and_their_values() -> None:
    doc = document()
    operations = openapi_operations(doc)
    for row in readme_rows(README.read_text("utf-8")):
        op = operations[(row.method, row.route)]
        params = [_resolve(doc, p) for p in op.get("parameters", [])]
        query = {p["name"]: p for p in params if p["in"] == "query"}
        where = f"{row.method} {row.route}"
        assert set(row.query) == set(query), where
        for name, param in query.items():
            enum = param.get("schema", {}).get("enum")
            shown = row.query[name]
            assert shown == (frozenset(enum) if enum else None), f"{where}: {name}"
            # The README says server is required wherever it appears, and nothing else is.
            assert bool(param.get("required")) == (name == "server"), f"{where}: {name}"


def test_each_operation_lists_its_body_media_types_and_json_members() -> None:
    doc = document()
    operations = openapi_operations(doc)
    for row in readme_rows(README.read_text("utf-8")):
        op = operations[(row.method, row.route)]
        content = op.get("requestBody", {}).get("content", {})
        where = f"{row.method} {row.route}"
        assert row.media_types == frozenset(content), where
        if not content:
            assert row.body == "-", where
        for media in content.values():
            schema = _resolve(doc, media.get("schema", {}))
            for member in schema.get("properties", {}):
                assert f'"{member}"' in row.body, f"{where}: body member {member}"


def test_the_service_example_makes_its_own_key() -> None:
    text = README.read_text("utf-8")
    section = text[text.index("## The web service"):text.index("## Security")]
    assert "export TRIALBRIDGE_API_KEYS=" in section
    assert "/run/secrets" not in section.split("```sh", 1)[1].split("```", 1)[0]
