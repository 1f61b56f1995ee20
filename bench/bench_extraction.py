"""Extraction: queue throughput (jobs/s, heuristic and llm against the local fake upstream), the cost
of committing a job, and chat latency with extraction on vs off (same gateway, same upstream).

    python bench/bench_extraction.py                 # defaults: 400 jobs, 300 latency samples a cell
    python bench/bench_extraction.py --jobs 1000 --samples 1000

Throughput: in-process with the gateway's own parts (SQLite queue, MemoryService over LanceDB and the
local embedder; the llm extractor calls the fake upstream over HTTP). Jobs are committed with no
workers, then a queue with 2 workers reopens the file and is timed until flush() returns. Users are
distinct (no coalescing) except in the `coalesced` row (10 jobs per user: one extraction call each).

Latency: requests rotate X-Memory-Mode read-write (recall + capture), read (recall only) and off
(plain proxy) against one gateway, so both see the same hot tier and the same background work; `upstream direct`
is the fake upstream without the gateway. Client-side wall time, sequential, medians of 2 noisy cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.harness import ADMIN_TOKEN, Gateway  # noqa: E402

KEY = "sk-bench"
MODEL_CACHE = Path(tempfile.gettempdir()) / "memgate-test-models"  # shared with the tests' gateways
FACTS = ["I live in Lisbon.", "My timezone is CET.", "I prefer Terraform over CloudFormation.", "I work at Acme.", "I'm vegetarian.",
         "We're migrating to AWS.", "I speak Portuguese.", "My favorite editor is Neovim.", "I have two cats.", "I no longer use Jenkins."]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def chat(client: httpx.Client, url: str, user: str, text: str, *, mode: str = "read-write", stream: bool = False) -> float:
    body = {"model": "m", "stream": stream, "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user, "X-Memory-Mode": mode}
    started = time.perf_counter()
    with client.stream("POST", url + "/chat/completions", json=body, headers=headers) as response:
        response.read()
        assert response.status_code == 200, response.status_code
    return time.perf_counter() - started


def throughput(upstream: FakeUpstream, work: Path, name: str, jobs: int, per_user: int, **settings: object) -> tuple[str, int, float, int]:
    """In-process, real parts: the gateway's SQLite queue, MemoryService (LanceDB, local embedder)
    and extractors; the llm one calls the fake upstream over HTTP. Jobs are committed with no
    workers running, then a queue with 2 workers starts on the file and is timed until flush returns."""
    from gateway.config import Settings
    from gateway.exchange import ChatContext, Reply
    from gateway.extraction.service import Extraction
    from gateway.identity import Identity
    from gateway.memory.service import MemoryService
    from gateway.metrics import Metrics
    from gateway.rules import RuleSettings
    from gateway.sqlite import open_db
    from gateway.upstream import Upstream

    base = Settings(upstream_url=upstream.url, data_dir=str(work / name), model_cache=str(MODEL_CACHE), **settings)  # type: ignore[arg-type]

    async def run() -> float:
        metrics = Metrics()
        http = Upstream(base)
        db = await open_db(base.sqlite_path)
        service = await MemoryService.open(base, metrics, http.client)
        idle = await Extraction.open(base.replace(extraction_workers=0), metrics, http, db, service)
        for i in range(jobs):
            ctx = ChatContext(f"r{i}", Identity("default", f"{name}-u{i // per_user}"), "defaults", RuleSettings(), "m", True, True, api_key=KEY)
            payload = {"messages": [{"role": "user", "content": FACTS[i % len(FACTS)].replace(".", f" {i}.")}]}
            assert await idle.queue.enqueue(ctx, payload, Reply("Noted."))
        await idle.aclose()
        started = time.perf_counter()
        busy = await Extraction.open(base.replace(extraction_workers=2), Metrics(), http, db, service)
        assert await busy.queue.flush(600)
        elapsed = time.perf_counter() - started
        state = busy.queue.state()
        assert state["depth"] == 0 and state["completed"] == jobs and state["dead_letters"] == 0, state
        await busy.aclose()
        await db.close()
        await service.aclose()
        await http.aclose()
        return elapsed

    calls_before = upstream.extraction_calls
    elapsed = asyncio.run(run())
    return name, jobs, elapsed, upstream.extraction_calls - calls_before


def enqueue_cost(samples: int) -> tuple[float, float]:
    """JobQueue.enqueue alone (one INSERT in autocommit on a WAL file, on the loop), no workers."""
    from gateway.config import Settings
    from gateway.sqlite import open_db, open_request_writer
    from gateway.exchange import ChatContext, Reply
    from gateway.identity import Identity
    from gateway.extraction.jobs import JobBounds
    from gateway.metrics import Metrics
    from gateway.extraction.queue import JobQueue
    from gateway.rules import RuleSettings

    async def run() -> list[float]:
        with tempfile.TemporaryDirectory() as tmp:
            db = await open_db(Path(tmp) / "q.sqlite3")

            async def nothing(jobs: list) -> None:
                return None

            writer = open_request_writer(Path(tmp) / "q.sqlite3")
            defaults = Settings()
            queue = JobQueue(db, Metrics(), nothing, default_extractor="heuristic", workers=0, max_jobs=samples + 1,
                             bounds=JobBounds(defaults.max_job_messages, defaults.max_job_bytes), dead_letter_retention=defaults.dead_letter_retention,
                             has_extraction_key=False, request_writer=writer)
            await queue.start()
            payload = {"messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "I prefer Terraform over CloudFormation."}]}
            times = []
            for i in range(samples):
                ctx = ChatContext(f"r{i}", Identity("t", f"u{i % 50}"), "defaults", RuleSettings(), "m", True, True, api_key=KEY)
                started = time.perf_counter()
                await queue.enqueue(ctx, payload, Reply("Noted."))
                times.append(time.perf_counter() - started)
            writer.close()
            await db.close()
            return times

    times = asyncio.run(run())
    return percentile(times, 0.5), percentile(times, 0.99)


def latency(upstream: FakeUpstream, work: Path, samples: int) -> list[tuple[str, float, float]]:
    gw = Gateway(upstream.url, work / "latency", production_rules=True, tenant_mode="none").start()
    rows = []
    try:
        with httpx.Client(timeout=30) as client:
            for i in range(20):  # warm up and give every user a memory or two, so recall has work
                chat(client, gw.v1, f"lat{i % 10}", FACTS[i % len(FACTS)])
            cells: dict[str, list[float]] = {}
            for stream in (False, True):
                for i in range(samples):
                    user = f"lat{i % 10}"
                    text = FACTS[i % len(FACTS)].replace(".", f" (note {i}).")
                    shape = "stream" if stream else "json"
                    # Alternate so drift and background work hit both sides equally.
                    # On and off take turns going first: the first recall after a write may rebuild
                    # the user's hot entry, and that cost must not land on one side only.
                    pair = [("read-write", "extraction on"), ("read", "extraction off")]
                    for mode, label in (pair if i % 2 else pair[::-1]) + [("off", "memory off")]:
                        cells.setdefault(f"{shape} {label}", []).append(chat(client, gw.v1, user, text, mode=mode, stream=stream))
                    cells.setdefault(f"{shape} upstream direct", []).append(chat(client, upstream.url, user, text, stream=stream))
            with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
                admin.post(gw.url + "/admin/v1/queue/flush", params={"timeout": 120})
            for name, values in cells.items():
                rows.append((name, percentile(values, 0.5), percentile(values, 0.99)))
    finally:
        gw.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    upstream = FakeUpstream().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-extraction-") as tmp:
            work = Path(tmp)
            runs = [
                throughput(upstream, work, "heuristic", args.jobs, 1, extractor="heuristic"),
                throughput(upstream, work, "llm", args.jobs, 1, extractor="llm", extraction_api_key="sk-config"),
                throughput(upstream, work, "llm-coalesced", args.jobs, 10, extractor="llm", extraction_api_key="sk-config"),
            ]
            enqueue_p50, enqueue_p99 = enqueue_cost(2000)
            lat = latency(upstream, work, args.samples)
    finally:
        upstream.stop()
    print("\nextraction throughput (2 workers draining a committed backlog; in-process, real queue, store and embedder)")
    print(f"{'extractor':<16}{'jobs':>6}{'seconds':>10}{'jobs/s':>9}{'llm calls':>11}")
    for name, jobs, elapsed, calls in runs:
        print(f"{name:<16}{jobs:>6}{elapsed:>10.2f}{jobs / elapsed:>9.1f}{calls:>11}")
    print(f"\nenqueue (commit one job, WAL + synchronous=NORMAL): p50 {enqueue_p50 * 1e3:.3f} ms  p99 {enqueue_p99 * 1e3:.3f} ms")
    print(f"\nchat latency, {args.samples} sequential requests per cell (client wall time)")
    print(f"{'case':<30}{'p50 ms':>9}{'p99 ms':>9}")
    for name, p50, p99 in sorted(lat):
        print(f"{name:<30}{p50 * 1e3:>9.2f}{p99 * 1e3:>9.2f}")


if __name__ == "__main__":
    main()
