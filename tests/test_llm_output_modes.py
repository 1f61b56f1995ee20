"""The llm extractor against self-hosted servers' structured-output quirks (tests/fake_structured.py):
each quirk yields the memories, or a failure that is counted, listed in GET /admin/v1/queue and logged."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from .extraction_helpers import flush, memories, queue_state, say, texts
from .fake_upstream import FakeUpstream
from .harness import Gateway

WARNING = "llm extraction: the upstream's answer failed or needed repair"


def problems(gw: Gateway, reason: str) -> float:
    return gw.metric("memgate_extraction_llm_problems_total", reason=reason)


def llm_view(gw: Gateway) -> dict[str, Any]:
    return queue_state(gw)["llm"]


def extraction_calls(upstream: FakeUpstream, model: str) -> list[dict[str, Any]]:
    bodies = [r.json() for r in upstream.received if r.path.endswith("/chat/completions") and b"memgate_extraction" in r.body]
    return [b for b in bodies if b["model"] == model]


def mode_of(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    return fmt.get("type") or ("tools" if body.get("tools") else "prompt")


def warnings(gw: Gateway) -> list[dict[str, Any]]:
    return [entry for entry in map(json.loads, gw.log().splitlines()) if entry["msg"].startswith(WARNING)]


def llm_gateway(start_gateway: Any, model: str, **settings: Any) -> Gateway:
    return start_gateway(tenant_mode="none", extractor="llm", extraction_model=model, extraction_api_key="sk-extract", **settings)


@pytest.fixture(scope="module")
def quirks(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(upstream.url, tmp_path_factory.mktemp("quirks") / "data", tenant_mode="none", extractor="llm",
                 extraction_model="so-quirks", extraction_api_key="sk-extract").start()
    yield gw
    gw.stop()


def test_fenced_json_is_read_and_counted_as_repaired(quirks: Gateway) -> None:
    before = problems(quirks, "repaired")
    say(quirks, "fen", "Answer fenced. I live in Oslo.")
    flush(quirks)
    assert texts(quirks, "fen") == ["The user live in Oslo"]
    assert problems(quirks, "repaired") == before + 1
    newest = llm_view(quirks)["recent_errors"][0]
    assert (newest["reason"], newest["mode"], newest["model"]) == ("repaired", "json_schema", "so-quirks")


def test_json_inside_prose_is_read_and_counted_as_repaired(quirks: Gateway) -> None:
    before = problems(quirks, "repaired")
    say(quirks, "pro", "Answer in prose. I prefer tea over coffee.")
    flush(quirks)
    assert texts(quirks, "pro") == ["The user prefer tea over coffee"]
    assert problems(quirks, "repaired") == before + 1


def test_a_cut_off_answer_keeps_its_complete_memories_and_counts_the_truncation(quirks: Gateway) -> None:
    before = problems(quirks, "truncated")
    say(quirks, "cut", "Answer cut. I live in Bergen. I prefer tea over coffee.")
    flush(quirks)
    assert texts(quirks, "cut") == ["The user live in Bergen"]  # the second memory was cut off: dropped, not half-stored
    assert problems(quirks, "truncated") == before + 1
    assert llm_view(quirks)["recent_errors"][0]["reason"] == "truncated"
    assert llm_view(quirks)["learned_modes"] == {"so-quirks": "json_schema"}  # repairs are not a reason to switch


def test_an_upstream_that_ignores_response_format_is_asked_in_the_prompt_and_that_is_remembered(start_gateway: Any, upstream: FakeUpstream) -> None:
    gw = llm_gateway(start_gateway, "so-ignores-format")
    say(gw, "ign", "I live in Lima.")
    flush(gw)
    assert texts(gw, "ign") == ["The user live in Lima"]
    assert problems(gw, "ignored") == 1
    assert llm_view(gw)["learned_modes"] == {"so-ignores-format": "json_object"}
    say(gw, "ign", "I work at Acme.")
    flush(gw)
    assert texts(gw, "ign") == ["The user live in Lima", "The user work at Acme"]
    assert [mode_of(b) for b in extraction_calls(upstream, "so-ignores-format")] == ["json_schema", "json_object", "json_object"]
    assert problems(gw, "ignored") == 1
    [warning] = warnings(gw)
    assert (warning["model"], warning["mode"], warning["reason"]) == ("so-ignores-format", "json_schema", "ignored")


def test_a_400_to_json_schema_falls_back_to_json_object_and_that_is_remembered(start_gateway: Any, upstream: FakeUpstream) -> None:
    gw = llm_gateway(start_gateway, "so-400-json-schema")
    for fact in ("I live in Quito.", "I work at Andes Ltd."):
        say(gw, "ref", fact)
        flush(gw)
    assert texts(gw, "ref") == ["The user live in Quito", "The user work at Andes Ltd"]
    assert problems(gw, "refused") == 1
    assert [mode_of(b) for b in extraction_calls(upstream, "so-400-json-schema")] == ["json_schema", "json_object", "json_object"]
    [error] = llm_view(gw)["recent_errors"]
    assert error["reason"] == "refused" and "400" in error["detail"] and "json_schema" in error["detail"]


def test_a_server_without_response_format_is_asked_with_a_tool_call(start_gateway: Any, upstream: FakeUpstream) -> None:
    gw = llm_gateway(start_gateway, "so-tools-only")
    say(gw, "too", "I live in Hanoi.")
    flush(gw)
    assert texts(gw, "too") == ["The user live in Hanoi"]
    assert problems(gw, "refused") == 2 and problems(gw, "repaired") == 0
    assert llm_view(gw)["learned_modes"] == {"so-tools-only": "tools"}
    [call] = [b for b in extraction_calls(upstream, "so-tools-only") if mode_of(b) == "tools"]
    assert call["tools"][0]["function"]["name"] == "memgate_extraction"


def test_an_answer_with_no_json_in_any_mode_is_a_counted_explained_failure_never_a_silent_nothing(start_gateway: Any) -> None:
    gw = llm_gateway(start_gateway, "so-garbage", extraction_retry_seconds=0.02)
    say(gw, "gar", "I live in Minsk.")
    state = flush(gw)
    assert state["dead_letters"] == 1 and memories(gw, "gar") == []
    attempts = 5  # every attempt tries the four modes
    assert problems(gw, "ignored") == 3 * attempts and problems(gw, "unparseable") == attempts
    recent = llm_view(gw)["recent_errors"]
    assert len(recent) == 20 and recent[0]["reason"] == "unparseable" and recent[0]["mode"] == "prompt"
    assert "no memgate_extraction JSON" in recent[0]["detail"]
    assert len(warnings(gw)) == 1


def test_a_fixed_output_mode_never_falls_back(start_gateway: Any, upstream: FakeUpstream) -> None:
    gw = llm_gateway(start_gateway, "so-400-json-schema", llm_output_mode="json_schema", extraction_retry_seconds=0.02)
    before = len(extraction_calls(upstream, "so-400-json-schema"))
    say(gw, "fix", "I live in Porto.")
    assert flush(gw)["dead_letters"] == 1
    assert {mode_of(b) for b in extraction_calls(upstream, "so-400-json-schema")[before:]} == {"json_schema"}
    assert problems(gw, "refused") == 5
    assert llm_view(gw) | {"recent_errors": []} == {"output_mode": "json_schema", "learned_modes": {}, "recent_errors": []}
