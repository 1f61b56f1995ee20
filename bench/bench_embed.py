"""Embedder latency and throughput: local (model2vec) vs minilm, plus distil and load time.

    python bench/bench_embed.py [--cache-dir DIR] [--queries 2000]

Distils into a fresh temp dir (to time it) unless --cache-dir names a warm cache.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.memory.embed import Embedder, LocalEmbedder, make_embedder, prepare_local_model  # noqa: E402

WORDS = (
    "I prefer use like my our the a Terraform Kubernetes Python Rust Berlin cat dog Felix sister "
    "meeting Tuesday vegetarian peanuts editor Neovim job engineer deploy budget trip Japan coffee "
    "morning run allergic favourite which what where when do did tool language live work called"
).split()


def queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(5, 14))) + f" {i}?" for i in range(n)]


def load_seconds(kind: str, cache_dir: Path) -> float:
    """Cold start in a fresh interpreter, imports included, as the gateway would pay it."""
    code = (
        "import time, pathlib; t = time.perf_counter(); from gateway.memory.embed import make_embedder; "
        f"make_embedder({kind!r}, cache_dir=pathlib.Path({str(cache_dir)!r})); print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


async def per_query_ms(embedder: Embedder, texts: list[str]) -> tuple[float, float]:
    await embedder.embed(["warm up"])
    times = []
    for text in texts:
        start = time.perf_counter()
        await embedder.embed([text])
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


async def batch_per_second(embedder: Embedder, texts: list[str]) -> float:
    start = time.perf_counter()
    await embedder.embed(texts)
    return len(texts) / (time.perf_counter() - start)


async def concurrent_per_second(embedder: Embedder, texts: list[str]) -> tuple[float, int]:
    calls = embedder.batch_calls
    start = time.perf_counter()
    await asyncio.gather(*(embedder.embed([text]) for text in texts))
    return len(texts) / (time.perf_counter() - start), embedder.batch_calls - calls


def row(*cells: object) -> None:
    print("  ".join(f"{c:<34}" if i == 0 else f"{c:>14}" for i, c in enumerate(cells)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, help="a warm model cache; default: distil into a temp dir")
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="memgate-bench-") as scratch:
        await run(args.cache_dir or Path(scratch), warm=args.cache_dir is not None, n=args.queries)


async def run(cache_dir: Path, *, warm: bool, n: int) -> None:
    start = time.perf_counter()
    model_dir = prepare_local_model(cache_dir)
    distil = time.perf_counter() - start
    print(f"distil (model2vec from MiniLM, incl. torch import): {distil:.1f} s"
          f"{' (cache was warm)' if warm else ''} -> {model_dir}")
    print(f"cold load, fresh interpreter: local {load_seconds('local', cache_dir) * 1e3:.0f} ms, "
          f"minilm {load_seconds('minilm', cache_dir) * 1e3:.0f} ms\n")

    local = LocalEmbedder(model_dir)
    threaded = LocalEmbedder(model_dir, inline_max_chars=0)
    minilm = make_embedder("minilm", cache_dir=cache_dir)
    row("embedder", "p50 ms/query", "p99 ms/query", "batch texts/s", "concurrent/s")
    for label, embedder, count in [
        (f"{local.name} inline", local, n),
        (f"{threaded.name} via thread", threaded, n),
        (minilm.name, minilm, max(n // 10, 100)),
    ]:
        p50, p99 = await per_query_ms(embedder, queries(count, seed=1))
        batch = await batch_per_second(embedder, queries(1024, seed=2))
        concurrent, batches = await concurrent_per_second(embedder, queries(256, seed=3))
        row(label, f"{p50:.3f}", f"{p99:.3f}", f"{batch:,.0f}", f"{concurrent:,.0f} ({batches} calls)")
    hit_p50, hit_p99 = await per_query_ms(local, queries(n, seed=1))  # every text already cached
    row("cache hit", f"{hit_p50:.3f}", f"{hit_p99:.3f}", "", "")
    for embedder in (local, threaded, minilm):
        await embedder.aclose()


if __name__ == "__main__":
    asyncio.run(main())
