"""Retrieval quality on bench/data/recall_dataset.json: recall@5/@10 of dense-only, keyword-only (BM25) and hybrid.

    python bench/bench_recall_quality.py [--embedder local|minilm] [--local-model DIR]

Runs the gateway's own ranking code (gateway/memory/hot.py + gateway/memory/recall.py) over each user's turns. The
fusion weight is tuned on the dev half of the users (even indices) and reported on both halves, so the
test-half numbers are not fitted to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.memory.embed import LocalEmbedder, make_embedder  # noqa: E402
from gateway.memory.hot import UserMemories  # noqa: E402
from gateway.memory.recall import DENSE_WEIGHT, Query, rank  # noqa: E402
from gateway.memory.records import Memory  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "recall_dataset.json"
DAY = 86400.0
WEIGHTS = [round(w, 2) for w in np.arange(0.1, 1.0, 0.1)]


async def prepare(kind: str, local_model: Path | None) -> tuple[list[dict], dict[str, UserMemories], dict[str, np.ndarray]]:
    data = json.loads(DATA.read_text())
    embedder = LocalEmbedder(local_model) if local_model else make_embedder(kind)
    now = time.time()
    entries: dict[str, UserMemories] = {}
    questions: list[dict] = []
    texts = [t["text"] for u in data["users"] for t in u["turns"]]
    started = time.perf_counter()
    vectors = await embedder.embed(texts)
    q_texts = [q["question"] for u in data["users"] for q in u["questions"]]
    q_vectors = await embedder.embed(q_texts)
    print(f"embedder {embedder.name}: {len(texts) + len(q_texts)} texts in {(time.perf_counter() - started) * 1000:.0f} ms")
    row = 0
    for index, u in enumerate(data["users"]):
        memories = []
        for t in u["turns"]:
            created = now - (10 - t["session"]) * 7 * DAY  # sessions a week apart
            memories.append(Memory(id=t["id"], tenant="bench", user_id=u["user"], text=t["text"], vector=vectors[row], created_at=created, updated_at=created))
            row += 1
        entries[u["user"]] = UserMemories(memories, vectors.shape[1], 0)
        for q in u["questions"]:
            questions.append({**q, "split": "dev" if index % 2 == 0 else "test"})
    qvec = dict(zip(q_texts, q_vectors))
    await embedder.aclose()
    return questions, entries, qvec


def evaluate(questions: list[dict], entries: dict[str, UserMemories], qvec: dict[str, np.ndarray], method: str, weight: float = 0.5) -> dict[str, tuple[float, float]]:
    hits: dict[str, list[tuple[bool, bool]]] = {"dev": [], "test": []}
    for q in questions:
        query = Query.of(q["question"], qvec[q["question"]])
        ranked = [m.id for m, _ in rank(entries[q["user"]], query, top_k=10, method=method, weight=weight)]
        gold = set(q["gold"])
        hits[q["split"]].append((bool(gold & set(ranked[:5])), bool(gold & set(ranked[:10]))))
    return {split: (float(np.mean([h[0] for h in rows])), float(np.mean([h[1] for h in rows]))) for split, rows in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="local", choices=["local", "minilm"])
    parser.add_argument("--local-model", type=Path, help="a local model directory to measure instead of the shipped one (e.g. one `memgate prepare-model` built)")
    args = parser.parse_args()
    questions, entries, qvec = asyncio.run(prepare(args.embedder, args.local_model))
    n_dev = sum(q["split"] == "dev" for q in questions)
    print(f"{len(questions)} questions ({n_dev} dev / {len(questions) - n_dev} test), {sum(len(e) for e in entries.values())} memories in {len(entries)} users")

    # Tune on dev only.
    sweep = {w: evaluate(questions, entries, qvec, "score", w)["dev"] for w in WEIGHTS}
    best_w = max(sweep, key=lambda w: (sweep[w][1], sweep[w][0], -abs(w - DENSE_WEIGHT)))  # ties: the shipped default
    print("dev sweep of the dense weight (recall@5, recall@10): " + ", ".join(f"{w}: {r[0]:.3f}/{r[1]:.3f}" for w, r in sweep.items()))

    rows = [
        ("dense only", evaluate(questions, entries, qvec, "dense")),
        ("keyword only (BM25)", evaluate(questions, entries, qvec, "keyword")),
        ("hybrid RRF (k=60)", evaluate(questions, entries, qvec, "rrf")),
        (f"hybrid score fusion (w={best_w}, dev-tuned)", evaluate(questions, entries, qvec, "score", best_w)),
    ]
    print()
    print(f"{'method':44} {'dev R@5':>8} {'dev R@10':>9} {'test R@5':>9} {'test R@10':>10}")
    for name, r in rows:
        print(f"{name:44} {r['dev'][0]:8.3f} {r['dev'][1]:9.3f} {r['test'][0]:9.3f} {r['test'][1]:10.3f}")


if __name__ == "__main__":
    main()
