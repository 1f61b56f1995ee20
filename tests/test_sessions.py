"""Session summaries through a real gateway: every N user turns the session's summary memory (kind "summary")
is rewritten off the request path, and the user's next session starts with it in its core profile."""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import chat, system_text, tenant_of

KEY = "sk-session-tests"
RULES = "[defaults]\nsummary_every_turns = 2\n"
TRIP = [
    "I am planning a trip to Kyoto with my sister in April.",
    "We want a quiet ryokan near Gion for the Kyoto part of the trip.",
]


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("sessions")
    (root / "rules").mkdir()
    (root / "rules" / "summaries.toml").write_text(RULES)
    gateway = Gateway(upstream.url, root / "data", rules=root / "rules").start()
    yield gateway
    gateway.stop()


def summaries(gw: Gateway, user: str, wanted: int = 1, containing: str = "") -> list[dict[str, Any]]:
    """The user's summary memories once `wanted` of them exist (and one contains `containing`), polled with a deadline."""
    deadline = time.monotonic() + 30
    with gw.admin() as admin:
        while True:
            response = admin.get(f"/tenants/{tenant_of(KEY)}/users/{user}/memories", params={"kind": "summary"})
            found = [] if response.status_code == 404 else response.json()["memories"]  # 404: nothing stored for the user yet
            if len(found) >= wanted and any(containing in m["text"] for m in found) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def converse(gw: Gateway, user: str, texts: list[str], session: str | None) -> list[dict[str, str]]:
    """Play the turns as a client does, resending the history each time."""
    messages: list[dict[str, str]] = []
    for text in texts:
        messages.append({"role": "user", "content": text})
        response = chat(gw, KEY, user, messages, headers={"X-Memory-Session-Id": session} if session else None)
        assert response.status_code == 200
        messages.append({"role": "assistant", "content": response.json()["choices"][0]["message"]["content"]})
    return messages


def test_the_next_sessions_first_request_carries_the_last_sessions_summary(gw: Gateway, upstream: FakeUpstream) -> None:
    converse(gw, "sana", TRIP, "trip-1")
    [summary] = summaries(gw, "sana")
    assert summary["session_id"] == "trip-1" and "Kyoto" in summary["text"] and "ryokan" in summary["text"]
    response = chat(gw, KEY, "sana", [{"role": "user", "content": "Remind me what we worked on last time?"}], headers={"X-Memory-Session-Id": "trip-2"})
    assert response.status_code == 200 and int(response.headers["X-Memory-Injected"]) >= 1
    assert json.dumps(summary["text"]) in system_text(upstream.last_chat())  # quoted, like every memory
    with gw.admin() as admin:  # a memory like the others: searchable and exported
        found = admin.post(f"/tenants/{tenant_of(KEY)}/users/sana/memories/search", json={"query": "Kyoto trip"}).json()
        assert summary["id"] in [m["id"] for m in found["results"]]
        exported = [json.loads(line) for line in admin.get("/export", params={"tenant": tenant_of(KEY), "user": "sana"}).text.splitlines()]
        assert [r["kind"] for r in exported if r["id"] == summary["id"]] == ["summary"]


def test_the_current_sessions_own_summary_is_not_injected_as_last_time(gw: Gateway, upstream: FakeUpstream) -> None:
    converse(gw, "omar", TRIP, "only-session")
    summaries(gw, "omar")
    chat(gw, KEY, "omar", [{"role": "user", "content": "And the flights?"}], headers={"X-Memory-Session-Id": "only-session"})
    assert "Last session" not in system_text(upstream.last_chat())


def test_without_a_session_header_one_conversation_keeps_one_summary_rewritten_as_it_grows(gw: Gateway) -> None:
    later = ["My sister loves tea ceremonies, so book one in Uji.", "Also reserve the Arashiyama bamboo grove tour for the mornings."]
    converse(gw, "lina", TRIP + later, None)
    found = summaries(gw, "lina", containing="Arashiyama")
    assert len(found) == 1 and found[0]["session_id"].startswith("conv-") and "Arashiyama" in found[0]["text"]
    with gw.admin() as admin:
        history = admin.get(f"/tenants/{tenant_of(KEY)}/users/lina/memories/{found[0]['id']}/history").json()
    assert [h["action"] for h in history["history"]] == ["add", "update"] and {h["cause"] for h in history["history"]} == {"summary"}


def test_forgetting_the_user_removes_their_summaries(gw: Gateway) -> None:
    converse(gw, "ravi", TRIP, "s")
    assert summaries(gw, "ravi")
    with gw.admin() as admin:
        assert admin.delete(f"/tenants/{tenant_of(KEY)}/users/ravi").status_code == 200
        assert admin.get(f"/tenants/{tenant_of(KEY)}/users/ravi/memories", params={"kind": "summary"}).status_code == 404  # no memories at all
