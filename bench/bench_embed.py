"""Embedder latency and throughput: local (the shipped static model) vs minilm, plus cold load time.

    python bench/bench_embed.py [--queries 2000]

The cold load also times model2vec's own runtime on the same model files when it is installed
([local] extra), the alternative the numpy runtime was chosen over.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.memory.embed import Embedder, LocalEmbedder, make_embedder  # noqa: E402
from gateway.memory.static_model import SHIPPED_MODEL_DIR  # noqa: E402

WORDS = (
    "I prefer use like my our the a Terraform Kubernetes Python Rust Berlin cat dog Felix sister "
    "meeting Tuesday vegetarian peanuts editor Neovim job engineer deploy budget trip Japan coffee "
    "morning run allergic favourite which what where when do did tool language live work called"
).split()


def queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(5, 14))) + f" {i}?" for i in range(n)]


LOADERS = {
    "local": "from gateway.memory.embed import make_embedder; make_embedder('local')",
    "local via model2vec": f"from model2vec import StaticModel; StaticModel.from_pretrained({str(SHIPPED_MODEL_DIR)!r}, force_download=False)",
    "minilm": "from gateway.memory.embed import make_embedder; make_embedder('minilm')",
}


def load_seconds(loader: str) -> float:
    """Cold start in a fresh interpreter, imports included, as the gateway would pay it."""
    code = f"import time; t = time.perf_counter(); {LOADERS[loader]}; print(time.perf_counter() - t)"
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
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    await run(n=args.queries)


async def run(*, n: int) -> None:
    loaders = [name for name in LOADERS if "model2vec" not in name or importlib.util.find_spec("model2vec")]
    print("cold load, fresh interpreter (median of 3): " + ", ".join(
        f"{name} {sorted(load_seconds(name) for _ in range(3))[1] * 1e3:.0f} ms" for name in loaders) + "\n")

    local = LocalEmbedder()
    threaded = LocalEmbedder(inline_max_chars=0)
    minilm = make_embedder("minilm")
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
