"""The heuristic extractor on the dev part of the hand-written evaluation set
(`bench/data/extraction_eval.jsonl`): precision and recall must not fall below floors set a little under
what it reaches, so a pattern change that loses facts or keeps distractors fails here. The held-out
part is scored only by `bench/bench_extraction_quality.py --heldout`, never here."""

from __future__ import annotations

from bench.bench_extraction_quality import evaluate, rows

RECALL_FLOOR = 0.97
PRECISION_FLOOR = 0.97


def test_the_evaluation_set_is_large_varied_and_has_distractors_and_a_held_out_part() -> None:
    every = rows()
    assert len(every) >= 300
    assert len({r["category"] for r in every}) >= 20
    assert sum(1 for r in every if not r["expect"]) >= 80
    assert 0.25 <= sum(1 for r in every if r["split"] == "heldout") / len(every) <= 0.35


def test_dev_recall_of_the_facts_stays_above_its_floor() -> None:
    total, _ = evaluate(rows("dev"))
    assert total.recall >= RECALL_FLOOR, "\n".join(total.misses)


def test_dev_precision_of_the_memories_stays_above_its_floor() -> None:
    total, _ = evaluate(rows("dev"))
    assert total.precision >= PRECISION_FLOOR, "\n".join(total.false)


def test_no_distractor_category_becomes_memories() -> None:
    _, by_category = evaluate(rows("dev"))
    for name in ("question", "hypothetical", "injection", "task", "quoted", "small", "third"):
        assert by_category[name].memories == 0, by_category[name].false
