"""Overflow groupings of the Responses and Messages adapters: whatever a choice keeps, the rebuilt request has
no tool output without its call (nor a call without its output), no reasoning item without what follows it,
and a Messages request still starts with a user turn and alternates roles."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.apis.base import Api
from gateway.apis.messages import MessagesApi
from gateway.apis.responses import ResponsesApi
from gateway.memory.overflow import choose


def fitted(api: Api, payload: dict[str, Any], budget: int) -> dict[str, Any] | None:
    """The request as trimming leaves it for `budget` (cost: 10 plus the size of each view message), or None."""
    trimming = api.trimming(payload)
    assert trimming is not None
    messages = api.view(payload)["messages"]
    choice = choose(trimming.units(messages), lambda unit: sum(10 + len(str(messages[i].get("content") or "")) for i in unit.indices), budget)
    return None if choice is None else trimming.rebuild(choice.dropped)


@st.composite
def responses_inputs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Turns of user, tool loops and answers; the last turn may end in its tool loop (an agent mid-task), where
    only the loop's own grouping keeps calls with their outputs."""
    items: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 6))):
        items.append({"role": "user", "content": "u" * draw(st.integers(1, 120))})
        for loop in range(draw(st.integers(0, 4))):
            ids = [f"c{turn}_{loop}_{k}" for k in range(draw(st.integers(1, 3)))]
            if draw(st.booleans()):
                items.append({"type": "reasoning", "id": f"rs{turn}_{loop}", "summary": []})
            calls = [{"type": "function_call", "call_id": i, "name": "f", "arguments": "{}"} for i in ids]
            outputs = [{"type": "function_call_output", "call_id": i, "output": "r" * draw(st.integers(0, 90))} for i in ids]
            items.extend(calls + outputs if draw(st.booleans()) else [x for pair in zip(calls, outputs) for x in pair])
        if draw(st.booleans()):
            items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a" * draw(st.integers(1, 120))}]})
        if draw(st.integers(0, 7)) == 0:
            items.append({"role": "developer", "content": "d"})
    return items


@settings(max_examples=120, deadline=None)
@given(responses_inputs(), st.integers(0, 1500))
def test_a_trimmed_responses_input_keeps_calls_with_outputs_reasoning_with_its_item_and_the_latest_turn(items: list[dict[str, Any]], budget: int) -> None:
    payload = {"model": "gpt-4o", "instructions": "Be brief.", "input": items}
    sent = fitted(ResponsesApi(), payload, budget)
    if sent is None:
        return
    kept = sent["input"]
    positions = [next(j for j, given in enumerate(items) if given is item) for item in kept]  # the very items, not copies
    assert sent["instructions"] == "Be brief." and positions == sorted(set(positions))  # in order
    calls = {i["call_id"] for i in kept if i.get("type") == "function_call"}
    outputs = {i["call_id"] for i in kept if i.get("type") == "function_call_output"}
    assert calls == outputs
    for position, item in enumerate(kept):  # a reasoning item and the item it precedes come together or not at all
        if item.get("type") == "reasoning":
            assert position + 1 < len(kept) and positions[position + 1] == positions[position] + 1
        if positions[position] > 0 and items[positions[position] - 1].get("type") == "reasoning":
            assert position > 0 and positions[position - 1] == positions[position] - 1
    latest_user = max(j for j, i in enumerate(items) if i.get("role") == "user")
    assert latest_user in positions and positions[-1] == len(items) - 1
    assert all(j in positions for j, i in enumerate(items) if i.get("role") == "developer")


def test_a_responses_request_with_its_history_held_server_side_is_not_trimmed() -> None:
    api = ResponsesApi()
    items = [{"role": "user", "content": "hi"}]
    assert api.trimming({"input": items, "previous_response_id": "resp_1"}) is None
    assert api.trimming({"input": items, "conversation": "conv_1"}) is None
    assert api.trimming({"input": "hi"}) is None and api.trimming({"input": items}) is not None


@st.composite
def messages_turns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Alternating turns with tool loops, ending with a user question or, mid-task, with the loop's tool results."""
    turns: list[dict[str, Any]] = []
    count = draw(st.integers(1, 6))
    for turn in range(count):
        turns.append({"role": "user", "content": "u" * draw(st.integers(1, 120))})
        for loop in range(draw(st.integers(0, 4))):
            ids = [f"t{turn}_{loop}_{k}" for k in range(draw(st.integers(1, 2)))]
            turns.append({"role": "assistant", "content": [{"type": "text", "text": "let me look"},
                                                           *({"type": "tool_use", "id": i, "name": "f", "input": {}} for i in ids)]})
            results: list[dict[str, Any]] = [{"type": "tool_result", "tool_use_id": i, "content": "r" * draw(st.integers(0, 90))} for i in ids]
            if draw(st.integers(0, 3)) == 0:
                results.append({"type": "text", "text": "and also this"})
            turns.append({"role": "user", "content": results})
        if turn == count - 1 and turns[-1]["role"] == "user" and draw(st.booleans()):
            return turns
        turns.append({"role": "assistant", "content": "a" * draw(st.integers(1, 120))})
    turns.append({"role": "user", "content": "the question"})
    return turns


def uses(message: dict[str, Any], kind: str, key: str) -> set[str]:
    content = message["content"]
    return {b[key] for b in content if b.get("type") == kind} if isinstance(content, list) else set()


@settings(max_examples=120, deadline=None)
@given(messages_turns(), st.integers(0, 1500), st.sampled_from(["Be brief.", [{"type": "text", "text": "Be brief."}], None]))
def test_a_trimmed_messages_request_starts_with_a_user_turn_alternates_and_keeps_tool_uses_with_results(
    turns: list[dict[str, Any]], budget: int, system: Any,
) -> None:
    payload = {"model": "claude-sonnet-4", "max_tokens": 100, "messages": turns, **({"system": system} if system else {})}
    sent = fitted(MessagesApi(), payload, budget)
    if sent is None:
        return
    kept = sent["messages"]
    assert sent.get("system") == system and kept[-1] is turns[-1]
    assert kept[0]["role"] == "user" and not uses(kept[0], "tool_result", "tool_use_id")
    assert all(a["role"] != b["role"] for a, b in zip(kept, kept[1:]))
    for position, message in enumerate(kept):
        results = uses(message, "tool_result", "tool_use_id")
        if results:
            assert results == uses(kept[position - 1], "tool_use", "id")
        called = uses(message, "tool_use", "id")
        if called:
            assert called == uses(kept[position + 1], "tool_result", "tool_use_id")


def test_a_reasoning_item_is_dropped_only_with_the_call_it_precedes() -> None:
    items: list[dict[str, Any]] = [{"role": "user", "content": "old " * 40}, {"role": "user", "content": "plan a trip"}]
    for k in range(3):
        items += [{"type": "reasoning", "id": f"rs_{k}", "summary": []}, {"type": "function_call", "call_id": f"c{k}", "name": "f", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": f"c{k}", "output": "r" * 50}]
    # A few tokens short of the latest user turn and the last two exchanges with their reasoning items: the middle
    # call and output would fit without their reasoning item, but go with it.
    user, reasoning, call, output = 10 + len("plan a trip"), 10, 10, 10 + 50
    budget = user + 2 * (reasoning + call + output) - 5
    sent = fitted(ResponsesApi(), {"model": "o4-mini", "input": items}, budget)
    assert sent is not None and sent["input"] == [items[1], *items[-3:]]


junk = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.sampled_from(["type", "role", "call_id", "content", "id", "tool_use_id"]), children, max_size=4), max_leaves=12)
item = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["message", "reasoning", "function_call", "function_call_output", "custom_tool_call_output", "tool_use", "tool_result", "text"]) | junk,
    "role": st.sampled_from(["user", "assistant", "developer", "system"]) | junk, "call_id": st.sampled_from(["a", "b"]) | junk,
    "content": junk | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["tool_use", "tool_result", "text"]), "id": st.sampled_from(["a", "b"]),
                                                      "tool_use_id": st.sampled_from(["a", "b"])}), max_size=3)})


@settings(max_examples=150, deadline=None)
@given(st.lists(item | junk, max_size=12), st.integers(0, 400), st.sampled_from([ResponsesApi(), MessagesApi()]))
def test_malformed_histories_are_trimmed_without_raising_to_a_subsequence(items: list[Any], budget: int, api: Api) -> None:
    field = "input" if api.name == "responses" else "messages"
    sent = fitted(api, {"model": "m", field: items}, budget)
    if sent is not None:
        rest = iter(items)
        assert all(any(given is one for given in rest) for one in sent[field])  # the very items, in order: a subsequence
