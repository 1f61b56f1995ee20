"""Ranking through real HTTP: confidence lowers and marks a memory, min_score is on the documented 0-1 scale,
and every recall counts a use that the admin API shows at once and unused-memory expiry relies on."""

from __future__ import annotations

import json
import time
from typing import Iterator

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway, with_rules
from .memory_helpers import add_memory, chat, injected_texts, memory_block, tenant_of

KEY = "sk-ranking"
TENANT = tenant_of(KEY)
DAY = 86400.0
RULES = """
[[rule]]
name = "strict"
match = { header = { "X-Rank" = "strict" } }
min_score = 0.3

[[rule]]
name = "idle"
match = { user = "idle-*" }
top_k = 1
expire_unused_days = 30
"""


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = with_rules(upstream.url, tmp_path_factory.mktemp("ranking"), "ranking.toml", RULES, hygiene_interval=0).start()
    yield gateway
    gateway.stop()


def ask(gw: Gateway, user: str, question: str, **headers: str) -> httpx.Response:
    response = chat(gw, KEY, user, [{"role": "user", "content": question}], headers=headers)
    assert response.status_code == 200
    return response


def test_a_recall_counts_a_use_that_the_admin_api_shows_at_once(gw: Gateway, admin: httpx.Client, upstream: FakeUpstream) -> None:
    mid = add_memory(gw, KEY, "uma", "User's favourite coffee is a flat white")["id"]
    url = f"/tenants/{TENANT}/users/uma/memories"
    fresh = admin.get(f"{url}/{mid}").json()
    assert fresh["use_count"] == 0 and fresh["last_used_at"] is None
    before = time.time()
    ask(gw, "uma", "Which coffee should I order this morning?")
    assert injected_texts(upstream.last_chat()) == ["User's favourite coffee is a flat white"]
    once = admin.get(f"{url}/{mid}").json()
    assert once["use_count"] == 1 and before <= once["last_used_at"] <= time.time()
    ask(gw, "uma", "And which coffee in the afternoon?")
    listed = {m["id"]: m for m in admin.get(url).json()["memories"]}
    assert listed[mid]["use_count"] == 2 and listed[mid]["last_used_at"] >= once["last_used_at"]


def test_the_memory_a_recall_used_survives_unused_expiry_and_the_other_expires(gw: Gateway, admin: httpx.Client, upstream: FakeUpstream) -> None:
    old = time.time() - 60 * DAY
    lines = [json.dumps({"id": f"idle-{name}", "tenant": TENANT, "user_id": "idle-ivy", "text": text, "created_at": old})
             for name, text in (("espresso", "User drinks espresso every morning"), ("chess", "User plays chess on weekends"))]
    assert admin.post("/import", content="\n".join(lines)).json()["imported"] == 2
    ask(gw, "idle-ivy", "How much espresso is too much in a morning?")
    assert injected_texts(upstream.last_chat()) == ["User drinks espresso every morning"]  # top_k = 1
    assert admin.post("/hygiene/run").json()["removed"]["unused"] == 1
    remaining = admin.get(f"/tenants/{TENANT}/users/idle-ivy/memories").json()["memories"]
    assert [m["id"] for m in remaining] == ["idle-espresso"]


def test_a_low_confidence_memory_ranks_below_an_equally_relevant_sure_one_and_is_marked_unsure(gw: Gateway, admin: httpx.Client, upstream: FakeUpstream) -> None:
    unsure = add_memory(gw, KEY, "cleo", "User's dentist is Dr Lopez", confidence=0.3)["id"]
    sure = add_memory(gw, KEY, "cleo", "User's dentist is Dr Lopez", confidence=1.0)["id"]
    ask(gw, "cleo", "When should I call my dentist?")
    lines = memory_block(upstream.last_chat()).splitlines()[2:-1]
    assert len(lines) == 2 and "unsure" not in lines[0] and ", unsure)" in lines[1]
    results = admin.post(f"/tenants/{TENANT}/users/cleo/memories/search", json={"query": "my dentist"}).json()["results"]
    assert [r["id"] for r in results] == [sure, unsure]
    assert 0 < results[1]["score"] < results[0]["score"] <= 1


def test_min_score_drops_what_scores_below_it_on_the_0_to_1_scale(gw: Gateway, admin: httpx.Client, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "milo", "User keeps bees in the garden")
    search = f"/tenants/{TENANT}/users/milo/memories/search"
    unrelated = admin.post(search, json={"query": "Any tips for my backyard?"}).json()["results"]
    related = admin.post(search, json={"query": "How do I keep my bees calm?"}).json()["results"]
    assert 0 < unrelated[0]["score"] < 0.3 <= related[0]["score"] <= 1
    assert ask(gw, "milo", "Any tips for my backyard?").headers["X-Memory-Injected"] == "1"  # min_score 0: related in meaning is enough
    assert ask(gw, "milo", "Any tips for my backyard?", **{"X-Rank": "strict"}).headers["X-Memory-Injected"] == "0"
    assert ask(gw, "milo", "How do I keep my bees calm?", **{"X-Rank": "strict"}).headers["X-Memory-Injected"] == "1"
