"""Fitting a conversation into a context window: which turns to keep, as a pure function over "units".

A unit is what can only be kept or dropped whole: one message, or an assistant's tool calls together
with their results. Chat completions group messages with `chat_units`; another API (Responses items,
Messages turns) groups its own items into `Group`s, which `item_units` maps onto its chat-shaped view,
and supplies a `Trimming` that rebuilds its JSON: `choose` and the fitting around it are shared.
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
class Group:
    """Items of an API's own history (Responses input items, Messages turns) that are kept or dropped together."""

    items: tuple[int, ...]  # item positions, in order
    opens_turn: bool  # starts with a user turn
    pinned: bool = False  # always kept (developer/system items)


class Trimming:
    """How one API's request is trimmed: its view's units, its JSON rebuilt without some view messages, and
    where the summary of the left-out turns goes (the system text, as memories with placement "system")."""

    def units(self, messages: Sequence[Any]) -> list[Unit]:
        raise NotImplementedError

    def rebuild(self, dropped: Sequence[int]) -> dict[str, Any]:
        """The request without the view messages at positions `dropped`."""
        raise NotImplementedError

    def items(self, dropped: Sequence[int]) -> int:
        """How many of the request's own messages or items the view messages at `dropped` are (what headers report)."""
        return len(dropped)

    def appends(self, payload: dict[str, Any]) -> bool:
        """Whether a block put in `payload`'s system text follows text already there (so it is led by a separator)."""
        raise NotImplementedError

    def insert(self, payload: dict[str, Any], block: str) -> dict[str, Any] | None:
        """A copy of `payload` with `block` in its system text, or None when it has no place for it."""
        raise NotImplementedError


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
    return pinned_units(groups, [role == "user" for role in roles], [role in PINNED_ROLES for role in roles])


def item_units(origins: Sequence[int | None], groups: Sequence[Group]) -> list[Unit]:
    """Units over a view's messages from an API's grouping of its own items: `origins` names each view message's
    item (None: the request's system text, pinned); a group's view messages form one unit."""
    group_of = [-1] * (max((o for o in origins if o is not None), default=-1) + 1)  # item -> group (-1: none)
    for g, group in enumerate(groups):
        for item in group.items:
            if item < len(group_of):
                group_of[item] = g
    spans: list[list[int]] = []
    opens: list[bool] = []
    fixed: list[bool] = []
    current = -1
    for position, origin in enumerate(origins):
        g = -1 if origin is None else group_of[origin]
        if g >= 0 and g == current:
            spans[-1].append(position)
            continue
        spans.append([position])
        opens.append(g >= 0 and groups[g].opens_turn)
        fixed.append(g < 0 or groups[g].pinned)  # an item of no group is never dropped
        current = g
    return pinned_units(spans, opens, fixed)


def pinned_units(groups: Sequence[Sequence[int]], opens: Sequence[bool], fixed: Sequence[bool]) -> list[Unit]:
    """Units of `groups`, pinned when `fixed`, when the latest to open a turn, or when the last."""
    last_user = max((i for i, o in enumerate(opens) if o), default=None)
    return [Unit(tuple(group), fixed[i] or i == last_user or i == len(groups) - 1, opens[i]) for i, group in enumerate(groups)]


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
