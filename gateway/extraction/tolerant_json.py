"""Finds the JSON object in a model's answer when it is not bare JSON: fenced, inside prose, or cut off."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Markdown code fences (```json, ```); removed wherever they are, so fenced JSON becomes bare JSON.
_FENCE = re.compile(r"```[A-Za-z0-9_-]{0,20}")
MAX_ANSWER_CHARS = 256 * 1024  # an extraction answer is a few KB; a longer one is cut before parsing
MAX_STARTS = 32  # `{` positions tried: bounds the work on an answer full of braces
_DECODER = json.JSONDecoder()


class NoJSON(ValueError):
    """The answer holds no JSON object with the expected key, not even a salvageable prefix."""


@dataclass(frozen=True)
class Parsed:
    """The object found; `repaired`: it was not the bare answer; `truncated`: the answer was cut off
    and only the complete leading items of its list were kept."""

    value: dict[str, Any]
    repaired: bool = False
    truncated: bool = False


def parse_object(text: str, expect: str) -> Parsed:
    """The first JSON object in `text` that has the key `expect`. Raises NoJSON."""
    text = text[:MAX_ANSWER_CHARS]
    try:
        value = json.loads(text)
        if isinstance(value, dict) and expect in value:
            return Parsed(value)
    except ValueError:
        pass
    unfenced = _FENCE.sub("", text)
    starts = [i for i, char in enumerate(unfenced) if char == "{"][:MAX_STARTS]
    for start in starts:
        try:
            value, _ = _DECODER.raw_decode(unfenced, start)  # trailing prose after the object is ignored
        except ValueError:
            continue
        if isinstance(value, dict) and expect in value:
            return Parsed(value, repaired=True)
    for start in starts:
        salvaged = _salvage_list(unfenced, start, expect)
        if salvaged is not None:
            return Parsed({expect: salvaged}, repaired=True, truncated=True)
    raise NoJSON(f"no JSON object with {expect!r} in the answer")


def _salvage_list(text: str, start: int, key: str) -> list[Any] | None:
    """The complete items of `{"key": [item, item, ...` cut off mid-list; None unless at least one item is whole."""
    position = _skip_space(text, start + 1)
    try:
        found, position = _DECODER.raw_decode(text, position)
    except ValueError:
        return None
    position = _skip_space(text, position)
    if found != key or text[position : position + 1] != ":":
        return None
    position = _skip_space(text, position + 1)
    if text[position : position + 1] != "[":
        return None
    items: list[Any] = []
    position += 1
    while True:
        position = _skip_space(text, position)
        try:
            item, position = _DECODER.raw_decode(text, position)
        except ValueError:
            break  # the cut-off item: dropped, never half-read
        items.append(item)
        position = _skip_space(text, position)
        if text[position : position + 1] != ",":
            break
        position += 1
    return items or None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
