"""Does the model get the evidence? Multi-session conversations learned through a real gateway, then questions.

    python bench/bench_archival_quality.py [--users 48]

Every turn of bench/data/recall_dataset.json (48 users, 6 sessions of 12 turns, facts said in passing)
goes through the gateway's chat path (openai-shaped JSON, one session id per session) to the fake
upstream, and is learned on the defaults (heuristic extractor, archival episodes). Then each question
(asked after every session, its evidence said in an earlier one) is measured two ways:
- admin search (`POST .../memories/search`): recall@5/@10, a hit when a result's text holds the evidence;
- the chat path: the share of questions whose evidence is in the system message the upstream receives.
Four variants. Over HTTP: hybrid (a rule with `episodes_top_k = 0`: facts only) and hybrid plus the
archival tier (the defaults). In process, over the same store with the gateway's own ranking and
packing code and only the fusion method changed: dense only, keyword only, and hybrid again (so the
in-process figures can be checked against the HTTP ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "data"))

from make_recall_dataset import FACTS  # noqa: E402

from gateway.memory.embed import make_embedder  # noqa: E402
from gateway.memory.hot import UserMemories  # noqa: E402
from gateway.memory.inject import pack  # noqa: E402
from gateway.memory.recall import EPISODE_MIN_SCORE, Query, core_profile, rank, relevance_of  # noqa: E402
from gateway.memory.store import MemoryStore  # noqa: E402
from gateway.rules import RuleSettings  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.harness import Gateway  # noqa: E402

DATA = ROOT / "bench" / "data" / "recall_dataset.json"
TENANT = "default"
MODEL = "gpt-4o-mini"
RULES = '[[rule]]\nname = "facts-only"\nmatch = { header = { "X-Bench-Variant" = "facts" } }\nepisodes_top_k = 0\n'


def evidence(question: dict, turns: dict[str, str]) -> str:
    """The fact's value as said in the gold turn (what the model needs to answer)."""
    text = turns[question["gold"][0]]
    return next(v for v in FACTS[question["kind"]][0] if v in text)


def learn(gw: Gateway, users: list[dict]) -> float:
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for u in users:
            for t in u["turns"]:
                headers = {"Authorization": "Bearer sk-bench", "X-Memory-User-Id": u["user"], "X-Memory-Session-Id": f"s{t['session']}"}
                body = {"model": MODEL, "messages": [{"role": "user", "content": t["text"]}]}
                assert client.post(gw.v1 + "/chat/completions", json=body, headers=headers).status_code == 200
    with gw.admin() as admin:
        assert admin.post("/queue/flush", params={"timeout": 600}, timeout=700).status_code == 200
    return time.perf_counter() - started


def http_measures(gw: Gateway, upstream: FakeUpstream, questions: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("search hybrid @5", "search hybrid @10", "search +archival @5", "search +archival @10",
                                                    "chat hybrid", "chat +archival")}
    with httpx.Client(timeout=60) as client, gw.admin() as admin:
        for q in questions:
            path = f"/tenants/{TENANT}/users/{q['user']}/memories/search"
            facts = admin.post(path, json={"query": q["question"], "top_k": 10}).json()["results"]
            said = admin.post(path, json={"query": q["question"], "top_k": 10, "tier": "archival"}).json()["results"]
            both = sorted(facts + said, key=lambda r: -r["score"])
            for label, results in (("hybrid", facts), ("+archival", both)):
                out[f"search {label} @5"].append(any(q["evidence"] in r["text"] for r in results[:5]))
                out[f"search {label} @10"].append(any(q["evidence"] in r["text"] for r in results[:10]))
            for label, variant in (("hybrid", "facts"), ("+archival", "all")):
                headers = {"Authorization": "Bearer sk-bench", "X-Memory-User-Id": q["user"], "X-Memory-Mode": "read", "X-Bench-Variant": variant}
                body = {"model": MODEL, "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q["question"]}]}
                assert client.post(gw.v1 + "/chat/completions", json=body, headers=headers).status_code == 200
                system = upstream.last_chat()["messages"][0]["content"]
                out[f"chat {label}"].append(q["evidence"] in system)
    return out


async def in_process(data_dir: Path, questions: list[dict]) -> dict[str, list[float]]:
    """What recall would inject with each fusion method: the gateway's rank, core_profile and pack."""
    embedder = make_embedder("local")
    store = await MemoryStore.open(str(data_dir / "lancedb"), embedder.name, embedder.dim)
    rule = RuleSettings()
    out: dict[str, list[float]] = {}
    entries: dict[str, UserMemories] = {}
    vectors = await embedder.embed([q["question"] for q in questions])
    for q, vector in zip(questions, vectors):
        entry = entries.get(q["user"])
        if entry is None:
            entry = entries[q["user"]] = UserMemories(await store.active(TENANT, q["user"]), embedder.dim, 0)
        query = Query.of(q["question"], vector)
        for method, archival in (("dense", False), ("keyword", False), ("score", False), ("dense", True), ("keyword", True), ("score", True)):
            scores = relevance_of(entry, query, method)
            ranked = rank(entry, query, top_k=rule.top_k, archival=False, scores=scores)
            said = rank(entry, query, top_k=rule.episodes_top_k, min_score=EPISODE_MIN_SCORE, archival=True, scores=scores) if archival else []
            searched = rank(entry, query, top_k=10, scores=scores, include_flagged=True, every_agent=True, archival=None if archival else False)
            core = core_profile(entry, ranked, agent=None, include_flagged=False)
            packed = pack(core, [m for m, _ in ranked] + [m for m, _ in said], rule.budget_tokens, rule.core_budget_tokens, rule.template, MODEL, True)
            name = {"dense": "dense", "keyword": "keyword", "score": "hybrid"}[method] + (" +archival" if archival else "")
            out.setdefault(f"{name} @5", []).append(any(q["evidence"] in m.text for m, _ in searched[:5]))
            out.setdefault(f"{name} @10", []).append(any(q["evidence"] in m.text for m, _ in searched[:10]))
            out.setdefault(f"{name} chat", []).append(q["evidence"] in packed.text)
    await store.aclose()
    await embedder.aclose()
    return out


async def sweep(data_dir: Path, questions: list[dict]) -> None:
    """Chat-path evidence share of hybrid +archival over the episode floor and count, on the dev half
    (even users) and the test half (odd users), to choose the shipped EPISODE_MIN_SCORE and episodes_top_k."""
    embedder = make_embedder("local")
    store = await MemoryStore.open(str(data_dir / "lancedb"), embedder.name, embedder.dim)
    rule = RuleSettings()
    entries = {u: UserMemories(await store.active(TENANT, u), embedder.dim, 0) for u in sorted({q["user"] for q in questions})}
    split = {u: ("dev", "test")[i % 2] for i, u in enumerate(sorted(entries))}
    grid = [(floor, k) for floor in (0.0, 0.1, 0.15, 0.2) for k in (4, 6, 8)]
    hits: dict[tuple[float, int, str], list[bool]] = {}
    for q, vector in zip(questions, await embedder.embed([q["question"] for q in questions])):
        entry, query = entries[q["user"]], Query.of(q["question"], vector)
        scores = relevance_of(entry, query)
        ranked = rank(entry, query, top_k=rule.top_k, archival=False, scores=scores)
        core = core_profile(entry, ranked, agent=None, include_flagged=False)
        for floor, k in grid:
            said = rank(entry, query, top_k=k, min_score=floor, archival=True, scores=scores)
            packed = pack(core, [m for m, _ in ranked] + [m for m, _ in said], rule.budget_tokens, rule.core_budget_tokens, rule.template, MODEL, True)
            hits.setdefault((floor, k, split[q["user"]]), []).append(q["evidence"] in packed.text)
    print("\nsweep, hybrid +archival, evidence in system msg (dev / test):")
    for floor, k in grid:
        print(f"  floor {floor:4}  episodes_top_k {k}: {mean(hits[(floor, k, 'dev')]):.3f} / {mean(hits[(floor, k, 'test')]):.3f}")
    await store.aclose()
    await embedder.aclose()


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=48)
    parser.add_argument("--sweep", action="store_true", help="also sweep the episode floor and count (dev/test halves)")
    args = parser.parse_args()
    data = json.loads(DATA.read_text())
    users = data["users"][: args.users]
    turns = {t["id"]: t["text"] for u in users for t in u["turns"]}
    questions = [{**q, "evidence": evidence(q, turns)} for u in users for q in u["questions"]]
    work = Path(tempfile.mkdtemp(prefix="memgate-archival-"))
    (work / "rules").mkdir()
    (work / "rules" / "10-bench.toml").write_text(RULES)
    upstream = FakeUpstream().start()
    gw = Gateway(upstream.url, work / "data", rules=work / "rules", tenant_mode="none", log_level="warning").start()
    try:
        spent = learn(gw, users)
        with gw.admin() as admin:
            counts = {tier: sum(len(admin.get(f"/tenants/{TENANT}/users/{u['user']}/memories", params={"tier": tier, "limit": 500}).json()["memories"])
                                for u in users) for tier in ("core", "recall", "archival")}
        print(f"{len(users)} users, {len(turns)} turns learned in {spent:.1f} s: {counts}; {len(questions)} questions")
        measured = http_measures(gw, upstream, questions)
    finally:
        gw.stop()
        upstream.stop()
    simulated = asyncio.run(in_process(work / "data", questions))
    if args.sweep:
        asyncio.run(sweep(work / "data", questions))
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'variant':34} {'search R@5':>10} {'search R@10':>11} {'evidence in system msg':>23}")
    for name in ("dense", "keyword", "hybrid", "dense +archival", "keyword +archival", "hybrid +archival"):
        print(f"{name + ' (in process)':34} {mean(simulated[name + ' @5']):10.3f} {mean(simulated[name + ' @10']):11.3f} {mean(simulated[name + ' chat']):23.3f}")
    for name in ("hybrid", "+archival"):
        label = "hybrid (HTTP)" if name == "hybrid" else "hybrid +archival (HTTP)"
        print(f"{label:34} {mean(measured[f'search {name} @5']):10.3f} {mean(measured[f'search {name} @10']):11.3f} {mean(measured[f'chat {name}']):23.3f}")


if __name__ == "__main__":
    main()
