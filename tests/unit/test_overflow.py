"""memory/overflow.py: which turns a too-long conversation keeps. Tool calls never lose their results."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.memory.overflow import Unit, chat_units, choose


def call(ids: list[str]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [{"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids]}


def result(call_id: str, size: int) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "r" * size}


def size_cost(messages: list[Any]):
    return lambda unit: sum(10 + len(str(messages[i].get("content") or "")) for i in unit.indices)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "s" * draw(st.integers(0, 50))}]
    for turn in range(draw(st.integers(1, 8))):
        messages.append({"role": "user", "content": "u" * draw(st.integers(1, 200))})
        for loop in range(draw(st.integers(0, 3))):
            ids = [f"c{turn}_{loop}_{k}" for k in range(draw(st.integers(1, 3)))]
            messages.append(call(ids))
            messages.extend(result(i, draw(st.integers(0, 150))) for i in ids)
        if draw(st.booleans()):
            messages.append({"role": "assistant", "content": "a" * draw(st.integers(1, 200))})
        if draw(st.integers(0, 9)) == 0:
            messages.append({"role": "developer", "content": "d"})
    return messages


def check_invariants(messages: list[dict[str, Any]], kept: tuple[int, ...], dropped: tuple[int, ...]) -> None:
    assert sorted(kept + dropped) == list(range(len(messages))) and list(kept) == sorted(kept)
    kept_set = set(kept)
    called = {c["id"] for i in kept for c in messages[i].get("tool_calls") or []}
    answered = {messages[i]["tool_call_id"] for i in kept if messages[i]["role"] == "tool"}
    assert called == answered  # no call without its result, no result without its call
    assert all(i in kept_set for i, m in enumerate(messages) if m["role"] in ("system", "developer"))
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    assert last_user in kept_set and len(messages) - 1 in kept_set
    history = [i for i in kept if messages[i]["role"] not in ("system", "developer") and i < last_user]
    assert not history or messages[history[0]]["role"] == "user"  # a kept history starts with a user turn


@settings(max_examples=150, deadline=None)
@given(conversations(), st.integers(0, 3000))
def test_a_choice_keeps_pinned_turns_whole_tool_exchanges_and_the_latest_history_within_budget(messages: list[dict[str, Any]], budget: int) -> None:
    units = chat_units(messages)
    cost = size_cost(messages)
    choice = choose(units, cost, budget)
    pinned = sum(cost(u) for u in units if u.pinned)
    if choice is None:
        assert pinned > budget
        return
    check_invariants(messages, choice.kept, choice.dropped)
    assert choice.tokens == sum(cost(Unit((i,), False, False)) for i in choice.kept) <= budget
    # Dropped turns are older than every kept turn that was not pinned: the newest history is what stays.
    pinned_idx = {i for u in units if u.pinned for i in u.indices}
    free_kept = [i for i in choice.kept if i not in pinned_idx]
    assert all(d < min(free_kept) for d in choice.dropped) if free_kept else True


def test_everything_fits_in_a_large_budget() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}, call(["a"]), result("a", 5), {"role": "user", "content": "and?"}]
    choice = choose(chat_units(messages), size_cost(messages), 10_000)
    assert choice is not None and choice.kept == (0, 1, 2, 3, 4) and choice.dropped == ()


def test_a_hundred_message_tool_loop_keeps_the_user_turn_and_the_newest_exchanges_whole() -> None:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "s"}, {"role": "user", "content": "old " * 50}, {"role": "assistant", "content": "ok"},
                                      {"role": "user", "content": "research this"}]
    for k in range(50):
        messages += [call([f"c{k}"]), result(f"c{k}", 300)]
    choice = choose(chat_units(messages), size_cost(messages), 2000)
    assert choice is not None
    check_invariants(messages, choice.kept, choice.dropped)
    assert 3 in choice.kept and 1 in choice.dropped and len(messages) - 2 in choice.kept  # the last call with its result
    assert 4 < len(choice.kept) < len(messages) - 1


def test_the_pinned_turns_alone_overflowing_is_no_choice() -> None:
    messages = [{"role": "system", "content": "s" * 500}, {"role": "user", "content": "u" * 600}]
    assert choose(chat_units(messages), size_cost(messages), 1000) is None


def test_a_history_never_starts_with_an_assistant_turn_before_the_latest_user_message() -> None:
    messages = [{"role": "user", "content": "u" * 100}, {"role": "assistant", "content": "a" * 10}, {"role": "user", "content": "q"}]
    choice = choose(chat_units(messages), size_cost(messages), 45)  # room for the assistant turn, not its user turn
    assert choice is not None and choice.kept == (2,)


def test_results_that_follow_no_call_are_units_of_their_own_and_malformed_messages_do_not_raise() -> None:
    messages: list[Any] = [{"role": "tool", "tool_call_id": "x", "content": "orphan"}, None, "text", {"role": "user", "content": "q"}]
    units = chat_units(messages)
    assert [u.indices for u in units] == [(0,), (1,), (2,), (3,)]
