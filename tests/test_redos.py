"""Every parser of user text runs in linear time. Each regular expression in gateway/ and each function
that reads a caller's text is run on the worst inputs we know of (runs of whitespace, line breaks, '<',
commas and mixes of them, after the words the patterns look for) up to the size limit, and must stay
within a generous per-character budget; the parsers must also grow no faster than their input."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

import gateway
from gateway.extraction import statements
from gateway.memory import excerpts, inject, keywords, sessions, tokens
from gateway.extraction.base import Message
from gateway.extraction.heuristic import extract_statements
from gateway.extraction.jobs import MAX_TEXT
from gateway.memory.poisoning import looks_like_instruction
from gateway.memory.recall import query_text

from .extraction_helpers import flush, memories
from .fake_upstream import set_event
from .harness import ROOT, Gateway
from .memory_helpers import add_memory, tenant_of

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
    for module_info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if module_info.name == "gateway.__main__":
            continue
        module = importlib.import_module(module_info.name)
        short = module_info.name.removeprefix("gateway.")
        for name, value in vars(module).items():
            items = value if isinstance(value, (list, tuple)) else [value]
            for index, item in enumerate(items):
                for part in item if isinstance(item, tuple) else (item,):
                    if isinstance(part, re.Pattern):
                        found[f"{short}.{name}" + (f"[{index}]" if items is value else "")] = part
        source = Path(module.__file__ or "").read_text()
        for node in ast.walk(ast.parse(source)):
            inline = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                      and node.func.value.id == "re" and node.func.attr != "compile" and node.args and isinstance(node.args[0], ast.Constant))
            if inline:
                found[f"{short}:{node.lineno}"] = re.compile(node.args[0].value)
    return found


PATTERNS = gateway_patterns()


def test_the_audit_sees_every_pattern_of_the_user_text_parsers() -> None:
    # A guard on the walk itself: if it found nothing, every test below would pass vacuously.
    names = set(PATTERNS)
    assert {"memory.poisoning._INSTRUCTIONS[12]", "extraction.heuristic._SPLIT", "extraction.rewrite._TAIL", "extraction.statements._NEGATION",
            "extraction.statements._WORD", "memory.keywords._WORD"} <= names
    assert sum(name.startswith("extraction.heuristic.RULES[") for name in names) >= 20


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
    "reconcile slots": lambda text: statements.conflicts("User prefers " + text, "User prefers tea over coffee"),
    "keyword terms": keywords.terms,
    "injection quoting": inject.quoted,
    "token count": tokens.count,
    "recall query": lambda text: query_text({"messages": [{"role": "user", "content": text}]}),
    "overflow excerpts": lambda text: excerpts.parse(excerpts.Dropped(0, "user", (text,), hash(text) ^ time.perf_counter_ns())),  # never cached
    "session summary": lambda text: sessions.summarize([text]),
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


def test_an_exact_prompt_count_is_bounded_and_stops_when_its_recall_gives_up() -> None:
    tokens.count("warm up")
    words = "x1y2z3 " * 150_000  # 1 MB that tiktoken counts slowly: ~0.5 s exactly, so 8 s for the 16 MB below
    huge = {"messages": [{"role": "user", "content": words * 16}]}  # 16 MB, the body limit
    started = time.perf_counter()
    bounded = tokens.prompt_tokens(huge, "gpt-4.1", exact=True)
    assert time.perf_counter() - started < 1.0  # counted exactly up to EXACT_COUNT_MAX_CHARS only
    assert bounded >= 16 * len(tokens.encoding_for("gpt-4.1").encode_ordinary(words))  # the rest at its size: never under the truth
    assert tokens.memory_budget(huge, "gpt-4.1", 1024, 0.25) == 0  # 16 MB overflows a 1M-token window: nothing is injected
    spaces = {"messages": [{"role": "user", "content": " " * 1_000_000 + "x"}]}
    with ThreadPoolExecutor(1) as pool:  # where the gateway counts: a worker thread, whose stack such a run overflowed
        assert pool.submit(tokens.prompt_tokens, spaces, "gpt-4.1", exact=True).result() > 0
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3  # the recall timed out after three slices

    with pytest.raises(tokens.CountStopped):
        tokens.prompt_tokens(huge, "gpt-4.1", exact=True, stop=stop)
    assert asked == 4


# -- through a real gateway: one caller's pathological text never makes anyone else wait -------------

ATTACKER, BYSTANDER = "sk-redos-attacker", "sk-redos-bystander"
RUN = SIZE - 32  # each text fits a job whole: the extractor reads every character of it
PATHOLOGICAL = [
    "I prefer a" + " " * RUN + "b",  # the reported one: 28 s of /healthz at 1,000 spaces
    "I don't use c" + " " * RUN + "d anymore",
    "<" + " " * RUN + "/ x",
    "\n" * RUN + "system",
    ", " * (RUN // 2) + "I",
    "< /" * (RUN // 3),
    " \n<,\t#>*-:" * (RUN // 10),
    "My favourite drink is tea" + "\u2028" * RUN,
]
LATENCY_LIMIT = 0.25  # seconds, for /healthz and a bystander's chat while the texts above are processed

# The upstream and the attacker run in processes of their own, as they would: the process that
# measures latency must not be the one busy echoing or sending megabytes.
UPSTREAM = "import sys; from tests.fake_upstream import FakeUpstream; print(FakeUpstream().start().url, flush=True); sys.stdin.read()"
ATTACK = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
import httpx
url, key, bodies = sys.argv[1], sys.argv[2], sys.argv[3:]
def send(path):
    headers = {"Authorization": "Bearer " + key, "X-Memory-User-Id": "mallory", "Content-Type": "application/json"}
    with open(path, "rb") as f, httpx.stream("POST", url, content=f.read(), headers=headers, timeout=120) as response:
        for _ in response.iter_raw(65536):
            pass
        return response.status_code
with ThreadPoolExecutor(len(bodies)) as pool:
    print(json.dumps(list(pool.map(send, bodies))))
"""


def _probe(gw: Gateway, until: threading.Event, latencies: dict[str, list[float]]) -> None:
    """Time /healthz and a bystander's chat (memory on) back to back, at least once, until `until` is set."""
    headers = {"Authorization": f"Bearer {BYSTANDER}", "X-Memory-User-Id": "bob"}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What do I drink?"}]}
    with httpx.Client(timeout=10) as client:
        while True:
            started = time.perf_counter()
            assert client.get(gw.url + "/healthz").status_code == 200
            latencies["healthz"].append(time.perf_counter() - started)
            started = time.perf_counter()
            response = client.post(gw.v1 + "/chat/completions", json=body, headers=headers)
            latencies["chat"].append(time.perf_counter() - started)
            assert response.status_code == 200 and response.headers["X-Memory-Status"] == "ok", response.text
            if until.is_set():
                return


def test_pathological_texts_never_make_health_checks_or_other_callers_wait(tmp_path: Path) -> None:
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    gw: Gateway | None = None
    try:
        gw = Gateway(upstream.stdout.readline().strip(), tmp_path / "data").start()  # shipped rules, heuristic extractor, memory on
        add_memory(gw, ATTACKER, "mallory", "My name is Mallory")  # so recall (and its token count) runs for the attacker too
        add_memory(gw, BYSTANDER, "bob", "I drink green tea")
        bodies = []
        for index, (text, stream, model) in enumerate([(t, s, "gpt-4o") for t in PATHOLOGICAL for s in (False, True)]
                                                      # a prompt near a 1M-token window: the longest exact token count a recall can be asked for
                                                      + [(" " * 1_000_000 + "x", False, "gpt-4.1")]):
            bodies.append(tmp_path / f"body{index}.json")
            # A short last turn: the fake upstream echoes it (one event loop echoing 8,000 characters word by
            # word would measure the fake upstream); the gateway still reads the whole exchange.
            messages = [{"role": "user", "content": text}, {"role": "user", "content": "ok"}]
            bodies[-1].write_text(json.dumps({"model": model, "stream": stream, "messages": messages}))
        _probe(gw, set_event(threading.Event()), {"healthz": [], "chat": []})  # the bystander warm: first loads are not what is measured
        latencies: dict[str, list[float]] = {"healthz": [], "chat": []}
        done = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            prober = pool.submit(_probe, gw, done, latencies)
            try:
                attack = subprocess.run([sys.executable, "-c", ATTACK, gw.v1 + "/chat/completions", ATTACKER, *map(str, bodies)],
                                        capture_output=True, text=True, timeout=180)
                flushed = flush(gw, timeout=60)  # every job of those exchanges extracted while the probe runs
            finally:
                done.set()
            prober.result(timeout=30)  # a probe that timed out or failed fails the test
        assert attack.returncode == 0, attack.stderr
        assert json.loads(attack.stdout) == [200] * len(bodies)
        assert flushed["done"] is True, flushed
        learned = {m["text"] for m in memories(gw, "mallory", tenant=tenant_of(ATTACKER))}
        assert {"User prefers a b", "User no longer uses c d"} <= learned, learned  # the texts were really parsed, whole
        assert len(latencies["healthz"]) >= 5, latencies
        worst = {name: round(max(values) * 1000) for name, values in latencies.items()}
        print(f"worst latency (ms) over {len(latencies['healthz'])} probes while pathological texts were processed: {worst}")
        slowest = {name: sorted(round(v * 1000) for v in values)[-5:] for name, values in latencies.items()}
        assert worst["healthz"] < LATENCY_LIMIT * 1000 and worst["chat"] < LATENCY_LIMIT * 1000, slowest
    finally:
        if gw is not None:
            gw.stop()
        upstream.communicate("", timeout=10)
