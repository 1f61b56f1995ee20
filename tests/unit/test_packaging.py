"""pyproject.toml: the wheel packages every gateway subpackage, the embedding model and a script that resolves;
the base dependencies cover everything the gateway imports outside the [local] extra."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
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


# -- a plain install (no extras) has everything the gateway runs on ------------------------------------

def distribution(requirement: str) -> str:
    """The normalised distribution name of a requirement string ("uvicorn[standard]>=0.30" -> "uvicorn")."""
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, whether at module level) for each absolute import in a source file."""
    tree = ast.parse(path.read_text())
    in_functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) not in in_functions) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) not in in_functions))
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def third_party_imports() -> dict[str, set[str]]:
    """Each non-stdlib top-level module the gateway imports -> the gateway modules importing it at module level."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "gateway").rglob("*.py"):
        for name, at_module_level in imports_of(path):
            top = name.partition(".")[0]
            if top in sys.stdlib_module_names or top in ("gateway", "__future__"):
                continue
            found.setdefault(top, set()).update([module_name(path)] if at_module_level else [])
    return found


def lazily_imported_modules() -> set[str]:
    """Gateway modules that no gateway module imports at module level: loaded only when a feature asks."""
    eager = {name for path in (ROOT / "gateway").rglob("*.py") for name, top in imports_of(path) if top and name.startswith("gateway.")}
    return {module_name(p) for p in (ROOT / "gateway").rglob("*.py")} - eager - {"gateway", "gateway.__main__"}


def test_every_module_the_gateway_imports_is_a_declared_dependency_and_extras_are_imported_lazily() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    base = {distribution(r) for r in PYPROJECT["project"]["dependencies"]}
    optional = {distribution(r) for name, reqs in extras.items() if name != "test" for r in reqs}
    owners = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    lazy = lazily_imported_modules()
    assert {"lancedb", "tokenizers", "numpy"} <= set(imports)
    for module, importers in sorted(imports.items()):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if dists & base:
            continue
        assert dists & optional, f"gateway imports {module} ({dists}), which no dependency of pyproject provides"
        eager = importers - lazy
        assert not eager, f"{module} is in an extra only, so {sorted(eager)} may import it inside functions only (or be imported lazily)"


def test_the_wheel_carries_the_shipped_embedding_model(tmp_path: Path) -> None:
    from gateway.memory.static_model import MODEL_FILES, SHIPPED_MODEL_DIR

    source = tmp_path / "src"
    shutil.copytree(ROOT / "gateway", source / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = "import setuptools.build_meta as b, sys; print(b.build_wheel(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    with zipfile.ZipFile(tmp_path / "dist" / result.stdout.strip().splitlines()[-1]) as wheel:
        inside = SHIPPED_MODEL_DIR.relative_to(ROOT).as_posix()
        for name in MODEL_FILES:
            assert wheel.read(f"{inside}/{name}") == (SHIPPED_MODEL_DIR / name).read_bytes(), name
        requires = [line for line in wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA"))).decode().splitlines()
                    if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any("tokenizers" in line for line in requires) and not any(("torch" in line or "model2vec" in line) for line in requires)
def test_every_data_file_under_gateway_is_declared_package_data() -> None:
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    data = [p for p in (ROOT / "gateway").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert any(p.name == "context_windows.toml" for p in data), "the context-window table should be found"

    def covered(path: Path) -> bool:
        for package, patterns in declared.items():
            base = ROOT.joinpath(*package.split("."))
            if base in path.parents and any(fnmatch.fnmatch(path.relative_to(base).as_posix(), pattern) for pattern in patterns):
                return True
        return False

    for path in data:
        assert covered(path), f"{path.relative_to(ROOT)} would be missing from a plain install"
