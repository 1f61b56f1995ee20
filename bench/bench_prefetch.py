"""The start-up prefetch: what it costs at start and what it saves on the first request after a restart.

    python bench/bench_prefetch.py [--users 256] [--memories 50] [--repeat 3]

Seeds --users users with --memories memories each straight into a store, then starts the real gateway over it
(`python -m gateway serve`) with and without the prefetch, alternating, --repeat times each: time from launch
to /readyz 200, the prefetch's own metrics, resident memory once ready, and the server-side recall time
(memgate_recall_duration_seconds) of the first request of the most recently active user and of a middle one.
One more user, the least recently active and never prefetched, asks first so the process's one-time costs
(first query embedding, tokenizer) fall on neither.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_recall_latency import API_KEY, memory_texts, start_upstream  # noqa: E402
from gateway.identity import key_fingerprint  # noqa: E402
from gateway.memory import tokens  # noqa: E402
from gateway.memory.embed import make_embedder  # noqa: E402
from gateway.memory.records import Memory  # noqa: E402
from gateway.memory.store import MemoryStore  # noqa: E402
from tests.harness import Gateway  # noqa: E402


async def seed(data_dir: Path, users: int, per_user: int) -> None:
    """user-0 is the most recently active, then user-1...user-(N-1), then user-N (the warm-up user)."""
    embedder = make_embedder("local")
    store = await MemoryStore.open(str(data_dir / "lancedb"), embedder.name, embedder.dim)
    texts = memory_texts(per_user)
    vectors = await embedder.embed(texts)
    now = time.time()
    await store.add([
        Memory(id=str(uuid.uuid4()), tenant=key_fingerprint(API_KEY), user_id=f"user-{u}", text=t, vector=v, created_at=now - u * 60 - i,
               tokens=tokens.count(t))
        for u in range(users + 1) for i, (t, v) in enumerate(zip(texts, vectors))
    ])
    await store.aclose()
    await embedder.aclose()


def recall_ms(gw: Gateway, user: str) -> float:
    """Server-side recall time of one request (hot-tier lookup or load, embedding, ranking, packing)."""
    before = gw.metric("memgate_recall_duration_seconds_sum")
    r = httpx.post(gw.v1 + "/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Where do I live?"}]},
                   headers={"Authorization": f"Bearer {API_KEY}", "X-Memory-User-Id": user}, timeout=30)
    assert r.status_code == 200, r.text
    return (gw.metric("memgate_recall_duration_seconds_sum") - before) * 1000


def resident_mb(gw: Gateway) -> float:
    return gw.metric("process_resident_memory_bytes") / 2**20


def run(upstream_url: str, data: Path, users: int, prefetch: int) -> dict[str, float]:
    # A generous recall timeout: a cold load must be measured, not cut off at the shipped 50 ms.
    rules = data.parent / "rules"
    rules.mkdir(exist_ok=True)
    gw = Gateway(upstream_url, data, rules=rules, log_level="warning", prefetch_users=prefetch)
    started = time.perf_counter()
    gw.start()
    ready = time.perf_counter() - started
    try:
        return {"ready_s": ready, "prefetched": gw.metric("memgate_prefetch_users"), "prefetch_s": gw.metric("memgate_prefetch_seconds"),
                "rss_mb": resident_mb(gw), "warmup_ms": recall_ms(gw, f"user-{users}"), "recent_ms": recall_ms(gw, "user-0"),
                "middle_ms": recall_ms(gw, f"user-{users // 2}")}
    finally:
        gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--memories", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memgate-prefetch-"))
    upstream, upstream_url = start_upstream()
    try:
        asyncio.run(seed(work / "data", args.users, args.memories))
        variants = {f"prefetch {args.users} users": args.users, "no prefetch": 0}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, prefetch in variants.items():
                results[name].append(run(upstream_url, work / "data", args.users, prefetch))
        print(f"{args.users + 1} users x {args.memories} memories, medians of {args.repeat} starts; recall ms of each user's first request")
        print(f"{'variant':<22} {'ready s':>8} {'prefetched':>10} {'prefetch s':>10} {'RSS MB':>7} {'warm-up user':>13} {'most recent':>12} {'middle':>8}")
        for name, runs in results.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{name:<22} {med['ready_s']:>8.2f} {med['prefetched']:>10.0f} {med['prefetch_s']:>10.2f} {med['rss_mb']:>7.0f} "
                  f"{med['warmup_ms']:>13.1f} {med['recent_ms']:>12.1f} {med['middle_ms']:>8.1f}")
    finally:
        upstream.terminate()


if __name__ == "__main__":
    main()
