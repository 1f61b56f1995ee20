"""Added latency per API: chat completions, Responses and Messages, memory off and on, against the upstream direct.

    python bench/bench_apis.py [--requests 300] [--memories 20]

One client sends the same short JSON request per API, sequentially and interleaved (direct, gateway
with memory off, gateway with memory on for a warm user holding --memories memories), to the fake
upstream of the tests running in its own process. Prints p50/p99 per cell and the p50 the gateway
adds over the upstream direct; quote medians and ratios (these machines are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.identity import key_fingerprint  # noqa: E402
from tests.harness import Gateway  # noqa: E402

KEY = "sk-bench-apis-8e2f"
USER = "bench-apis-user"
QUESTION = "Which city should I visit next spring, given what you know about me?"
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": QUESTION}]}),
    "responses": ("/responses", {"model": "gpt-4o-mini", "instructions": "You are helpful.", "input": QUESTION}),
    "messages": ("/messages", {"model": "claude", "max_tokens": 256, "system": "You are helpful.", "messages": [{"role": "user", "content": QUESTION}]}),
}
FACTS = ("likes Lisbon", "prefers trains", "is vegetarian", "speaks German", "has a dog called Rex", "works as a translator",
         "is allergic to peanuts", "prefers window seats", "runs marathons", "plays the cello")


def start_upstream() -> tuple[subprocess.Popen, str]:
    code = "import time; from tests.fake_upstream import FakeUpstream; f = FakeUpstream().start(); print(f.url, flush=True); time.sleep(1e9)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--memories", type=int, default=20)
    args = parser.parse_args()
    upstream, url = start_upstream()
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(url, Path(tmp) / "data", anthropic_upstream_url="upstream").start()
        try:
            with gw.admin() as admin:
                for i in range(args.memories):
                    admin.post(f"/tenants/{key_fingerprint(KEY)}/users/{USER}/memories", json={"text": f"The user {FACTS[i % len(FACTS)]} (note {i})"}).raise_for_status()
            base = {"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}
            targets = {"direct": (url, base), "memory off": (gw.v1, {**base, "X-Memory-User-Id": USER, "X-Memory-Mode": "off"}),
                       "memory on": (gw.v1, {**base, "X-Memory-User-Id": USER})}
            times: dict[tuple[str, str], list[float]] = {(api, t): [] for api in BODIES for t in targets}
            injected: dict[str, str] = {}
            with httpx.Client(timeout=30) as client:
                for round_ in range(args.requests + 20):  # the first 20 rounds warm up
                    for api, (path, body) in BODIES.items():
                        for target, (prefix, headers) in targets.items():
                            started = time.perf_counter()
                            response = client.post(prefix + path, json=body, headers=headers)
                            elapsed = time.perf_counter() - started
                            response.raise_for_status()
                            if target == "memory on":
                                injected[api] = response.headers["X-Memory-Injected"]
                            if round_ >= 20:
                                times[(api, target)].append(elapsed * 1000)
        finally:
            gw.stop()
            upstream.terminate()
            upstream.wait()
    print(f"{args.requests} sequential JSON requests per cell, interleaved; warm user with {args.memories} memories\n")
    print("| api | direct p50 | memory off p50 / p99 | memory on p50 / p99 | added p50, off | added p50, on | memories injected |")
    print("|---|---|---|---|---|---|---|")
    for api in BODIES:
        direct, off, on = (statistics.median(times[(api, t)]) for t in targets)
        p99 = {t: pct(times[(api, t)], 99) for t in targets}
        print(f"| {api} | {direct:.2f} ms | {off:.2f} / {p99['memory off']:.2f} ms | {on:.2f} / {p99['memory on']:.2f} ms "
              f"| {off - direct:.2f} ms | {on - direct:.2f} ms | {injected.get(api, '0')} |")


if __name__ == "__main__":
    main()
