"""Long prompts: what the gateway adds to a 100k- and a 1M-token conversation with memory on, fitting its
window or trimmed to it, against a bare Starlette + httpx proxy and the upstream direct, in one run.

The upstream is nginx answering any chat POST with a canned completion (bench_proxy.py's, bodies up to
64 MB); one httpx client posts the same body to each target in turn, --rounds times (interleaved, so drift
on the noisy host hits all alike), after --warmup rounds. Clients resend their history every turn, so
the repeated body is the realistic case; the first request of a conversation (nothing cached) is shown
separately. Needs Debian's nginx (`apt-get install -y nginx`).

    python bench/bench_long_prompt.py                  # 100k fit, 100k trimmed (chat, Responses, Messages), 1M trimmed, 1M fit
    python bench/bench_long_prompt.py --rounds 40 --only 100k-fit

Targets (issue 15): 100k-token conversation, memory on, adds <= 5 ms at p50 over the bare proxy; one that
needs trimming adds <= 15 ms.
"""

from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(ROOT / "bench"))

from bench_proxy import NGINX, free_port, start_nginx, stop_all, wait_http  # noqa: E402

from gateway.memory.tokens import count, message_texts  # noqa: E402
from tests.conversations import SYSTEM, conversation, messages_turns, responses_input  # noqa: E402
from tests.harness import Gateway  # noqa: E402
from tests.memory_helpers import add_memory  # noqa: E402

KEY = "sk-bench-long-prompt-0000"
USER = "lena"
RULES = '[[rule]]\nname = "32k"\nmatch = { header = { "X-Window" = "32k" } }\ncontext_window = 32768\n'
BARE_PROXY = '''
import os

import httpx
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

UPSTREAM = os.environ["BARE_UPSTREAM"]
client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_keepalive_connections=16))

async def forward(request):
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "connection")}
    upstream = await client.post(UPSTREAM + request.url.path.removeprefix("/v1"), content=body, headers=headers)
    return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))

app = Starlette(routes=[Route(path, forward, methods=["POST"]) for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages")])
'''
# name -> (model, turns, extra headers); 215-word turns are ~450 tokens each.
SCENARIOS = {
    "short": ("gpt-4o", 1, {}),
    "100k-fit": ("gpt-4o", 222, {}),  # ~100k tokens of a 128k window
    "100k-trim": ("gpt-4o", 222, {"X-Window": "32k"}),  # trimmed to a 32k window
    "100k-trim-responses": ("gpt-4o", 222, {"X-Window": "32k"}),  # the same as Responses input items
    "100k-trim-messages": ("claude-sonnet-4", 222, {"X-Window": "32k"}),  # the same as Messages turns
    "1M-trim": ("gpt-4o", 2220, {}),  # ~1M tokens into a 128k window
    "1M-fit": ("gpt-4.1", 2220, {}),  # ~1M tokens of a 1,047,576-token window
}


def request(name: str, model: str, messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The scenario's path and body: chat completions, or the same conversation as Responses items or Messages turns."""
    if name.endswith("-responses"):
        return "/responses", {"model": model, "instructions": SYSTEM, "input": responses_input(messages)}
    if name.endswith("-messages"):
        return "/messages", {"model": model, "max_tokens": 1024, "system": SYSTEM, "messages": messages_turns(messages)}
    return "/chat/completions", {"model": model, "messages": messages}


def start_bare_proxy(work: Path, upstream: str) -> tuple[subprocess.Popen, int]:
    (work / "bare_proxy.py").write_text(BARE_PROXY)
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "bare_proxy:app", "--port", str(port), "--log-level", "warning", "--no-access-log",
            "--loop", "uvloop", "--http", "httptools"]
    proc = subprocess.Popen(args, cwd=work, env={**os.environ, "PYTHONPATH": str(work), "BARE_UPSTREAM": upstream},
                            stdout=subprocess.DEVNULL, stderr=open(work / "bare.log", "wb"))
    wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST", json={"model": "x", "messages": []})
    return proc, port


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.post(url, content=body, headers=headers)
    took = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
    return took, response


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="requests per target per scenario (1M scenarios: a third)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated scenarios ({', '.join(SCENARIOS)})")
    args = parser.parse_args()
    if not NGINX:
        print("bench_long_prompt: nginx not found (apt-get install -y nginx)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="memgate-long-"))
    procs: list[subprocess.Popen] = []
    gateway: Gateway | None = None
    try:
        nginx, nginx_port = start_nginx(work)
        procs.append(nginx)
        upstream = f"http://127.0.0.1:{nginx_port}/v1"
        bare, bare_port = start_bare_proxy(work, upstream)
        procs.append(bare)
        (work / "rules").mkdir()
        (work / "rules" / "windows.toml").write_text(RULES)
        gateway = Gateway(upstream, work / "data", rules=work / "rules", log_level="warning", anthropic_upstream_url="upstream").start(timeout=180)
        for text in ("I prefer aisle seats", "My manager is Priya", "I live in Lisbon"):
            add_memory(gateway, KEY, USER, text, pinned=True)
        bases = {"direct": upstream, "bare proxy": f"http://127.0.0.1:{bare_port}/v1", "gateway": gateway.v1}
        base = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "X-Memory-User-Id": USER}
        print("\nmemgate long prompts: memory on (3 pinned memories), one client, median of interleaved rounds; upstream nginx canned JSON")
        header = f"{'scenario':<19} {'tokens':>9} {'MB':>5} {'target':<11} {'p50 ms':>9} {'p99 ms':>9} {'added p50':>10} {'first ms':>9} {'trimmed msgs':>12}"
        print(header)
        print("-" * len(header))
        with httpx.Client(timeout=120) as client:
            for name in args.only.split(","):
                model, turns, extra = SCENARIOS[name]
                messages = conversation(turns=turns, seed=len(name.removesuffix("-responses").removesuffix("-messages")) + turns)
                path, payload = request(name, model, messages)
                targets = {target: base + path for target, base in bases.items()}
                body = json.dumps(payload).encode()
                size = sum(count(text, model) for m in messages for text in message_texts(m)[0])
                headers = {**base, **extra}
                first, response = post(client, targets["gateway"], body, headers)  # nothing cached yet: the first turn
                trimmed = response.headers.get("X-Memory-Trimmed-Messages", "0")
                rounds = args.rounds if turns < 1000 else max(5, args.rounds // 3)
                samples: dict[str, list[float]] = {t: [] for t in targets}
                for index in range(args.warmup + rounds):
                    for target, url in targets.items():
                        took, _ = post(client, url, body, headers)
                        if index >= args.warmup:
                            samples[target].append(took)
                bare_p50 = statistics.median(samples["bare proxy"])
                for target, values in samples.items():
                    p50 = statistics.median(values)
                    added = f"{p50 - bare_p50:+.2f}" if target == "gateway" else ""
                    extra_cols = (f"{first:.1f}", trimmed) if target == "gateway" else ("", "")
                    print(f"{name:<19} {size:>9,} {len(body) / 1e6:>5.1f} {target:<11} {p50:>9.2f} {pct(values, 0.99):>9.2f} {added:>10} {extra_cols[0]:>9} {extra_cols[1]:>12}")
        print("\nadded p50 = gateway minus bare Starlette + httpx proxy; targets: 100k-fit <= 5 ms, 100k-trim <= 15 ms")
    finally:
        if gateway is not None:
            gateway.stop()
        stop_all(procs, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
