"""Every parser of user text runs in linear time. Each regular expression in gateway/ and each function
that reads a caller's text is run on the worst inputs we know of (runs of whitespace, line breaks, '<',
commas and mixes of them, after the words the patterns look for) up to the size limit, and must stay
within a generous per-character budget; the parsers must also grow no faster than their input."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import gateway
from gateway import inject, keywords, slots, tokens
from gateway.extract import Message, looks_like_instruction
from gateway.extract_heuristic import extract_statements
from gateway.jobs import MAX_TEXT
from gateway.recall import query_text

SIZE = MAX_TEXT  # the most text of one message an extraction job keeps
# Runs that made the old patterns quadratic or cubic, and mixes of their characters.
FILLERS = [" ", "\n", "\t", "<", ",", ", ", "< /", "\u2028", "\r\n", " \n<,\t#>*-:", "a", "and I ", "ignore all "]
# What the patterns look for just before such a run.
PREFIXES = ["", "I prefer a", "I don't use a", "my x is", "<", "system", "consider", "User prefers a"]
SIZES = (125, 250, 500, 1000, 2000, 4000, SIZE)  # grown step by step: a cubic pattern fails early, not after hours


def budget(size: int) -> float:
    """Seconds allowed for one search of `size` characters: ~10 us a character, far above what any
    linear pattern here costs (under 3 us) and far below a quadratic one at 8,000 characters."""
    return 0.005 + 10e-6 * size


def adversarial(size: int) -> Iterator[tuple[str, str]]:
    for prefix in PREFIXES:
        for filler in FILLERS:
            run = (filler * (size // len(filler) + 1))[: max(0, size - len(prefix) - 1)]
            yield f"{prefix!r}+{filler!r}", prefix + run + "b"


def fastest(run: Callable[[], Any], tries: int = 3) -> float:
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def gateway_patterns() -> dict[str, re.Pattern[str]]:
    """Every compiled pattern a gateway module holds (alone, or in a list of rules), and every
    pattern written inline in a `re.<function>("...")` call."""
    found: dict[str, re.Pattern[str]] = {}
    for module_info in pkgutil.iter_modules(gateway.__path__):
        if module_info.name == "__main__":
            continue
        module = importlib.import_module(f"gateway.{module_info.name}")
        for name, value in vars(module).items():
            items = value if isinstance(value, (list, tuple)) else [value]
            for index, item in enumerate(items):
                for part in item if isinstance(item, tuple) else (item,):
                    if isinstance(part, re.Pattern):
                        found[f"{module_info.name}.{name}" + (f"[{index}]" if items is value else "")] = part
        source = Path(module.__file__ or "").read_text()
        for node in ast.walk(ast.parse(source)):
            inline = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                      and node.func.value.id == "re" and node.func.attr != "compile" and node.args and isinstance(node.args[0], ast.Constant))
            if inline:
                found[f"{module_info.name}:{node.lineno}"] = re.compile(node.args[0].value)
    return found


PATTERNS = gateway_patterns()


def test_the_audit_sees_every_pattern_of_the_user_text_parsers() -> None:
    # A guard on the walk itself: if it found nothing, every test below would pass vacuously.
    names = set(PATTERNS)
    assert {"extract._INSTRUCTION", "extract_heuristic._SPLIT", "extract_heuristic._TAIL", "slots._NEGATION", "keywords._WORD"} <= names
    assert sum(name.startswith("extract_heuristic.RULES[") for name in names) >= 20


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_searches_the_worst_inputs_in_linear_time(name: str) -> None:
    pattern = PATTERNS[name]
    for size in SIZES:
        for label, text in adversarial(size):
            took = fastest(lambda: pattern.search(text), tries=1)
            if took > budget(size):
                took = fastest(lambda: pattern.search(text))  # a scheduling hiccup is not a slow pattern
            assert took <= budget(size), f"{name} took {took * 1000:.1f} ms on {label} x {size} characters"


def _extract(text: str) -> object:
    return extract_statements([Message("assistant", "I'd suggest " + text, source=False), Message("user", text)])


PARSERS: dict[str, Callable[[str], object]] = {
    "instruction detector": looks_like_instruction,
    "heuristic extractor": _extract,
    "reconcile slots": lambda text: slots.conflicts("User prefers " + text, "User prefers tea over coffee"),
    "keyword terms": keywords.terms,
    "injection quoting": inject.quoted,
    "token count": tokens.count,
    "recall query": lambda text: query_text({"messages": [{"role": "user", "content": text}]}),
}


@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_every_parser_of_user_text_grows_no_faster_than_its_input(parser: str) -> None:
    run = PARSERS[parser]
    run("warm up")  # the token count loads its encoding once
    for prefix in ("", "I prefer a", "system"):
        for filler in (" ", "\n", "<", ",", " \n<,\t#>*-:", "a"):
            small = prefix + filler * (SIZE // len(filler))
            big = prefix + filler * (8 * SIZE // len(filler))
            took = fastest(lambda: run(small))
            assert took <= 4 * budget(SIZE), f"{parser} took {took * 1000:.1f} ms on {prefix!r}+{filler!r} x {SIZE} characters"
            grew = fastest(lambda: run(big), tries=2) / max(took, 0.001)
            if grew > 32:  # measured again, both sizes: another process may have had the cores
                grew = min(grew, fastest(lambda: run(big), tries=2) / max(fastest(lambda: run(small)), 0.001))
            # 8x the text costs 8x the time, up to ~18x measured (caches, a busy machine); a quadratic parser costs 64x.
            assert grew <= 32, f"{parser}: 8x the text ({prefix!r}+{filler!r}) cost {grew:.0f}x the time"
