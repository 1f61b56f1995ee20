"""Prefix stability: how much of each request the upstream receives is a byte-identical prefix of the previous one.

    python bench/bench_prefix_stability.py [--turns 10] [--system-bytes 4096] [--reply-bytes 600]

Provider prompt caches (OpenAI's automatic caching, Anthropic's `cache_control`) reuse the longest
prefix a request shares with an earlier one. For a `--turns` conversation with memory on (the user
states a new fact each turn, learned before the next turn, so the memory block changes as it would),
it prints, per API and placement, the share of each request's bytes (as the upstream got them) that
the previous request started with. Clients send the system prompt first, as a model reads it; the
system prompt and the assistant's replies have the sizes given (defaults: a system prompt of about 1,024
tokens, the least OpenAI caches at all, and replies of about 150 tokens). Runs the real gateway against the fake upstream of the tests; offline, seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.harness import Gateway  # noqa: E402

KEY = "sk-bench-prefix-5c1d"
SYSTEM_LINE = "You are a concise travel assistant: answer with a short plan, name prices in euros, and ask before booking. "
REPLY_LINE = "Here is a plan that fits what you told me, with two options and their costs. "
FACTS = ["I live in Lisbon.", "I prefer window seats.", "My sister is called Ana.", "I work as a translator.", "I am allergic to peanuts.",
         "I prefer trains over planes.", "My dog is called Rex.", "I like quiet beaches.", "I am vegetarian.", "I speak Portuguese and German.",
         "I prefer morning flights.", "My budget is 2000 euros."]
PATHS = {"chat": "/chat/completions", "responses": "/responses", "messages": "/messages"}


def sized(line: str, size: int, turn: int = 0) -> str:
    return (f"({turn}) " + line * (size // len(line) + 1))[:size]


def request(api: str, turns: list[tuple[str, str]], user_text: str, system: str) -> dict[str, Any]:
    """The body a client sends for its next turn: the system prompt first, then every earlier turn, then the new one."""
    if api == "chat":
        history = [m for u, a in turns for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
        return {"model": "gpt-4o", "messages": [{"role": "system", "content": system}, *history, {"role": "user", "content": user_text}]}
    if api == "responses":
        history = [m for u, a in turns for m in ({"role": "user", "content": [{"type": "input_text", "text": u}]},
                                                 {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": a}]})]
        return {"model": "gpt-4o", "instructions": system, "input": [*history, {"role": "user", "content": [{"type": "input_text", "text": user_text}]}]}
    history = [m for u, a in turns for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
    return {"model": "claude", "max_tokens": 512, "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [*history, {"role": "user", "content": user_text}]}


def conversation(gw: Gateway, upstream: FakeUpstream, api: str, placement: str, turns: int, system: str, reply_bytes: int) -> list[float]:
    """Shares of turns 2..n; memories are learned after every turn."""
    user = f"prefix-{api}-{placement}"
    headers = {"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01", "X-Memory-User-Id": user, "X-Placement": placement}
    done: list[tuple[str, str]] = []
    sent: list[bytes] = []
    with httpx.Client(timeout=30) as client, gw.admin() as admin:
        for turn in range(turns):
            text = FACTS[turn % len(FACTS)] + " What should I plan next?"
            reply = sized(REPLY_LINE, reply_bytes, turn)
            response = client.post(gw.v1 + PATHS[api], json=request(api, done, text, system), headers={**headers, "X-Fake-Reply": reply})
            response.raise_for_status()
            sent.append([r for r in upstream.received if r.path == "/v1" + PATHS[api]][-1].body)
            done.append((text, reply))
            admin.post("/queue/flush", params={"timeout": 60}, timeout=70).raise_for_status()
    return [len(os.path.commonprefix([prev, cur])) / len(cur) for prev, cur in zip(sent, sent[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--system-bytes", type=int, default=4096)
    parser.add_argument("--reply-bytes", type=int, default=600)
    args = parser.parse_args()
    upstream = FakeUpstream().start()
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules"
        rules.mkdir()
        (rules / "10-placement.toml").write_text('[[rule]]\nname = "tail"\nmatch = { header = { "X-Placement" = "tail" } }\nplacement = "tail"\n')
        gw = Gateway(upstream.url, Path(tmp) / "data", rules, anthropic_upstream_url="upstream").start()
        try:
            print(f"share of each request that is a byte-identical prefix of the previous one ({args.turns}-turn conversation, memory on, "
                  f"system prompt {args.system_bytes} B, replies {args.reply_bytes} B)\n")
            print(f"| api | placement | {' | '.join(f't{t}' for t in range(2, args.turns + 1))} | min t6+ |")
            print("|---|---|" + "---|" * args.turns)
            for api in PATHS:
                for placement in ("system", "tail"):
                    shares = conversation(gw, upstream, api, placement, args.turns, sized(SYSTEM_LINE, args.system_bytes), args.reply_bytes)
                    late = min(shares[4:]) if len(shares) > 4 else float("nan")
                    print(f"| {api} | {placement} | {' | '.join(f'{s:.2f}' for s in shares)} | {late:.2f} |")
        finally:
            gw.stop()
            upstream.stop()


if __name__ == "__main__":
    main()
