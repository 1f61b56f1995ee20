"""The tolerant JSON reader of the llm extractor's answers, and where each output mode puts the JSON."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.extraction.output_modes import answer_text, is_refusal, request_body
from gateway.extraction.tolerant_json import NoJSON, Parsed, parse_object

ANSWER = {"memories": [{"text": "User lives in Oslo", "kind": "fact", "confidence": 0.9}, {"text": "User prefers tea", "kind": "preference", "confidence": 0.8}]}
BARE = json.dumps(ANSWER)


def test_bare_json_is_read_as_is() -> None:
    assert parse_object(BARE, "memories") == Parsed(ANSWER)


@pytest.mark.parametrize("text", [
    f"```json\n{BARE}\n```",
    f"```\n{BARE}\n```",
    f"Sure! Here is the JSON you asked for:\n{BARE}\nLet me know if you need more.",
    f"{BARE} and some trailing words {{",
    f"Thinking {{about it}}... the answer: ```json {BARE}```",
])
def test_json_in_fences_or_prose_is_found_and_marked_repaired(text: str) -> None:
    assert parse_object(text, "memories") == Parsed(ANSWER, repaired=True)


def test_an_object_without_the_expected_key_is_passed_over_for_one_with_it() -> None:
    assert parse_object('Example: {"a": 1}. Answer: {"memories": []}', "memories").value == {"memories": []}


@pytest.mark.parametrize("cut", [len(BARE) - 3, BARE.rindex('"text"') + 9, BARE.rindex("}, {") + 3])
def test_a_cut_off_list_keeps_only_its_complete_items(cut: int) -> None:
    parsed = parse_object("```json\n" + BARE[:cut], "memories")
    assert parsed == Parsed({"memories": ANSWER["memories"][:1]}, repaired=True, truncated=True)


@pytest.mark.parametrize("text", ["", "The user likes tea.", '{"memories": [', '{"memories": [{"text": "User li', '{"other": [1, 2]}', "{" * 5000])
def test_no_usable_json_is_an_error_never_an_empty_answer(text: str) -> None:
    with pytest.raises(NoJSON):
        parse_object(text, "memories")


def test_an_answer_full_of_braces_is_read_in_bounded_time() -> None:
    text = '{"x": "' + "{" * 200_000 + " never closed"
    started = time.perf_counter()
    with pytest.raises(NoJSON):
        parse_object(text, "memories")
    assert time.perf_counter() - started < 2.0


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_an_object_with_the_key_or_nojson(text: str) -> None:
    try:
        parsed = parse_object(text, "memories")
    except NoJSON:
        return
    assert "memories" in parsed.value


def test_each_mode_asks_for_the_schema_its_own_way() -> None:
    schema = {"type": "object"}
    bodies = {mode: request_body(mode, "m", "memgate_extraction", schema, "SYS", "USER") for mode in ("json_schema", "json_object", "tools", "prompt")}
    assert bodies["json_schema"]["response_format"]["json_schema"] == {"name": "memgate_extraction", "strict": True, "schema": schema}
    assert bodies["json_object"]["response_format"] == {"type": "json_object"}
    assert bodies["tools"]["tools"][0]["function"]["parameters"] == schema and "response_format" not in bodies["tools"]
    assert "response_format" not in bodies["prompt"] and "tools" not in bodies["prompt"]
    for mode in ("json_object", "prompt"):  # the schema travels in the prompt (json_object also needs the word JSON there)
        assert json.dumps(schema) in bodies[mode]["messages"][0]["content"]
    assert bodies["json_schema"]["messages"][0]["content"] == "SYS"


def completion(message: dict, finish: str = "stop") -> dict:
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}]}


def test_the_json_is_read_from_where_each_mode_puts_it() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "x", "arguments": BARE}}]}
    assert answer_text("tools", completion(call)) == (BARE, True, "stop")
    as_object = {"role": "assistant", "tool_calls": [{"function": {"arguments": ANSWER}}]}  # some servers send the object
    assert json.loads(answer_text("tools", completion(as_object))[0]) == ANSWER
    assert answer_text("tools", completion({"content": BARE})) == (BARE, False, "stop")  # no tool call: the content, flagged
    assert answer_text("prompt", completion({"content": [{"type": "text", "text": BARE}]}, "length")) == (BARE, True, "length")


@pytest.mark.parametrize("status, body, refused", [
    (400, '{"error": {"message": "response_format json_schema is not supported"}}', True),
    (422, '{"detail": "guided decoding unavailable"}', True),
    (400, '{"error": {"message": "tools are not supported by this model"}}', True),
    (400, '{"error": {"message": "context length exceeded"}}', False),
    (500, '{"error": {"message": "response_format broke the server"}}', False),
])
def test_a_refusal_is_a_400_or_422_naming_a_structured_output_feature(status: int, body: str, refused: bool) -> None:
    assert is_refusal(status, body) is refused
