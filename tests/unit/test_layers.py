"""The package's shape: no import cycles, no upward imports across layers, small modules.

Layers, lowest first: kernel (top-level config, errors, logs, metrics, sqlite, rules, identity,
exchange, upstream) <- memory (gateway.memory.*) <- extraction (gateway.extraction.*) <- edge
(everything else: app, server, proxy, replies, ..., gateway.admin.*, gateway.cli.*). A module may
import its own layer or a lower one. Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"  # not imported: its __init__ boots the app
KERNEL = {f"gateway.{name}" for name in ("config", "errors", "logs", "metrics", "sqlite", "rules", "identity", "exchange", "upstream")}
LAYERS = ("kernel", "memory", "extraction", "edge")  # lowest first
MAX_TOP_LEVEL_MODULES = 20
MAX_MODULE_LINES = 400

def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    if module in KERNEL:
        return "kernel"
    if module == "gateway.memory" or module.startswith("gateway.memory."):
        return "memory"
    if module == "gateway.extraction" or module.startswith("gateway.extraction."):
        return "extraction"
    return "edge"


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The gateway module `name` refers to: itself if it is one, else its closest known parent."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every gateway module `module` imports, wherever the import statement sits."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from gateway.memory import tokens` imports the submodule gateway.memory.tokens.
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names]
        for name in names:
            if name == "gateway" or name.startswith("gateway."):
                found = _resolve(name, known)
                if found is not None and found != module:
                    out.add(found)
    return out


@lru_cache(maxsize=1)
def _graph() -> tuple[tuple[str, frozenset[str]], ...]:
    known = modules()
    return tuple((name, frozenset(imports_of(name, path, known))) for name, path in known.items())


def import_graph() -> dict[str, set[str]]:
    """Module -> the gateway modules it imports (parsed once per session)."""
    return {name: set(targets) for name, targets in _graph()}


def _components(graph: dict[str, set[str]]) -> dict[str, int]:
    """Strongly connected component id of every module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    component: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = index[node]
                    if member == node:
                        break
    return component


def violations(graph: dict[str, set[str]]) -> set[str]:
    """'cycle: a -> b' for every import edge inside an import cycle, 'upward: a (layer) -> b (layer)' for
    every import of a higher layer. Edges, not whole cycles, so fixing part of a cycle shrinks the set."""
    component = _components(graph)
    found: set[str] = set()
    for module, targets in graph.items():
        for target in targets:
            if component[module] == component[target]:
                found.add(f"cycle: {module} -> {target}")
            if LAYERS.index(layer(target)) > LAYERS.index(layer(module)):
                found.add(f"upward: {module} ({layer(module)}) -> {target} ({layer(target)})")
    return found


def _listing(items: set[str]) -> str:
    return "\n  ".join(sorted(items))


def test_the_import_graph_sees_imports_inside_functions(tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from gateway.memory import tokens\n    import gateway.rules.sub\n    import json\n")
    known = {"gateway.memory": path, "gateway.memory.tokens": path, "gateway.rules": path, "gateway.x": path}
    assert imports_of("gateway.x", path, known) == {"gateway.memory.tokens", "gateway.rules"}


def test_relative_imports_resolve_against_the_importing_module(tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    path.write_text("from . import tokens\nfrom ..rules import Rule\n")
    known = {"gateway.memory.tokens": path, "gateway.rules": path, "gateway.memory.x": path}
    assert imports_of("gateway.memory.x", path, known) == {"gateway.memory.tokens", "gateway.rules"}


def test_the_layering_check_flags_an_upward_import_and_every_edge_of_a_cycle() -> None:
    graph = {"gateway.rules": {"gateway.memory.tokens"}, "gateway.memory.tokens": {"gateway.rules"}, "gateway.app": {"gateway.rules"}}
    assert violations(graph) == {
        "cycle: gateway.rules -> gateway.memory.tokens",
        "cycle: gateway.memory.tokens -> gateway.rules",
        "upward: gateway.rules (kernel) -> gateway.memory.tokens (memory)",
    }


def test_imports_within_a_layer_or_downward_are_fine() -> None:
    graph = {"gateway.app": {"gateway.extraction.queue", "gateway.admin.memories"}, "gateway.extraction.queue": {"gateway.memory.store"},
             "gateway.memory.store": {"gateway.rules"}, "gateway.admin.memories": set(), "gateway.rules": set()}
    assert violations(graph) == set()


def test_no_import_cycle_and_no_upward_import() -> None:
    found = violations(import_graph())
    assert not found, "import cycles or upward imports (layers, lowest first: kernel, memory, extraction, edge):\n  " + _listing(found)


def test_the_package_top_level_has_at_most_20_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules at gateway/'s top level (at most {MAX_TOP_LEVEL_MODULES}): {top}"


def test_no_module_is_over_400_lines() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_every_gateway_module_is_in_the_graph() -> None:
    graph = import_graph()
    assert {"gateway.proxy", "gateway.memory.service", "gateway.extraction.heuristic", "gateway.admin.memories", "gateway.cli.main"} <= set(graph)
