"""Latency of recall and injection: end to end through the gateway, and recall alone at scale.

    python bench/bench_recall_latency.py [--seconds 10] [--rows 1000000] [--skip-e2e] [--skip-scale]

Part 1 (wrk, real processes): the fake upstream direct, the gateway with memory off, and the gateway
injecting for a warm user holding 1,000 memories plus --episodes archival episodes (default 10,000;
every one embedded, as the gateway does); p50/p99 and throughput at 1 and 64 connections. It also
prints what embedding the episodes cost, and what the dense and keyword halves of ranking cost with
and without them (what indexing episodes by keyword only would save).
Every request asks a different question, so the query-embedding cache never helps.

Part 2 (in process): recall alone (MemoryLayer.recall_block: embed, hybrid rank, core profile, pack,
render) for warm users with 1k and 10k memories in a table of --rows rows, plus the cold costs
(loading a user into the hot tier, a filtered LanceDB vector query) that the hot tier avoids.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.memory.embed import make_embedder  # noqa: E402
from gateway.exchange import ChatContext  # noqa: E402
from gateway.identity import Identity, key_fingerprint  # noqa: E402
from gateway.memory.layer import MemoryLayer  # noqa: E402
from gateway.memory.service import MemoryService  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.rules import RuleSettings  # noqa: E402
from gateway.memory.records import Memory  # noqa: E402
from gateway.memory.store import MemoryStore  # noqa: E402
from gateway.memory import tokens  # noqa: E402
from tests.harness import Gateway  # noqa: E402

DATASET = ROOT / "bench" / "data" / "recall_dataset.json"
API_KEY = "sk-bench"
USER = "bench-user"
FACTS_USER = "bench-facts-only"  # the same 1,000 memories, no episodes: the episodes' cost is the difference
WORDS = ("garden river coffee mountain bicycle guitar kitchen window jacket museum teacher violin harbour pepper lantern "
         "Berlin Lisbon Porto python rust kubernetes terraform dog cat sister wife vegetarian peanuts cello marathon "
         "editor neovim deploy budget trip Japan morning allergic favourite team payments platform birthday").split()

WRK_LUA = r"""
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"%s (question %d from %s)"}]}', QUESTIONS[(counter % #QUESTIONS) + 1], counter, THREAD_ID)
  return wrk.format("POST", "/v1/chat/completions", HEADERS, body)
end
"""


def questions() -> list[str]:
    data = json.loads(DATASET.read_text())
    return sorted({q["question"].replace('"', "").replace("'", "") for u in data["users"] for q in u["questions"]})


def memory_texts(n: int) -> list[str]:
    data = json.loads(DATASET.read_text())
    turns = [t["text"] for u in data["users"] for t in u["turns"]]
    return [f"{turns[i % len(turns)]} ({i})" for i in range(n)]


# -- part 1: end to end with wrk --------------------------------------------------------------------

def start_upstream() -> tuple[subprocess.Popen, str]:
    code = "import time; from tests.fake_upstream import FakeUpstream; u = FakeUpstream().start(); print(u.url, flush=True); time.sleep(1e9)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


async def seed_user(data_dir: Path, n: int, episodes: int = 0, user: str = USER) -> None:
    """Write a user's memories (and archival episodes) straight into the store the gateway will open."""
    embedder = make_embedder("local")
    store = await MemoryStore.open(str(data_dir / "lancedb"), embedder.name, embedder.dim)
    texts = memory_texts(n)
    vectors = await embedder.embed(texts)
    now = time.time()
    await store.add([
        Memory(id=str(uuid.uuid4()), tenant=key_fingerprint(API_KEY), user_id=user, text=t, vector=v, created_at=now - i * 3600,
               kind="preference" if i % 25 == 0 else "fact", pinned=i < 3, tokens=tokens.count(t), tier="core" if i % 25 == 0 or i < 3 else "recall")
        for i, (t, v) in enumerate(zip(texts, vectors))
    ])
    if episodes:
        said = [f"Episode {i}: " + t for i, t in enumerate(memory_texts(episodes))]
        started = time.perf_counter()
        vectors = await embedder.embed(said)
        spent = time.perf_counter() - started
        print(f"embedding {episodes:,} episodes ({embedder.name}): {spent * 1000:.0f} ms in batches, {spent / episodes * 1e6:.1f} us per episode; "
              f"{vectors.nbytes / 2**20:.1f} MiB of vectors in the hot tier")
        for start in range(0, episodes, 5000):
            await store.add([
                Memory(id=str(uuid.uuid4()), tenant=key_fingerprint(API_KEY), user_id=user, text=t, vector=v, created_at=now - i * 600,
                       kind="note", tier="archival", tokens=tokens.count(t))
                for i, (t, v) in enumerate(zip(said[start:start + 5000], vectors[start:start + 5000]), start=start)
            ])
    await store.aclose()
    await embedder.aclose()


def wrk(url: str, connections: int, seconds: int, headers: dict[str, str], qs: list[str], script_dir: Path) -> dict[str, float]:
    lua = script_dir / f"wrk-{connections}.lua"
    header_lua = "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"
    qs_lua = "{" + ", ".join(json.dumps(q) for q in qs) + "}"
    lua.write_text(f"HEADERS = {header_lua}\nQUESTIONS = {qs_lua}\nTHREAD_ID = tostring(math.random(1, 1000000))\n" + WRK_LUA)
    threads = 1 if connections == 1 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50": ms("50"), "p99": ms("99"), "rps": rps, "errors": int(errors.group(1)) if errors else 0}


def overhead_buckets(gw: Gateway) -> dict[float, float]:
    import httpx

    out = {}
    for line in httpx.get(gw.url + "/metrics").text.splitlines():
        m = re.match(r'memgate_overhead_seconds_bucket\{le="([^"]+)",route="chat"\} (\S+)', line)
        if m:
            out[float(m.group(1))] = float(m.group(2))
    return out


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """Upper bound of the histogram bucket holding quantile q of the requests between two snapshots."""
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts[float("inf")]
    for le, n in counts.items():
        if total and n >= q * total:
            return f"<={le * 1000:g}" if le != float("inf") else ">1000"
    return "-"


def part_one(seconds: int, episodes: int) -> None:
    qs = questions()
    work = Path(tempfile.mkdtemp(prefix="memgate-bench-"))
    upstream, upstream_url = start_upstream()
    asyncio.run(seed_user(work / "data", 1000, episodes))
    if episodes:
        asyncio.run(seed_user(work / "data", 1000, user=FACTS_USER))
    asyncio.run(ranking_halves(work / "data", qs))
    gw = Gateway(upstream_url, work / "data", production_rules=True, log_level="warning").start()
    try:
        base = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", "X-Memory-User-Id": USER}
        # Warm the user into the hot tier and check injection really happens.
        import httpx

        for warm in [USER] + ([FACTS_USER] if episodes else []):
            deadline = time.monotonic() + 60  # the first recall loads the user in the background and may time out
            while True:
                r = httpx.post(gw.v1 + "/chat/completions", headers={**base, "X-Memory-User-Id": warm},
                               json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Where do I live?"}]})
                if r.status_code == 200 and int(r.headers["X-Memory-Injected"]) > 0 or time.monotonic() > deadline:
                    break
            assert r.status_code == 200 and int(r.headers["X-Memory-Injected"]) > 0, r.headers
            print(f"warm user {warm}: {r.headers['X-Memory-Injected']} memories, {r.headers['X-Memory-Injected-Tokens']} tokens injected per request")
        scenarios = [
            ("upstream direct", upstream_url.removesuffix("/v1"), base),
            ("gateway, memory off", gw.url, {**base, "X-Memory-Mode": "off"}),
            (f"gateway, injecting (1k + {episodes // 1000}k ep.)", gw.url, {**base, "X-Memory-Mode": "read"}),
        ] + ([("gateway, injecting (1k, no episodes)", gw.url, {**base, "X-Memory-Mode": "read", "X-Memory-User-Id": FACTS_USER})] if episodes else [])
        results = {}
        for connections in (1, 64):
            for name, url, headers in scenarios:
                wrk(url, connections, 2, headers, qs, work)  # warm-up: connections, caches, JIT-free but fair
                before = overhead_buckets(gw)
                results[(name, connections)] = wrk(url, connections, seconds, headers, qs, work)
                after = overhead_buckets(gw)
                results[(name, connections)]["server"] = "" if url != gw.url else f"{bucket_quantile(before, after, 0.5)}/{bucket_quantile(before, after, 0.99)}"
        print(f"\n{'end to end (wrk, JSON chat)':36} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'added p50':>10} {'errors':>6} {'gateway overhead p50/p99 ms':>28}")
        for connections in (1, 64):
            direct = results[("upstream direct", connections)]["p50"]
            for name, _, _ in scenarios:
                r = results[(name, connections)]
                added = "" if name == "upstream direct" else f"{r['p50'] - direct:+.2f}"
                print(f"{name:36} {connections:5d} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f} {added:>10} {r['errors']:6d} {r['server']:>28}")
        print("gateway overhead: the gateway's own histogram (memgate_overhead_seconds: request time minus upstream time), bucket bounds")
        print(f"recall_duration (server side) mean over all injecting requests: {gw.metric('memgate_recall_duration_seconds_sum') / max(1, gw.metric('memgate_recall_duration_seconds_count')) * 1000:.3f} ms")
    finally:
        gw.stop()
        upstream.kill()
        shutil.rmtree(work, ignore_errors=True)


async def ranking_halves(data_dir: Path, qs: list[str]) -> None:
    """Per query: the dense product and BM25 over the facts alone and over facts plus episodes."""
    from threadpoolctl import threadpool_limits

    from gateway.memory.hot import UserMemories
    from gateway.memory.recall import Query, rank, relevance_of

    threadpool_limits(1, user_api="blas")  # as MemoryService does: one BLAS thread per process
    embedder = make_embedder("local")
    store = await MemoryStore.open(str(data_dir / "lancedb"), embedder.name, embedder.dim)
    rows = await store.active(key_fingerprint(API_KEY), USER)
    started = time.perf_counter()
    both = UserMemories(rows, embedder.dim, 0)
    load = time.perf_counter() - started
    facts = UserMemories([m for m in rows if m.tier != "archival"], embedder.dim, 0)
    queries = [Query.of(q, v) for q, v in zip(qs, await embedder.embed(qs))]

    def per_query(fn) -> float:
        t = time.perf_counter()
        for q in queries:
            fn(q)
        return (time.perf_counter() - t) / len(queries) * 1000

    print(f"\nranking one query (in process, mean over {len(queries)} questions), hot-tier index of {len(both):,} rows built in {load * 1000:.0f} ms:")
    for label, entry in (("facts only", facts), ("facts + episodes", both)):
        dense = per_query(lambda q: entry.matrix @ q.vector)
        keyword = per_query(lambda q: entry.keywords.scores(q.terms))
        full = per_query(lambda q: (rank(entry, q, archival=False, scores=(s := relevance_of(entry, q))), rank(entry, q, top_k=4, archival=True, scores=s)))
        print(f"  {label:18} {len(entry):6,} rows: dense {dense:.3f} ms, BM25 {keyword:.3f} ms, both tiers ranked {full:.3f} ms")
    await store.aclose()
    await embedder.aclose()


# -- part 2: recall alone at scale ------------------------------------------------------------------

async def build_table(uri: str, rows: int, dim: int, name: str) -> float:
    """rows-10k users of 1k random memories plus one user of 10k; returns seconds spent."""
    store = await MemoryStore.open(uri, name, dim)
    rng = np.random.default_rng(7)
    words = np.array(WORDS)
    started = time.perf_counter()
    plan = [("big", 10_000)] + [(f"u{i}", 1000) for i in range((rows - 10_000) // 1000)]
    batch: list[Memory] = []
    now = time.time()

    async def flush() -> None:
        await store.add(batch)
        batch.clear()

    for user, count in plan:
        vectors = rng.standard_normal((count, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        picks = rng.integers(0, len(words), (count, 10))
        for i in range(count):
            text = "I " + " ".join(words[picks[i]])
            batch.append(Memory(id=str(uuid.uuid4()), tenant="bench", user_id=user, text=text, vector=vectors[i], created_at=now - i,
                                updated_at=now - i, kind="preference" if i % 50 == 0 else "fact", pinned=i < 2, tokens=14))
        if len(batch) >= 100_000:
            await flush()
    if batch:
        await flush()
    await store.optimize()
    await store.aclose()
    return time.perf_counter() - started


_SEQ = iter(range(0, 10**12, 10**6))  # every timed run asks new questions: no embedding-cache hits


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def timed_recalls(layer: MemoryLayer, user: str, n: int, concurrency: int, qs: list[str]) -> dict[str, float]:
    durations: list[float] = []
    injected: list[int] = []
    start = next(_SEQ)
    counter = iter(range(start, start + 10**6))

    async def one() -> None:
        i = next(counter)
        ctx = ChatContext(f"r{i}", Identity("bench", user), "default", RuleSettings(recall_timeout_ms=5000), "gpt-4o-mini", True, False)
        payload = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{qs[i % len(qs)]} ({i})"}]}
        t = time.perf_counter()
        await layer.recall_block(ctx, payload, True)
        durations.append((time.perf_counter() - t) * 1000)
        injected.append(ctx.injected)

    async def worker(k: int) -> None:
        for _ in range(k):
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {"p50": pct(durations, 50), "p99": pct(durations, 99), "rps": len(durations) / wall, "injected": statistics.mean(injected)}


async def part_two(rows: int) -> None:
    qs = questions()
    work = Path(tempfile.mkdtemp(prefix="memgate-bench-scale-"))
    embedder = make_embedder("local")
    uri = str(work / "lancedb")
    try:
        built = await build_table(uri, rows, embedder.dim, embedder.name)
        store = await MemoryStore.open(uri, embedder.name, embedder.dim)
        print(f"\ntable: {await store.table.count_rows():,} rows built in {built:.0f}s (batched adds of 100k, then optimize)")
        service = MemoryService(store, embedder, Metrics(), hot_users=64)
        layer = MemoryLayer(service, Metrics())
        cold = []
        for i in range(20):
            t = time.perf_counter()
            await store.active("bench", f"u{i}")
            cold.append((time.perf_counter() - t) * 1000)
        query = (await embedder.embed(["where do I live?"]))[0]
        lance = []
        for i in range(20):
            t = time.perf_counter()
            await store.table.query().nearest_to(query).where(f"tenant = 'bench' AND user_id = 'u{i}' AND superseded_by IS NULL").limit(10).to_arrow()
            lance.append((time.perf_counter() - t) * 1000)
        print(f"cold tier, 1k-memory user in a {rows:,}-row table: hot-tier load p50 {pct(cold, 50):.1f} ms, "
              f"filtered LanceDB vector query p50 {pct(lance, 50):.1f} ms (p99 {pct(lance, 99):.1f})")
        print(f"\n{'recall alone (warm, in process)':36} {'conc':>5} {'p50 ms':>8} {'p99 ms':>8} {'recalls/s':>10} {'injected':>9}")
        for user, label in (("u0", "1k memories/user"), ("big", "10k memories/user")):
            await service.hot.get("bench", user)  # warm
            for concurrency in (1, 64):
                r = await timed_recalls(layer, user, 640 if concurrency == 64 else 300, concurrency, qs)
                print(f"{label + f', {rows:,} rows':36} {concurrency:5d} {r['p50']:8.3f} {r['p99']:8.3f} {r['rps']:10.0f} {r['injected']:9.1f}")
        await service.aclose()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per scenario")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table for part 2")
    parser.add_argument("--episodes", type=int, default=10_000, help="archival episodes of the warm user in part 1")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    if not args.skip_e2e:
        part_one(args.seconds, args.episodes)
    if not args.skip_scale:
        asyncio.run(part_two(args.rows))


if __name__ == "__main__":
    main()
