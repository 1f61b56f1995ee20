"""Fitting a conversation into a context window: which turns to keep, as a pure function over "units".

A unit is what can only be kept or dropped whole: one message, or an assistant's tool calls together
with their results. Chat completions group messages with `chat_units`; another message shape (Responses
items, Messages blocks) needs only its own grouping to reuse `choose`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

PINNED_ROLES = ("system", "developer")
RESULT_ROLES = ("tool", "function")


@dataclass(frozen=True)
class Unit:
    indices: tuple[int, ...]  # message positions, in order
    pinned: bool  # always kept: system/developer messages, the latest user turn, the latest unit
    opens_turn: bool  # a user message: a kept history may start here


@dataclass(frozen=True)
class Choice:
    kept: tuple[int, ...]  # message positions kept, in their order
    dropped: tuple[int, ...]  # message positions left out, in their order
    tokens: int  # tokens of the kept messages


def _calls(message: dict[str, Any]) -> bool:
    return bool(message.get("tool_calls")) or bool(message.get("function_call"))


def chat_units(messages: Sequence[Any]) -> list[Unit]:
    """Chat messages grouped into units: tool/function results stay with the assistant message that called them."""
    groups: list[list[int]] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        previous = messages[groups[-1][0]] if groups else None
        joins_call = role in RESULT_ROLES and isinstance(previous, dict) and previous.get("role") == "assistant" and _calls(previous)
        if joins_call:
            groups[-1].append(index)
        else:
            groups.append([index])
    roles = [messages[g[0]].get("role") if isinstance(messages[g[0]], dict) else None for g in groups]
    last_user = max((i for i, role in enumerate(roles) if role == "user"), default=None)
    units = []
    for position, (group, role) in enumerate(zip(groups, roles)):
        pinned = role in PINNED_ROLES or position == last_user or position == len(groups) - 1
        units.append(Unit(tuple(group), pinned, role == "user"))
    return units


def choose(units: Sequence[Unit], cost: Callable[[Unit], int], budget: int) -> Choice | None:
    """Keep every pinned unit and the longest run of latest other units that fits `budget` tokens; None when
    the pinned units alone do not fit. `cost` is asked for pinned units and then newest first, stopping at the
    first unit that does not fit: older units are never counted. Before the latest user turn a kept history
    starts at a user message (chat templates that alternate roles reject anything else)."""
    pinned_cost = sum(cost(u) for u in units if u.pinned)
    if pinned_cost > budget:
        return None
    left = budget - pinned_cost
    kept: list[Unit] = []
    for unit in reversed(units):
        if unit.pinned:
            continue
        price = cost(unit)
        if price > left:
            break
        kept.append(unit)
        left -= price
    kept.reverse()  # oldest first; `kept` is a suffix of the unpinned units
    last_user = max((i for i, u in enumerate(units) if u.pinned and u.opens_turn), default=-1)
    position = {id(u): i for i, u in enumerate(units)}
    while kept and position[id(kept[0])] < last_user and not kept[0].opens_turn:
        left += cost(kept.pop(0))
    chosen = {id(u) for u in kept} | {id(u) for u in units if u.pinned}
    kept_idx = tuple(i for u in units if id(u) in chosen for i in u.indices)
    dropped_idx = tuple(i for u in units if id(u) not in chosen for i in u.indices)
    return Choice(kept_idx, dropped_idx, budget - left)
