"""Critical facts are confirmed with the user, through real HTTP and the heuristic extractor: a change to a
contact detail, a name or a pinned memory is held back, the next request's memory block asks to confirm
it quoting both values, and the user's yes or no settles it, each step in the history."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from .extraction_helpers import TENANT, flush, history, memories, say
from .fake_upstream import FakeUpstream
from .harness import Gateway, with_rules
from .memory_helpers import injected_texts, memory_block

RULES = """
[[rule]]
name = "relaxed"
match = { user = "relaxed-*" }
critical = []
"""


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = with_rules(upstream.url, tmp_path_factory.mktemp("confirm"), "critical.toml", RULES, tenant_mode="none").start()
    yield gateway
    gateway.stop()


def learn(gw: Gateway, user: str, text: str) -> None:
    say(gw, user, text)
    flush(gw)


def block_for(gw: Gateway, upstream: FakeUpstream, user: str, question: str) -> str:
    say(gw, user, question)
    return memory_block(upstream.last_chat())


def stored(gw: Gateway, user: str) -> dict[str, dict[str, Any]]:
    """Every row of the user by text, superseded and held-back ones too (the export has them all)."""
    with gw.admin() as admin:
        lines = admin.get("/export", params={"tenant": TENANT, "user": user}).text.splitlines()
    return {row["text"]: row for row in map(json.loads, lines)}


def steps(gw: Gateway, user: str, memory_id: str) -> list[tuple[str, str]]:
    return [(h["action"], h["cause"].rsplit(":", 1)[-1] if h["action"] == "confirm" else h["action"]) for h in history(gw, user, memory_id)]


OLD, NEW = "User's email is cora@old.example", "User's email is cora@new.example"


@pytest.fixture(scope="module")
def cora(gw: Gateway) -> dict[str, dict[str, Any]]:
    """A user who gave one email, then another: the second waits for confirmation."""
    learn(gw, "cora", "My email is cora@old.example.")
    learn(gw, "cora", "My email is cora@new.example.")
    return stored(gw, "cora")


def test_a_changed_contact_detail_is_held_back_and_the_next_block_asks_to_confirm_quoting_both(gw: Gateway, upstream: FakeUpstream, cora) -> None:
    assert cora[NEW]["superseded_by"] == "confirm:" + cora[OLD]["id"] and cora[OLD]["superseded_by"] is None
    assert [m["text"] for m in memories(gw, "cora")] == [OLD]  # the held-back value is no active memory
    block = block_for(gw, upstream, "cora", "Where should the invoice go?")
    [line] = [line for line in block.splitlines() if "confirm" in line]
    assert json.dumps(OLD) in line and json.dumps(NEW) in line and "ask the user" in line
    assert injected_texts(upstream.last_chat()).count(OLD) == 0  # quoted in the confirmation, not again as a fact


def test_yes_keeps_the_new_value_drops_the_old_and_the_confirmation_disappears(gw: Gateway, upstream: FakeUpstream, cora) -> None:
    block_for(gw, upstream, "cora", "Which email do you have for me?")  # the confirmation is shown
    learn(gw, "cora", "Yes, that's right.")
    after = stored(gw, "cora")
    assert after[OLD]["superseded_by"] == after[NEW]["id"] and after[NEW]["superseded_by"] is None
    block = block_for(gw, upstream, "cora", "Which email do you have for me?")
    assert "confirm" not in block and "cora@old.example" not in block
    assert NEW in injected_texts(upstream.last_chat())
    assert steps(gw, "cora", after[OLD]["id"]) == [("add", "add"), ("confirm", "asked"), ("supersede", "supersede")]
    assert steps(gw, "cora", after[NEW]["id"]) == [("add", "add"), ("confirm", "yes")]
    confirmed = history(gw, "cora", after[NEW]["id"])[-1]
    assert (confirmed["old_text"], confirmed["new_text"]) == (OLD, NEW)


def test_no_keeps_the_old_value_drops_the_new_one_and_the_confirmation_disappears(gw: Gateway, upstream: FakeUpstream) -> None:
    learn(gw, "noah", "My name is Noah.")
    learn(gw, "noah", "My name is Noa.")
    held = stored(gw, "noah")["User's name is Noa"]
    assert "confirm" in block_for(gw, upstream, "noah", "How should you address me?")
    learn(gw, "noah", "No, that's wrong.")
    after = stored(gw, "noah")
    assert "User's name is Noa" not in after and after["User's name is Noah"]["superseded_by"] is None
    block = block_for(gw, upstream, "noah", "How should you address me?")
    injected = injected_texts(upstream.last_chat())  # the kept fact, and maybe the user's own words that stated it
    assert "confirm" not in block and injected[0] == "User's name is Noah" and not {"User's name is Noa", "My name is Noa."} & set(injected)
    kept = after["User's name is Noah"]["id"]
    assert steps(gw, "noah", kept) == [("add", "add"), ("confirm", "asked"), ("confirm", "no")]
    assert steps(gw, "noah", held["id"]) == [("add", "add"), ("delete", "delete")]


def test_a_pinned_memory_is_critical_and_an_answer_counts_only_once_the_question_was_asked(gw: Gateway, upstream: FakeUpstream) -> None:
    with gw.admin() as admin:
        pinned = admin.post(f"/tenants/{TENANT}/users/pia/memories", json={"text": "User lives in Berlin", "pinned": True}).json()
    learn(gw, "pia", "I live in Lisbon.")
    learn(gw, "pia", "Yes")  # the confirmation is first shown in this very request: not yet an answer
    assert "User lives in Lisbon" in stored(gw, "pia") and stored(gw, "pia")["User lives in Berlin"]["superseded_by"] is None
    assert "confirm" in memory_block(upstream.last_chat())
    learn(gw, "pia", "Yes")
    after = stored(gw, "pia")
    assert after["User lives in Berlin"]["superseded_by"] == after["User lives in Lisbon"]["id"]
    assert after["User lives in Berlin"]["id"] == pinned["id"]


def test_other_changes_and_a_rule_without_critical_kinds_replace_at_once(gw: Gateway, upstream: FakeUpstream) -> None:
    learn(gw, "walt", "I work at Acme.")
    learn(gw, "walt", "I work at Globex.")
    assert [m["text"] for m in memories(gw, "walt")] == ["User works at Globex"]
    learn(gw, "relaxed-rae", "My email is rae@old.example.")
    learn(gw, "relaxed-rae", "My email is rae@new.example.")
    assert [m["text"] for m in memories(gw, "relaxed-rae")] == ["User's email is rae@new.example"]
    assert "confirm" not in block_for(gw, upstream, "relaxed-rae", "What is my email?")


def verify_requests(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r.json() for r in upstream.received if r.path.endswith("/chat/completions") and b"memgate_verify" in r.body]


def test_the_llm_extractor_verifies_critical_facts_against_the_users_words_in_a_second_call(start_gateway, upstream: FakeUpstream) -> None:
    llm = start_gateway(tenant_mode="none", extractor="llm")
    before = len(verify_requests(upstream))
    learn(llm, "vera", "I'm allergic to latex.")
    learn(llm, "vera", "I might be allergic to penicillin.")
    learn(llm, "vera", "I prefer tea over coffee.")
    calls = verify_requests(upstream)[before:]
    assert len(calls) == 2  # the two health statements, not the preference
    assert calls[0]["response_format"]["json_schema"]["name"] == "memgate_verify"
    assert "STATEMENT: The user is allergic to latex" in calls[0]["messages"][-1]["content"]
    assert "I'm allergic to latex." in calls[0]["messages"][-1]["content"]  # checked against the user's own words
    assert sorted(m["text"] for m in memories(llm, "vera")) == ["The user is allergic to latex", "The user prefer tea over coffee"]


def test_a_third_value_said_before_the_answer_is_the_one_asked_about_and_the_answer_settles_both(gw: Gateway, upstream: FakeUpstream) -> None:
    for number in ("555 0100", "555 0111", "555 0122"):
        learn(gw, "pete", f"My phone number is {number}.")
    block = block_for(gw, upstream, "pete", "Can you text me the summary?")
    [line] = [line for line in block.splitlines() if "confirm" in line]
    assert "555 0100" in line and "555 0122" in line and "555 0111" not in block
    learn(gw, "pete", "Yes, correct.")
    assert [m["text"] for m in memories(gw, "pete")] == ["User's phone number is 555 0122"]
    assert "User's phone number is 555 0111" not in stored(gw, "pete")
