"""Sizing a request's chat-shaped view against its model's context window: the room left for memories, and,
when the messages overflow the window, a trimmed request that fits (overflow = "fit"), in the API's own JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from gateway.exchange import content_texts
from gateway.memory import tokens
from gateway.memory.counts import MessageCounter, Piece, extras_piece, message_piece
from gateway.memory.excerpts import Dropped, summarize
from gateway.memory.inject import SEPARATOR, appends_to_text, with_text
from gateway.memory.overflow import Trimming, Unit, chat_units, choose
from gateway.memory.windows import Window
from gateway.rules import RuleSettings

# New text counted exactly per request: enough to fill the window at 8 characters a token (so a conversation
# that fits is not trimmed on a pessimistic bound), at most 4 M characters (~1-2 s of a worker thread, once
# per message: counts are cached); what is left over counts at its byte size until a later request counts it.
EXACT_CHARS_PER_TOKEN = 8
MAX_EXACT_CHARS = 4_194_304
ESTIMATED_BYTES_PER_TOKEN = 4  # for reporting dropped messages never counted, when nothing was counted to learn from


@dataclass
class Plan:
    """What to send: `payload` (None: the request as it came; else in the API's own JSON) with its chat-shaped
    `view` (for recall's query), its prompt tokens and the memory budget."""

    window: Window
    outcome: str  # fits | trimmed | unfittable (the pinned turns alone overflow) | over (overflow "off")
    prompt_tokens: int  # exact, or the free upper bound when that was enough to decide
    memory_budget: int
    payload: dict[str, Any] | None = None
    dropped_messages: int = 0
    dropped_tokens: int = 0
    summary_tokens: int = 0
    view: dict[str, Any] | None = None


class ChatTrimming(Trimming):
    """Chat completions: the view is the request itself."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload

    def units(self, messages: Sequence[Any]) -> list[Unit]:
        return chat_units(messages)

    def rebuild(self, dropped: Sequence[int]) -> dict[str, Any]:
        gone = set(dropped)
        return {**self.payload, "messages": [m for i, m in enumerate(self.payload["messages"]) if i not in gone]}

    def appends(self, payload: dict[str, Any]) -> bool:
        return appends_to_text(payload)

    def insert(self, payload: dict[str, Any], block: str) -> dict[str, Any] | None:
        return with_text(payload, block)


def plan(
    payload: dict[str, Any], model: str, rule: RuleSettings, window: Window, read: bool, stop: Callable[[], bool] = lambda: False,
    inline_chars: int | None = None, trimming: Trimming | None = None,
) -> Plan:
    """Decide for one request (`payload` is its chat-shaped view; `trimming` rebuilds the API's own JSON, chat
    completions' by default); counts exactly only when the free bound cannot decide, and never counts the turns
    older than a full window. With `inline_chars` (on the event loop) more new text than that raises NeedsThread:
    run it again in a thread."""
    messages: list[Any] = payload["messages"]
    answer = tokens.completion_reserve(payload)
    limit = window.tokens - (answer or rule.overflow_reserve_tokens)
    pieces = [message_piece(m) for m in messages]
    extras = extras_piece(payload)
    full_budget = rule.budget_tokens if read else 0
    budget_for = (lambda prompt: tokens.memory_room(window.tokens, prompt, answer, rule.budget_tokens, rule.budget_ratio)) if read else (lambda prompt: 0)
    if extras.chars + sum(p.chars for p in pieces) <= limit:  # else the byte bound (>= chars) cannot decide: skip it
        bound = extras.bound + sum(p.bound for p in pieces)
        if bound <= limit and budget_for(bound) == full_budget:
            return Plan(window, "fits", bound, full_budget)
    exact_chars = min(MAX_EXACT_CHARS, max(tokens.EXACT_COUNT_MAX_CHARS, EXACT_CHARS_PER_TOKEN * limit))
    counter = MessageCounter(model, exact_chars, stop=stop, inline_chars=inline_chars)
    total = counter.count(extras)
    for piece in reversed(pieces):  # newest first: past the limit the rest need no count
        total += counter.count(piece)
        if total > limit:
            break
    else:
        return Plan(window, "fits", total, budget_for(total))
    if rule.overflow != "fit":
        return Plan(window, "over", total, 0)
    trimming = trimming or ChatTrimming(payload)
    return _trim(payload, model, rule, window, read, trimming, trimming.units(messages), pieces, counter, limit)


def unit_cost(counter: MessageCounter, pieces: list[Piece]) -> Callable[[Unit], int]:
    return lambda unit: sum(counter.count(pieces[i]) for i in unit.indices)


def _trim(
    payload: dict[str, Any], model: str, rule: RuleSettings, window: Window, read: bool, trimming: Trimming, units: list[Unit],
    pieces: list[Piece], counter: MessageCounter, limit: int,
) -> Plan:
    messages: list[Any] = payload["messages"]
    cost = unit_cost(counter, pieces)
    extras_tokens = counter.count(extras_piece(payload))
    fixed = extras_tokens + sum(cost(u) for u in units if u.pinned)
    room = limit - fixed
    if room < 0:
        return Plan(window, "unfittable", fixed, 0)
    # Memories and the summary each get up to a budget_ratio share of the room the pinned turns leave.
    memory_room = min(rule.budget_tokens, int(rule.budget_ratio * room)) if read else 0
    summary_room = min(rule.overflow_summary_tokens, int(rule.budget_ratio * room))
    choice = choose(units, cost, limit - extras_tokens - memory_room - summary_room)
    if choice is None:
        return Plan(window, "unfittable", fixed, 0)
    kept_view = {**payload, "messages": [messages[i] for i in choice.kept]}
    kept_payload = trimming.rebuild(choice.dropped)
    dropped = [Dropped(i, str(messages[i].get("role")), pieces[i].texts, pieces[i].key) for i in choice.dropped if isinstance(messages[i], dict)]
    dropped_tokens = _reported(counter, [pieces[i] for i in choice.dropped], [pieces[i] for i in choice.kept])
    prompt = extras_tokens + choice.tokens
    appending = trimming.appends(kept_payload)
    # The block joins the system text (after a separator) or becomes it, with its framing.
    overhead = tokens.count(SEPARATOR, model) if appending else (0 if _has_system(kept_view) else tokens.PER_MESSAGE_TOKENS)
    summary_budget = min(rule.overflow_summary_tokens, limit - memory_room - prompt - overhead)
    text, used = summarize(dropped, dropped_tokens, latest_user_text(messages), summary_budget, model, counter.spend)
    summarized = trimming.insert(kept_payload, (SEPARATOR if appending else "") + text) if text else None
    if summarized is None:
        used = 0
    else:
        kept_payload = summarized
        prompt += used + overhead
    budget = max(0, min(rule.budget_tokens, limit - prompt)) if read else 0
    return Plan(window, "trimmed", prompt, budget, kept_payload, trimming.items(choice.dropped), dropped_tokens, used, kept_view)


def latest_user_text(messages: list[Any]) -> str:
    """What the excerpts are chosen for: the latest user message alone (recall's query borrows earlier text)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(content_texts(message.get("content")))[-4000:]
    return ""


def _reported(counter: MessageCounter, dropped: list[Piece], kept: list[Piece]) -> int:
    """Tokens of the dropped messages: exact where counted, else their size at the tokens-per-byte of the counted ones."""
    counted = [(n - p.framing, p.bound - p.framing) for p in (*dropped, *kept) if (n := counter.cached(p)) is not None]
    size = sum(b for _, b in counted)
    per_byte = sum(n for n, _ in counted) / size if size else 1 / ESTIMATED_BYTES_PER_TOKEN
    total = 0
    for piece in dropped:
        known = counter.cached(piece)
        total += known if known is not None else piece.framing + round((piece.bound - piece.framing) * per_byte)
    return total


def _has_system(payload: dict[str, Any]) -> bool:
    return any(isinstance(m, dict) and m.get("role") in ("system", "developer") for m in payload["messages"])
