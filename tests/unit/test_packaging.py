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
