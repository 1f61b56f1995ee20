"""Session summaries written by the llm when the request's extractor is `llm`, through a real gateway and the
fake upstream answering the `memgate_summary` prompt: off the request path, the user's turns quoted as data,
length-capped, secrets masked; the extractive summary stands in when the llm fails, and the failure is counted."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from .extraction_helpers import queue_state
from .fake_upstream import FakeUpstream
from .harness import Gateway, with_rules
from .memory_helpers import chat, system_text, tenant_of
from .test_sessions import KEY, RULES, TRIP, converse, summaries

LLM_PREFIX = "Last session: The user worked on: "  # the fake's summary, behind the gateway's prefix
SUMMARY_CHARS = 480


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = with_rules(upstream.url, tmp_path_factory.mktemp("sessions-llm"), "summaries.toml", RULES, extractor="llm").start()
    yield gateway
    gateway.stop()


def summary_requests(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r.json() for r in upstream.received if r.path.endswith("/chat/completions") and b"memgate_summary" in r.body]


def test_with_the_llm_extractor_the_llm_writes_the_summary_from_the_quoted_user_turns(gw: Gateway, upstream: FakeUpstream) -> None:
    converse(gw, "sana", TRIP, "trip-1")
    [summary] = summaries(gw, "sana", containing=LLM_PREFIX)
    assert summary["text"] == LLM_PREFIX + "; ".join(TRIP) and summary["session_id"] == "trip-1"
    asked = summary_requests(upstream)[-1]
    system, user = asked["messages"][0]["content"], asked["messages"][-1]["content"]
    assert "480 characters" in system and "not instructions" in system
    assert user.splitlines() == [json.dumps(turn) for turn in TRIP]  # the user's turns, each quoted as a JSON string
    response = chat(gw, KEY, "sana", [{"role": "user", "content": "Remind me what we worked on last time?"}], headers={"X-Memory-Session-Id": "trip-2"})
    assert response.status_code == 200 and json.dumps(summary["text"]) in system_text(upstream.last_chat())


def test_an_llm_summary_is_capped_and_its_secrets_are_masked(gw: Gateway) -> None:
    shed = "I am rebuilding the garden shed this weekend with cedar boards and a new roof. " * 4
    converse(gw, "kai", ["The router password: hunter22 should go on a sticky note. " + shed, "Then I will paint the shed green. " * 6], "shed-1")
    [summary] = summaries(gw, "kai", containing=LLM_PREFIX)
    text = summary["text"]
    assert text.startswith(LLM_PREFIX) and len(text) <= SUMMARY_CHARS and text.endswith("…")
    assert "hunter22" not in text and "password: ***" in text


def test_the_request_never_waits_for_the_summary_llm(gw: Gateway, upstream: FakeUpstream) -> None:
    upstream.hold_extractions.clear()  # the fake holds its learning answers (extraction and summary) until set
    try:
        converse(gw, "ines", TRIP, "held-1")  # both turns answered while the summary call waits upstream
        assert upstream.wait_for(lambda: any(json.dumps(TRIP[0]) in r["messages"][-1]["content"] for r in summary_requests(upstream)))
        with gw.admin() as admin:  # no summary yet (404: nothing stored for the user at all)
            listed = admin.get(f"/tenants/{tenant_of(KEY)}/users/ines/memories", params={"kind": "summary"})
            assert listed.status_code == 404 or listed.json()["memories"] == []
    finally:
        upstream.hold_extractions.set()
    [summary] = summaries(gw, "ines", containing=LLM_PREFIX)
    assert summary["session_id"] == "held-1"


def test_when_the_llm_fails_the_extractive_summary_stands_in_and_the_failure_is_counted(start_gateway, tmp_path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "summaries.toml").write_text(RULES)
    broken = start_gateway(rules=tmp_path / "rules", extractor="llm", extraction_model="fake-error-503", extraction_workers=0)
    converse(broken, "noor", TRIP, "trip-1")
    [summary] = summaries(broken, "noor", containing="Kyoto")
    assert summary["text"].startswith("Last session, the user talked about: ") and "ryokan" in summary["text"]
    assert broken.metric("memgate_extraction_llm_problems_total", reason="http_error") == 1
    [problem] = queue_state(broken)["llm"]["recent_errors"]
    assert problem["reason"] == "http_error" and problem["detail"].startswith("summary: answered 503")
