"""Extraction quality of the offline (heuristic) extractor on a hand-written evaluation set: precision
and recall overall, per category, and on the held-out part (scored only to report, never tuned on).

    python bench/bench_extraction_quality.py             # the dev table
    python bench/bench_extraction_quality.py --misses    # and every miss and false memory of the dev part
    python bench/bench_extraction_quality.py --heldout   # and the held-out table (to report, not to tune on)

Each row of `bench/data/extraction_eval.jsonl` is one user message, the facts a memory must state
(each a list of key terms; "a/b" accepts either term) and, optionally, terms no memory may contain.
A memory is right when it matches an expected fact of its row, is written in the third person and
contains no forbidden term; every other memory is a false one (all memories of a distractor are).
Recall is the share of expected facts some memory of the row matches.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.extraction.base import Message  # noqa: E402
from gateway.extraction.heuristic import extract_statements  # noqa: E402

DATA = ROOT / "bench" / "data" / "extraction_eval.jsonl"
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|my|me|mine|we|our|us)\b", re.I)


@dataclass
class Score:
    expected: int = 0
    found: int = 0  # expected facts some memory matched
    memories: int = 0
    right: int = 0  # memories that matched an expected fact
    misses: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0

    @property
    def precision(self) -> float:
        return self.right / self.memories if self.memories else 1.0

    def add(self, other: Score) -> None:
        self.expected += other.expected
        self.found += other.found
        self.memories += other.memories
        self.right += other.right
        self.misses += other.misses
        self.false += other.false


def rows(split: str | None = None) -> list[dict]:
    with DATA.open(encoding="utf-8") as f:
        every = [json.loads(line) for line in f if line.strip()]
    return [r for r in every if split is None or r["split"] == split]


def _matches(memory: str, terms: list[str]) -> bool:
    text = memory.lower()
    return all(any(alt in text for alt in term.split("/")) for term in terms)


def score_row(row: dict) -> Score:
    memories = [c.text for c in extract_statements([Message("user", row["text"])])]
    forbid = [t.lower() for t in row.get("forbid", [])]
    usable = [m for m in memories if not _FIRST_PERSON.search(m) and not any(t in m.lower() for t in forbid)]
    score = Score(expected=len(row["expect"]), memories=len(memories))
    for terms in row["expect"]:
        if any(_matches(m, terms) for m in usable):
            score.found += 1
        else:
            score.misses.append(f"{row['text']!r} -> {memories} (wanted {terms})")
    for m in memories:
        if m in usable and any(_matches(m, terms) for terms in row["expect"]):
            score.right += 1
        else:
            score.false.append(f"{row['text']!r} -> {m!r}")
    return score


def evaluate(selected: list[dict]) -> tuple[Score, dict[str, Score]]:
    total, by_category = Score(), defaultdict(Score)
    for row in selected:
        s = score_row(row)
        total.add(s)
        by_category[row["category"]].add(s)
    return total, dict(by_category)


def table(title: str, selected: list[dict]) -> Score:
    total, by_category = evaluate(selected)
    print(f"\n{title}: {len(selected)} statements, {total.expected} facts, {total.memories} memories")
    print(f"{'category':<14}{'rows':>6}{'facts':>7}{'recall':>8}{'memories':>10}{'precision':>11}")
    for name in sorted(by_category):
        s = by_category[name]
        n = sum(1 for r in selected if r["category"] == name)
        print(f"{name:<14}{n:>6}{s.expected:>7}{s.recall:>8.2f}{s.memories:>10}{s.precision:>11.2f}")
    print(f"{'overall':<14}{len(selected):>6}{total.expected:>7}{total.recall:>8.2f}{total.memories:>10}{total.precision:>11.2f}")
    return total


def timing(selected: list[dict], repeat: int = 20) -> None:
    """Time to extract from one statement (the worker thread's CPU cost per message), median of `repeat` runs each."""
    per_row = []
    for row in selected:
        messages = [Message("user", row["text"])]
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            extract_statements(messages)
            runs.append(time.perf_counter() - started)
        per_row.append(statistics.median(runs) * 1e6)
    per_row.sort()
    p99 = per_row[min(len(per_row) - 1, int(0.99 * len(per_row)))]
    print(f"\nextraction time per statement: p50 {statistics.median(per_row):.0f} us, p99 {p99:.0f} us ({len(per_row)} statements)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true", help="list the dev set's misses and false memories")
    parser.add_argument("--heldout", action="store_true", help="also score the held-out part")
    args = parser.parse_args()
    dev = table("dev", rows("dev"))
    if args.heldout:
        table("held-out", rows("heldout"))
    timing(rows())
    if args.misses:
        print("\nmisses:", *dev.misses, sep="\n  ")
        print("\nfalse memories:", *dev.false, sep="\n  ")


if __name__ == "__main__":
    main()
