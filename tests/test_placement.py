"""`placement = "tail"`: the block goes right before the latest user turn, so each request the upstream gets
starts with the previous request's bytes up to where its block was (provider prompt caches stay warm)."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import END, START, add_memory

KEY = "sk-placement-tests-3d8e"
HEADERS = {"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    rules = tmp_path_factory.mktemp("tail-rules")
    (rules / "10-tail.toml").write_text('[defaults]\nplacement = "tail"\n\n[[rule]]\nname = "system"\nmatch = { header = { "X-Placement" = "system" } }\nplacement = "system"\n')
    gateway = Gateway(upstream.url, tmp_path_factory.mktemp("placement") / "data", rules, anthropic_upstream_url="upstream").start()
    yield gateway
    gateway.stop()


def common_prefix(a: bytes, b: bytes) -> int:
    return len(os.path.commonprefix([a, b]))


# Per API: its path, a first request, and the second turn the client sends after the answer.
Turns = Callable[[str], tuple[dict[str, Any], dict[str, Any]]]


def chat_turns(user_text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    first = [{"role": "system", "content": "You are a travel agent."}, {"role": "user", "content": "I need a trip plan for my holiday"}]
    return ({"model": "m", "messages": first},
            {"model": "m", "messages": [*first, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": user_text}]})


def responses_turns(user_text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    first = [{"role": "user", "content": [{"type": "input_text", "text": "I need a trip plan for my holiday"}]}]
    second = [*first, {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure."}]},
              {"role": "user", "content": [{"type": "input_text", "text": user_text}]}]
    return ({"model": "m", "instructions": "You are a travel agent.", "input": first},
            {"model": "m", "instructions": "You are a travel agent.", "input": second})


def messages_turns(user_text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    system = [{"type": "text", "text": "You are a travel agent.", "cache_control": {"type": "ephemeral"}}]
    first = [{"role": "user", "content": "I need a trip plan for my holiday"}]
    return ({"model": "m", "max_tokens": 50, "system": system, "messages": first},
            {"model": "m", "max_tokens": 50, "system": system, "messages": [*first, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": user_text}]})


APIS = {"/chat/completions": chat_turns, "/responses": responses_turns, "/messages": messages_turns}


def two_turns(gw: Gateway, upstream: FakeUpstream, path: str, turns: Turns, user: str, placement: str, learned: str) -> tuple[bytes, bytes]:
    """The two requests the upstream got; between them the user's memories change (`learned`), as they do in a conversation."""
    bodies = []
    for body in turns("Which beach should I pick?"):
        response = httpx.post(gw.v1 + path, json=body, headers={**HEADERS, "X-Memory-User-Id": user, "X-Placement": placement})
        assert response.status_code == 200 and int(response.headers["X-Memory-Injected"]) >= 1, response.text
        bodies.append([r for r in upstream.received if r.path == "/v1" + path][-1].body)
        if len(bodies) == 1:
            add_memory(gw, KEY, user, learned, pinned=True)
    return bodies[0], bodies[1]


@pytest.mark.parametrize("path", list(APIS))
def test_with_tail_each_turn_starts_with_the_previous_request_up_to_its_block(gw: Gateway, upstream: FakeUpstream, path: str) -> None:
    user = "tail" + path.replace("/", "-")
    add_memory(gw, KEY, user, "The user loves quiet beaches", pinned=True)
    first, second = two_turns(gw, upstream, path, APIS[path], user, "tail", "The user is flying from Oslo")
    block_at = first.index(START.encode())
    assert common_prefix(first, second) >= block_at - 40  # up to the block's own item/message/part opening
    assert b"You are a travel agent." in first[:block_at] and first.count(START.encode()) == 1
    # With the block in the system prompt, the changed memories break the prefix inside the system prompt.
    sys_first, sys_second = two_turns(gw, upstream, path, APIS[path], user, "system", "The user travels with a dog")
    assert common_prefix(sys_first, sys_second) < sys_first.index(END.encode()) < sys_first.rindex(b"I need a trip plan")  # the conversation's turn (an earlier one may be quoted in the block)


def test_tail_blocks_sit_right_before_the_latest_user_turn_in_each_api(gw: Gateway, upstream: FakeUpstream) -> None:
    add_memory(gw, KEY, "where", "The user loves quiet beaches", pinned=True)
    sent: dict[str, Any] = {}
    for path, turns in APIS.items():
        httpx.post(gw.v1 + path, json=turns("Which beach?")[1], headers={**HEADERS, "X-Memory-User-Id": "where"})
        sent[path] = [r for r in upstream.received if r.path == "/v1" + path][-1].json()
    chat = sent["/chat/completions"]["messages"]
    assert chat[0] == {"role": "system", "content": "You are a travel agent."}
    assert chat[3]["role"] == "system" and chat[3]["content"].startswith(START) and chat[4]["content"] == "Which beach?"
    items = sent["/responses"]["input"]
    assert sent["/responses"]["instructions"] == "You are a travel agent."
    assert items[2]["role"] == "developer" and items[2]["content"].startswith(START) and items[3]["content"][0]["text"] == "Which beach?"
    messages = sent["/messages"]
    assert messages["system"] == [{"type": "text", "text": "You are a travel agent.", "cache_control": {"type": "ephemeral"}}]
    last = messages["messages"][-1]["content"]
    assert last[0]["text"].startswith(START) and last[1] == {"type": "text", "text": "Which beach?"}
