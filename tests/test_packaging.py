"""The wheel built from this tree: it carries every table, schema and the OpenAPI document, and,
installed in a fresh virtual environment, its ``trialbridge`` command maps the seed record exactly as
the working tree does.

Offline and deterministic: the wheel is built with the project venv's own setuptools (no build
isolation, no index), from a copy of the tree so no ``build/`` or ``*.egg-info`` lands in it. The fresh
venv has no pip and no project code; its third-party dependencies come from the project venv's
site-packages through a ``.pth`` line. A directory named in a ``.pth`` line joins ``sys.path`` but its
own ``.pth`` files are not run, so the project venv's editable hook of trialbridge stays out: what the
fresh venv imports as ``mappings`` and ``adapter`` is the wheel's copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "ctgov" / "NCT03945487.txt"
# Top-level entries of the tree the build does not read (hapi/ holds links to the running servers).
_NOT_COPIED = {".git", ".venv", "hapi", "out", "build", "dist", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def _run(args: list[str], *, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "PIP_FIND_LINKS"}}
    env["PIP_NO_INDEX"] = "1"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _copy_tree(dest: Path) -> Path:
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for entry in ROOT.iterdir():
        if entry.name in _NOT_COPIED or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, dest / entry.name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = _copy_tree(work / "src")
    out = work / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--no-build-isolation", "--no-index",
         ".", "-w", str(out)],
        cwd=src,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log
    # The build warns about nothing (such as "BuildBackendWarning: Package 'mappings.tables' is absent
    # from the `packages` configuration", as it did while the data folders looked like packages).
    assert not re.findall(r".*\b[A-Z]\w*Warning\b.*", log), log
    wheels = list(out.glob("trialbridge-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "v"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=venv.parent).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "project_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)), "utf-8")
    installed = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--quiet", str(wheel)],
        cwd=venv.parent,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


def test_wheel_carries_every_table_schema_and_the_openapi_document(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    expected = {
        p.relative_to(ROOT).as_posix()
        for pattern in ("mappings/tables/*.json", "mappings/schemas/*.json", "adapter/service/openapi.json")
        for p in ROOT.glob(pattern)
    }
    assert len(expected) >= 3
    assert expected <= names, sorted(expected - names)
    # Every module of the two packages, and nothing from tests/, bench/ or fixtures/.
    modules = {
        p.relative_to(ROOT).as_posix() for top in ("mappings", "adapter") for p in (ROOT / top).rglob("*.py")
    }
    assert modules <= names, sorted(modules - names)
    assert not {n for n in names if n.split("/")[0] in {"tests", "bench", "fixtures", "hapi"}}


def test_installed_wheel_imports_its_own_copy(fresh_venv: Path) -> None:
    code = (
        "import mappings, adapter, adapter.service.openapi as o; "
        "print(mappings.__file__); print(adapter.__file__); print(len(o.document()['paths']))"
    )
    ran = _run([str(fresh_venv / "bin" / "python"), "-c", code], cwd=fresh_venv.parent)
    assert ran.returncode == 0, ran.stderr
    mappings_file, adapter_file, paths = ran.stdout.split()
    assert Path(mappings_file).is_relative_to(fresh_venv), mappings_file
    assert Path(adapter_file).is_relative_to(fresh_venv), adapter_file
    assert int(paths) > 0


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_installed_trialbridge_maps_the_seed_record_like_the_tree(fresh_venv: Path, version: str) -> None:
    installed = _run([str(fresh_venv / "bin" / "trialbridge"), "map", "--fhir-version", version, str(SEED)],
                     cwd=fresh_venv.parent)
    assert installed.returncode == 0, installed.stderr
    in_tree = _run([sys.executable, "-m", "adapter.cli", "map", "--fhir-version", version, str(SEED)],
                   cwd=ROOT)
    assert in_tree.returncode == 0, in_tree.stderr
    assert '"resourceType": "Bundle"' in installed.stdout
    assert installed.stdout == in_tree.stdout
