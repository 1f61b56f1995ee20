"""pyproject.toml: the wheel packages every gateway subpackage and its `memgate` script resolves."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_directory_of_gateway_code_is_a_packaged_package() -> None:
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packaged = set(setuptools.find_packages(where=str(ROOT), include=find["include"]))
    with_code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gateway").rglob("*.py") if "__pycache__" not in p.parts}
    assert with_code <= packaged, f"not in the wheel: {sorted(with_code - packaged)}"


def test_the_memgate_script_points_at_a_callable() -> None:
    module, _, name = PYPROJECT["project"]["scripts"]["memgate"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_every_data_file_under_gateway_is_declared_package_data() -> None:
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    data = [p for p in (ROOT / "gateway").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "the context-window table should be found"
    for path in data:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        assert path.name in declared.get(package, []), f"{path.relative_to(ROOT)} would be missing from a plain install"
